"""The executor pipeline as library code (the ``aegis executor`` service is its HTTP shell).

For each request, in this order, and nothing reaches the cluster unless every step passes::

    verify signature (SIG-*) → record nonce in the database → parse and validate (K8S-1/2)
    → idempotency on request_id → guardrails check → policy decision
    → guardrails acquire (target lock) → write-ahead intent (AUD-5) → actuator
    (dry run when asked) → outcome record (or the local outbox) → release the lock

Policy mapping (documented in ``docs/actuators.md``): the request decided by the engine is

- ``principal``: ``{"id": <key id>}`` merged with the caller's configured attributes
  (``principals[key_id]``, e.g. ``{"roles": ["sre"]}``);
- ``action``: the action type (``restart_pod`` …);
- ``resource``: ``{"kind": "deployment" | "pod", "namespace": …, "name": …}``;
- ``context``: the action's ``params`` (e.g. ``{"replicas": 4}``).

:meth:`Executor.submit` returns an :class:`ExecutorResponse` (HTTP status + JSON body) so the
HTTP shell only copies it out.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aegis.actuators import (
    ACTION_TYPES,
    Action,
    Actuator,
    ActuatorError,
    ClusterTimeoutError,
    Guardrails,
    GuardrailStoreError,
    GuardrailViolation,
    InvalidActionError,
    ReplayError,
    ReplayStoreUnavailableError,
    RequestVerifier,
    SignatureError,
    VerifiedRequest,
    check_namespace,
)
from aegis.engine import EngineError, InvalidRequestError, PolicyEngine
from aegis.remediation.errors import ExecutorStoreError
from aegis.remediation.store import ExecutorStore, Outbox

__all__ = ["Executor", "ExecutorResponse", "build_executor", "policy_request"]

log = logging.getLogger("aegis.executor")
_BODY_FIELDS = frozenset(
    {
        "request_id",
        "type",
        "namespace",
        "name",
        "params",
        "requested_by",
        "reason",
        "dry_run",
        "issued_at",
    }
)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would let two readers of the signed bytes see two different actions.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key")
        out[key] = value
    return out


@dataclass(frozen=True)
class ExecutorResponse:
    """What the HTTP shell sends back.

    Attributes:
        status_code: 200, 401, 403, 409, 422, 503 or 504.
        body: the JSON body.
    """

    status_code: int
    body: dict[str, Any]


def _error(status: int, code: str, message: str, **extra: Any) -> ExecutorResponse:
    return ExecutorResponse(status, {"error": {"code": code, "message": message, **extra}})


_UNAUTHORIZED = _error(401, SignatureError.code, SignatureError.GENERIC_MESSAGE)


def policy_request(
    action: Action, key_id: str, principal: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The engine request for ``action`` asked by ``key_id`` (see the module docstring)."""
    return {
        "principal": {**dict(principal or {}), "id": key_id},
        "action": action.type,
        "resource": {
            "kind": action.target_kind.lower(),
            "namespace": action.namespace,
            "name": action.name,
        },
        "context": action.params.model_dump(mode="json", exclude_none=True),
    }


class Executor:
    """Verifies, checks, decides, audits and executes remediation requests.

    Args:
        verifier: signature verification (keys + replay store).
        guardrails: allowlist, limits, cooldowns, locks, breaker, kill switch.
        engine: the policy engine deciding each action.
        actuator: the backend acting on the cluster.
        store: the durable audit records (intent before, outcome after).
        outbox: where outcomes wait when the store cannot take them.
        principals: attributes per key id, merged into the policy ``principal``.
        clock: Unix seconds.
    """

    def __init__(
        self,
        *,
        verifier: RequestVerifier,
        guardrails: Guardrails,
        engine: PolicyEngine,
        actuator: Actuator,
        store: ExecutorStore,
        outbox: Outbox,
        principals: Mapping[str, Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.guardrails = guardrails
        self.engine = engine
        self.actuator = actuator
        self.store = store
        self.outbox = outbox
        self.principals = {k: dict(v) for k, v in (principals or {}).items()}
        self._clock = clock

    # -- start-up -------------------------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        """Replay the outbox, then mark intents without an outcome ``unknown`` (reconcile).

        Returns:
            The intents found without an outcome (each is also logged as an alert).

        Raises:
            ExecutorStoreError: the store is unreachable (do not start).
        """
        replayed = self.outbox.replay(self.store)
        if replayed:
            log.warning("replayed %d outcomes from the outbox", replayed)
        unknown = self.store.mark_pending_unknown(self._clock())
        for row in unknown:
            log.error(
                "alert: action %s (%s %s/%s) has no outcome; marked unknown",
                row["id"],
                row["type"],
                row["namespace"],
                row["name"],
            )
        return unknown

    # -- the pipeline ------------------------------------------------------------------------------

    def _event(self, kind: str, reason: str, detail: str, **ids: str | None) -> None:
        try:
            self.store.record_event(kind, reason, detail, self._clock(), **ids)
        except ExecutorStoreError:
            log.error("could not record %s event %s: %s", kind, reason, detail)

    def submit(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
    ) -> ExecutorResponse:
        """Run one ``POST /v1/actions`` request through the pipeline (see the module docstring)."""
        verified_or_response = self.authenticate(
            method=method, path=path, query=query, headers=headers, body=body
        )
        if isinstance(verified_or_response, ExecutorResponse):
            return verified_or_response
        verified = verified_or_response
        # -- parse and validate (K8S-1 before K8S-2: a look-alike namespace is a scope refusal)
        try:
            data = json.loads(body, object_pairs_hook=_unique_keys)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self._event("invalid", "malformed_json", "body is not JSON", key_id=verified.key_id)
            return _error(422, InvalidActionError.code, "the body must be a JSON object")
        if not isinstance(data, dict):
            return _error(422, InvalidActionError.code, "the body must be a JSON object")
        request_id = data.get("request_id") if isinstance(data.get("request_id"), str) else None
        try:
            check_namespace(data.get("namespace"), self.guardrails.config.allowed_namespaces)  # type: ignore[arg-type]
        except GuardrailViolation as exc:
            self._event(
                "refused",
                exc.reason,
                f"namespace {data.get('namespace')!r}",
                key_id=verified.key_id,
                request_id=request_id,
            )
            return _error(403, exc.code, str(exc), reason=exc.reason)
        action_type = data.get("type")
        if isinstance(action_type, str) and action_type not in ACTION_TYPES:
            # K8S-2: an action outside the allowlist is a refusal of scope, not bad input
            self._event(
                "refused",
                "action_not_allowed",
                f"action type {action_type!r}",
                key_id=verified.key_id,
                request_id=request_id,
            )
            return _error(
                403,
                GuardrailViolation.code,
                f"action type `{action_type[:64]}` is not allowed",
                reason="action_not_allowed",
            )
        dry_run = data.get("dry_run", False)
        unknown = sorted(set(data) - _BODY_FIELDS)
        try:
            if not isinstance(dry_run, bool):
                raise InvalidActionError(
                    "invalid action: `dry_run`: input should be a valid boolean"
                )
            if unknown:
                raise InvalidActionError(f"invalid action: unknown fields {unknown}")
            action = Action.parse({k: v for k, v in data.items() if k != "dry_run"})
        except InvalidActionError as exc:
            self._event(
                "invalid", "invalid_action", str(exc), key_id=verified.key_id, request_id=request_id
            )
            return _error(422, exc.code, str(exc))
        # -- idempotency (K8S-4): the same request id never acts twice
        try:
            existing = self.store.by_request_id(action.request_id)
        except ExecutorStoreError as exc:
            return _error(503, exc.code, "the executor cannot audit; nothing was done")
        if existing is not None:
            return self._replayed(existing, action, dry_run)
        # -- guardrails (pure), then policy
        try:
            self.guardrails.check(action)
        except GuardrailViolation as exc:
            self._event(
                "refused",
                exc.reason,
                str(exc),
                key_id=verified.key_id,
                request_id=action.request_id,
            )
            return _error(403, exc.code, str(exc), reason=exc.reason)
        except GuardrailStoreError as exc:
            return _error(503, exc.code, "the guardrail store is unavailable; nothing was done")
        try:
            decision = self.engine.evaluate(
                policy_request(action, verified.key_id, self.principals.get(verified.key_id))
            )
        except (InvalidRequestError, EngineError) as exc:
            self._event(
                "refused",
                "policy_error",
                str(exc),
                key_id=verified.key_id,
                request_id=action.request_id,
            )
            return _error(
                403,
                "executor.policy_denied",
                "the policy could not decide; denied",
                reason="policy_error",
            )
        if not decision.allowed:
            self._event(
                "refused",
                "policy_denied",
                decision.reason,
                key_id=verified.key_id,
                request_id=action.request_id,
            )
            return _error(403, "executor.policy_denied", decision.reason, reason="policy_denied")
        return self._execute(action, dry_run, verified, decision.to_dict())

    def authenticate(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
    ) -> VerifiedRequest | ExecutorResponse:
        """Verify the signature and record the nonce durably (SIG-1…SIG-6).

        Returns:
            The verified caller, or the response to send (401, 409, 503).
        """
        try:
            verified = self.verifier.verify(
                method=method, path=path, query=query, headers=headers, body=body
            )
        except ReplayError as exc:
            self._event("security", "replay", exc.detail)
            return _error(409, exc.code, exc.GENERIC_MESSAGE)
        except SignatureError as exc:
            self._event("security", "signature", exc.detail)
            return _UNAUTHORIZED
        except ReplayStoreUnavailableError as exc:
            return _error(503, exc.code, "the nonce store is unavailable; nothing was done")
        try:
            fresh = self.store.record_nonce(verified.key_id, verified.nonce, self._clock())
        except ExecutorStoreError as exc:
            return _error(503, exc.code, "the executor cannot audit; nothing was done")
        if not fresh:
            self._event(
                "security", "replay", "nonce already in the database", key_id=verified.key_id
            )
            return _error(409, ReplayError.code, ReplayError.GENERIC_MESSAGE)
        return verified

    def _execute(
        self, action: Action, dry_run: bool, verified: VerifiedRequest, decision: dict[str, Any]
    ) -> ExecutorResponse:
        try:
            permit = None if dry_run else self.guardrails.acquire(action)
        except GuardrailViolation as exc:
            self._event(
                "refused",
                exc.reason,
                str(exc),
                key_id=verified.key_id,
                request_id=action.request_id,
            )
            return _error(403, exc.code, str(exc), reason=exc.reason)
        except GuardrailStoreError as exc:
            return _error(503, exc.code, "the guardrail store is unavailable; nothing was done")
        try:
            action_id = uuid.uuid4().hex
            intent = {
                "id": action_id,
                "request_id": action.request_id,
                "key_id": verified.key_id,
                "nonce": verified.nonce,
                "type": action.type,
                "namespace": action.namespace,
                "name": action.name,
                "params": action.params.model_dump(mode="json"),
                "requested_by": action.requested_by,
                "reason": action.reason,
                "dry_run": dry_run,
                "status": "pending",
                "decision": decision,
                "created_at": self._clock(),
            }
            try:
                if not self.store.write_intent(intent):
                    existing = self.store.by_request_id(action.request_id)
                    if existing is not None:
                        return self._replayed(existing, action, dry_run)
                    return _error(409, ReplayError.code, ReplayError.GENERIC_MESSAGE)
            except ExecutorStoreError as exc:
                return _error(503, exc.code, "the executor cannot audit; nothing was done")
            # INVARIANT: the intent is durable before the cluster is touched (AUD-5)
            if permit is not None:
                try:
                    permit.commit()
                except GuardrailStoreError:
                    self._outcome(
                        action_id,
                        "failed",
                        {"reason": "guardrail_store", "message": "not executed"},
                    )
                    return _error(
                        503,
                        GuardrailStoreError.code,
                        "the guardrail store is unavailable; nothing was done",
                    )
            http_status = 200
            status: str
            try:
                result = self.actuator.execute(action, dry_run=dry_run)
                status, payload = result.status, result.model_dump(mode="json")
            except ClusterTimeoutError as exc:
                status, payload, http_status = (
                    "unknown",
                    {"reason": exc.code, "message": str(exc)},
                    504,
                )
            except ActuatorError as exc:
                status, payload = "failed", {"reason": exc.code, "message": str(exc)}
            except Exception:  # a bug or an unexpected client error: the outcome is unknown
                log.exception("actuator failed unexpectedly on action %s", action_id)
                status, http_status = "unknown", 500
                payload = {
                    "reason": "actuator.internal_error",
                    "message": "the actuator failed unexpectedly; the action may have run",
                }
            self._outcome(action_id, status, payload)
            if http_status != 200:
                return ExecutorResponse(
                    http_status,
                    {
                        "id": action_id,
                        "status": status,
                        "result": payload,
                        "error": {"code": payload["reason"], "message": payload["message"]},
                    },
                )
            return ExecutorResponse(200, {"id": action_id, "status": status, "result": payload})
        finally:
            if permit is not None:
                permit.release()

    def _outcome(self, action_id: str, status: str, result: dict[str, Any]) -> None:
        at = self._clock()
        try:
            self.store.write_outcome(action_id, status, result, at)
        except ExecutorStoreError:
            log.error(
                "alert: outcome of action %s could not be written; kept in the outbox", action_id
            )
            self.outbox.append({"id": action_id, "status": status, "result": result, "at": at})
        else:
            if self.outbox.pending():
                self.outbox.replay(self.store)

    @classmethod
    def _replayed(cls, row: Mapping[str, Any], action: Action, dry_run: bool) -> ExecutorResponse:
        same = (
            row["type"] == action.type
            and row["namespace"] == action.namespace
            and row["name"] == action.name
            and row["params"] == action.params.model_dump(mode="json")
            and bool(row["dry_run"]) == dry_run
        )
        if not same:
            return _error(
                409,
                "executor.request_id_conflict",
                f"request id `{action.request_id}` was already used for a different action",
            )
        return cls._answer(row)

    @staticmethod
    def _answer(row: Mapping[str, Any]) -> ExecutorResponse:
        return ExecutorResponse(
            200, {"id": row["id"], "status": row["status"], "result": row.get("result")}
        )

    # -- reads -------------------------------------------------------------------------------------

    def get(self, action_id: str) -> dict[str, Any] | None:
        """One action record (intent, decision, outcome)."""
        return self.store.get(action_id)

    def list_actions(self, *, limit: int = 100, status: str | None = None) -> list[dict[str, Any]]:
        """Action records, newest first."""
        return self.store.list_actions(limit=limit, status=status)

    def report(self) -> dict[str, Any]:
        """The self-healing report: actions by type and status, failure rates, refusals."""
        report = self.store.report()
        report["outbox"] = len(self.outbox.pending())
        stats = getattr(self.actuator, "stats", None)
        if isinstance(stats, dict):
            report["actuator"] = dict(stats)
        report["alerts"] = [a.__dict__ for a in self.guardrails.alerts()]
        return report


def build_executor(
    *,
    keys: str,
    allow_namespaces: Iterable[str],
    policies: Iterable[str],
    database_url: str,
    actuator: str = "simulated",
    actuator_config: Mapping[str, Any] | None = None,
    redis_url: str | None = None,
    outbox_path: str = "aegis-executor-outbox.jsonl",
    principals: Mapping[str, Mapping[str, Any]] | None = None,
    reject_secrets: Iterable[str] = (),
    guardrail_config: Mapping[str, Any] | None = None,
) -> Executor:
    """Assemble an :class:`Executor` from service options (what ``aegis executor`` needs).

    Args:
        keys: ``kid:secret,kid:secret`` (``AEGIS_EXECUTOR_KEYS``); each secret ≥ 32 bytes.
        allow_namespaces: the namespace allowlist.
        policies: policy files or directories.
        database_url: SQLAlchemy URL of the audit store (intents, outcomes, nonces,
            guardrail state).
        actuator: ``simulated`` or ``kubernetes`` (any ``aegis.actuators`` entry point).
        actuator_config: the backend's configuration (``{"cluster_file": …}`` …).
        redis_url: the shared nonce store; in-process memory when ``None``.
        outbox_path: the local outbox file.
        principals: attributes per key id for the policy ``principal``.
        reject_secrets: secrets executor keys must not equal (the JWT secret).
        guardrail_config: overrides of :class:`~aegis.actuators.GuardrailConfig`.

    Raises:
        ConfigurationError: no keys, a short key, a bad allowlist or actuator configuration.
        PolicyLoadError: the policies do not load.
        ExecutorStoreError: the audit database cannot be reached.
    """
    from aegis.actuators import (
        GuardrailConfig,
        Keyring,
        MemoryReplayStore,
        RedisReplayStore,
        SqlGuardrailStore,
        create_actuator,
    )
    from aegis.errors import ConfigurationError

    keyring = Keyring.from_env(keys, reject_secrets=reject_secrets)
    try:
        config = GuardrailConfig.model_validate(
            {**dict(guardrail_config or {}), "allowed_namespaces": frozenset(allow_namespaces)}
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid guardrail configuration: {exc}") from exc
    replay = RedisReplayStore.from_url(redis_url) if redis_url else MemoryReplayStore()
    store = ExecutorStore(database_url)
    try:
        guard_store = SqlGuardrailStore(store.engine)
    except GuardrailStoreError as exc:
        raise ExecutorStoreError(str(exc)) from exc
    return Executor(
        verifier=RequestVerifier(keyring, replay),
        guardrails=Guardrails(config, guard_store),
        engine=PolicyEngine.from_paths(list(policies)),
        actuator=create_actuator(actuator, dict(actuator_config or {})),
        store=store,
        outbox=Outbox(outbox_path),
        principals=principals,
    )
