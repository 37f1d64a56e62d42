"""The action model and the :class:`Actuator` protocol.

An :class:`Action` is the only thing an actuator accepts: one of four types, a target
(namespace + name), strictly validated per-type parameters (K8S-2), who asked and why, and a
``request_id`` that is the idempotency key (K8S-4). Nothing free-form reaches a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aegis.actuators.errors import InvalidActionError

__all__ = [
    "ACTION_TYPES",
    "Action",
    "ActionResult",
    "ActionStatus",
    "ActionType",
    "Actuator",
    "RestartDeploymentParams",
    "RestartPodParams",
    "RollbackDeploymentParams",
    "ScaleDeploymentParams",
    "is_dns_label",
    "is_dns_subdomain",
]

ActionType = Literal["restart_pod", "restart_deployment", "scale_deployment", "rollback_deployment"]
ACTION_TYPES: tuple[ActionType, ...] = (
    "restart_pod",
    "restart_deployment",
    "scale_deployment",
    "rollback_deployment",
)
ActionStatus = Literal["succeeded", "failed", "dry_run"]

# K8S-1: RFC 1123 label; \Z-free because re.fullmatch anchors both ends (``$`` would accept "\n").
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MAX_REPLICAS_SCHEMA = 10_000


def is_dns_label(value: str) -> bool:
    """Whether ``value`` is an RFC 1123 label (namespace rule of K8S-1), checked exactly.

    ASCII only, at most 63 characters, ``fullmatch`` (no trailing newline), no normalisation
    and no case folding: ``ｐｒｏｄ``, ``Prod`` and ``"prod\\n"`` are all rejected.
    """
    return (
        isinstance(value, str)
        and value.isascii()
        and 0 < len(value) <= 63
        and _DNS_LABEL.fullmatch(value) is not None
    )


def is_dns_subdomain(value: str) -> bool:
    """Whether ``value`` is an RFC 1123 subdomain (object names: pods, deployments)."""
    if not isinstance(value, str) or not value.isascii() or not 0 < len(value) <= 253:
        return False
    return all(_DNS_LABEL.fullmatch(part) is not None for part in value.split("."))


class _Params(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class RestartPodParams(_Params):
    """Parameters of ``restart_pod``.

    Attributes:
        grace_period_seconds: passed to the eviction/delete; ``None`` keeps the pod's own
            ``terminationGracePeriodSeconds``.
    """

    grace_period_seconds: int | None = Field(default=None, ge=0, le=3600)


class RestartDeploymentParams(_Params):
    """Parameters of ``restart_deployment`` (none)."""


class ScaleDeploymentParams(_Params):
    """Parameters of ``scale_deployment``.

    Attributes:
        replicas: the desired replica count; a JSON integer in ``0..10000`` (the guardrails
            and the actuator apply tighter, configurable bounds).
    """

    replicas: int = Field(ge=0, le=_MAX_REPLICAS_SCHEMA)


class RollbackDeploymentParams(_Params):
    """Parameters of ``rollback_deployment``.

    Attributes:
        to_revision: ``0`` (default) is the previous revision, as ``kubectl rollout undo``.
    """

    to_revision: int = Field(default=0, ge=0, le=2**31 - 1)


ActionParams = (
    RestartPodParams | RestartDeploymentParams | ScaleDeploymentParams | RollbackDeploymentParams
)

_PARAMS: dict[str, type[_Params]] = {
    "restart_pod": RestartPodParams,
    "restart_deployment": RestartDeploymentParams,
    "scale_deployment": ScaleDeploymentParams,
    "rollback_deployment": RollbackDeploymentParams,
}


class Action(BaseModel):
    """One remediation request, validated strictly (K8S-2).

    Build one with :meth:`parse` from untrusted data (raises :class:`InvalidActionError`), or
    with the constructor from code.

    Attributes:
        type: one of :data:`ACTION_TYPES`.
        namespace: RFC 1123 label (K8S-1 syntax; the allowlist is a guardrail).
        name: the pod (``restart_pod``) or deployment name, an RFC 1123 subdomain.
        params: the typed parameters of the action type.
        requested_by: who asked (a principal id).
        reason: why (free text, stored in the audit trail).
        request_id: the idempotency key: a replay of the same id changes nothing.
        issued_at: when the request was issued (Unix seconds); ``restart_deployment`` derives
            its ``restartedAt`` timestamp from it, so a replay sends an identical patch.

    Example:
        >>> a = Action.parse({"type": "scale_deployment", "namespace": "prod", "name": "api",
        ...                   "params": {"replicas": 4}, "requested_by": "ops",
        ...                   "reason": "load", "request_id": "r-1"})
        >>> a.params.replicas
        4
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: ActionType
    namespace: str
    name: str
    params: ActionParams
    requested_by: str = Field(min_length=1, max_length=256)
    reason: str = Field(default="", max_length=2048)
    request_id: str
    issued_at: int | None = Field(default=None, ge=0, le=253_402_300_799)  # ≤ 9999-12-31

    _KINDS: ClassVar[dict[str, str]] = {
        "restart_pod": "Pod",
        "restart_deployment": "Deployment",
        "scale_deployment": "Deployment",
        "rollback_deployment": "Deployment",
    }

    @model_validator(mode="before")
    @classmethod
    def _typed_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        kind = data.get("type")
        model = _PARAMS.get(kind) if isinstance(kind, str) else None
        if model is None:
            return data  # the `type` literal reports the error
        params = data.get("params", {})
        if isinstance(params, BaseModel) and not isinstance(params, model):
            raise ValueError(f"params do not belong to action type `{kind}`")
        if isinstance(params, Mapping):
            return {**data, "params": model.model_validate(dict(params))}
        return data

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not is_dns_label(value):
            raise ValueError("namespace must be an RFC 1123 label")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not is_dns_subdomain(value):
            raise ValueError("name must be an RFC 1123 subdomain")
        return value

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str) -> str:
        if _REQUEST_ID.fullmatch(value) is None:
            raise ValueError("request_id must be 1-128 characters of [A-Za-z0-9._:-]")
        return value

    @field_validator("requested_by", "reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 and c not in "\t" for c in value):
            raise ValueError("control characters are not allowed")
        return value

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Action:
        """Validate untrusted data (e.g. a decoded JSON body) into an :class:`Action`.

        Raises:
            InvalidActionError: anything is missing, unknown, mistyped or out of range; the
                message lists every field at fault.
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidActionError(_explain(exc)) from exc
        except TypeError as exc:  # pragma: no cover - defensive: non-mapping input
            raise InvalidActionError("action must be a JSON object") from exc

    @property
    def target_kind(self) -> str:
        """The kind of object acted on: ``Pod`` or ``Deployment``."""
        return self._KINDS[self.type]

    @property
    def target(self) -> str:
        """A stable target key, ``Kind/namespace/name`` (cooldowns, locks, breaker)."""
        return f"{self.target_kind}/{self.namespace}/{self.name}"

    def to_wire(self) -> dict[str, Any]:
        """The action as plain JSON data (the inverse of :meth:`parse`)."""
        return self.model_dump(mode="json")


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        parts.append(f"`{loc or '(root)'}`: {err['msg'].lower()}")
    return "invalid action: " + "; ".join(parts)


class ActionResult(BaseModel):
    """What an actuator did (or would do, on a dry run).

    Attributes:
        request_id: the action's idempotency key.
        type: the action type.
        namespace: the target namespace.
        name: the target name.
        status: ``succeeded``, ``failed`` (a refusal that belongs to the action, e.g. blocked by
            a PodDisruptionBudget) or ``dry_run``.
        changed: whether the cluster changed (or would change, on a dry run); a replay of an
            already applied action succeeds with ``changed=False``.
        reason: a stable reason code (``restarted``, ``already_applied``, ``blocked_by_pdb`` …).
        message: one lowercase sentence for humans.
        details: facts for the audit trail (resourceVersion before/after, revisions, replicas).
    """

    model_config = ConfigDict(frozen=True)

    request_id: str
    type: ActionType
    namespace: str
    name: str
    status: ActionStatus
    changed: bool
    reason: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def for_action(
        cls,
        action: Action,
        *,
        status: ActionStatus,
        changed: bool,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        """Build a result that echoes ``action``'s identity."""
        return cls(
            request_id=action.request_id,
            type=action.type,
            namespace=action.namespace,
            name=action.name,
            status=status,
            changed=changed,
            reason=reason,
            message=message,
            details=dict(details or {}),
        )


@runtime_checkable
class Actuator(Protocol):
    """Performs validated actions on a cluster.

    Contract:

    - ``execute`` is idempotent on ``action.request_id``: executing the same action twice
      changes the cluster at most once (the second call returns ``changed=False``).
    - With ``dry_run=True`` nothing is persisted: the backend asks the cluster to validate
      the change (server-side ``dryRun=All``) and returns ``status="dry_run"``.
    - Anticipated refusals (paused deployment, PDB, HPA owner, bare pod) are returned as
      ``status="failed"`` results with a reason code; infrastructure errors are raised as
      :class:`~aegis.actuators.errors.ActuatorError` subclasses.
    - Implementations are safe to call from several threads.

    Guardrails and policy are *not* the actuator's job; the executor pipeline runs them first.
    """

    def execute(self, action: Action, dry_run: bool = False) -> ActionResult:
        """Perform ``action`` (or validate it only, when ``dry_run``).

        Raises:
            ActuatorError: the cluster could not be reached, refused the call or the target
                does not exist.
        """
        ...
