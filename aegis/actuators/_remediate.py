"""The remediation algorithms of remediation.md §1, written once for both backends.

:class:`Remediator` talks to a cluster through the small :class:`ClusterOps` interface, whose
two implementations are the in-memory model (:class:`ModelOps`, used by the simulated
actuator) and the official ``kubernetes`` client (``aegis.actuators.kubernetes``). Every
operation either returns the API server's JSON or raises :class:`ApiStatusError`.

Retry rules (K8S-4, remediation.md §1):

- reads (GET/LIST) are retried on 5xx, connection errors and timeouts with exponential
  backoff and full jitter, up to ``read_attempts``;
- writes are never retried on 5xx or timeouts (the outcome is unknown);
- a ``409 Conflict`` (or a failed ``test`` op on resourceVersion, which is a 422) means the
  target changed between read and write: the whole step re-reads and re-checks the target,
  up to ``conflict_retries`` times, then :class:`ActionConflict` is raised.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from aegis.actuators._cluster import (
    REVISION,
    SKIP_ANNOTATIONS,
    SimulatedCluster,
    template_without_hash,
)
from aegis.actuators._patch import JSON_PATCH, STRATEGIC_MERGE_PATCH
from aegis.actuators._selectors import selector_string
from aegis.actuators._status import ApiStatusError
from aegis.actuators.base import (
    Action,
    ActionResult,
    RestartPodParams,
    RollbackDeploymentParams,
    ScaleDeploymentParams,
)
from aegis.actuators.errors import (
    ActionConflict,
    ActuatorError,
    ClusterForbiddenError,
    ClusterRejectedError,
    ClusterTimeoutError,
    ClusterUnavailableError,
    TargetNotFoundError,
)

__all__ = ["ClusterOps", "ModelOps", "RemediationSettings", "Remediator", "translate"]

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REQUEST_ID_ANNOTATION = "aegis.io/request-id"
CRITICAL_PRIORITY_CLASSES = frozenset({"system-cluster-critical", "system-node-critical"})
T = TypeVar("T")


class RemediationSettings(BaseModel):
    """Behaviour shared by the Kubernetes and simulated actuators (all documented defaults).

    Attributes:
        field_manager: ``fieldManager`` on every write (the second audit trail).
        min_replicas: lowest replica count ``scale_deployment`` may set.
        max_replicas: highest replica count ``scale_deployment`` may set.
        max_scale_up_step: largest increase in one action (absolute).
        max_scale_down_step: largest decrease in one action (absolute).
        allow_scale_with_hpa: scale even when an HPA targets the deployment (it will
            overwrite the change); refused by default.
        pod_restart: ``evict`` (Eviction API only), ``evict_or_delete`` (delete with a UID
            precondition when the Eviction API is unavailable or forbidden — never when a PDB
            refuses) or ``delete``.
        allow_daemonset_pods: restart DaemonSet pods.
        allow_system_critical_pods: restart pods of system-critical priority classes.
        conflict_retries: re-read and retry after a 409, this many times.
        read_attempts: attempts for reads on 5xx/timeouts.
        backoff_base_seconds: first backoff delay; doubles each attempt (full jitter).
        backoff_max_seconds: backoff ceiling.
    """

    model_config = ConfigDict(extra="forbid")

    field_manager: str = Field(default="aegis-executor", min_length=1, max_length=128)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=50, ge=0)
    max_scale_up_step: int = Field(default=10, ge=0)
    max_scale_down_step: int = Field(default=10, ge=0)
    allow_scale_with_hpa: bool = False
    pod_restart: Literal["evict", "evict_or_delete", "delete"] = "evict_or_delete"
    allow_daemonset_pods: bool = False
    allow_system_critical_pods: bool = False
    conflict_retries: int = Field(default=3, ge=0, le=10)
    read_attempts: int = Field(default=3, ge=1, le=10)
    backoff_base_seconds: float = Field(default=0.2, ge=0)
    backoff_max_seconds: float = Field(default=2.0, ge=0)


class ClusterOps(Protocol):
    """The Kubernetes calls the algorithms need (JSON in, JSON out, ApiStatusError on failure)."""

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_deployment(
        self, namespace: str, name: str, body: Any, content_type: str, dry_run: bool
    ) -> dict[str, Any]: ...

    def list_replica_sets(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def read_scale(self, namespace: str, name: str) -> dict[str, Any]: ...

    def patch_scale(
        self, namespace: str, name: str, body: Any, dry_run: bool
    ) -> dict[str, Any]: ...

    def list_hpas(self, namespace: str) -> list[dict[str, Any]]: ...

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]: ...

    def evict_pod(
        self, namespace: str, name: str, *, uid: str, grace: int | None, dry_run: bool
    ) -> None: ...

    def delete_pod(
        self, namespace: str, name: str, *, uid: str, rv: str, grace: int | None, dry_run: bool
    ) -> None: ...


class ModelOps:
    """:class:`ClusterOps` over the in-memory :class:`SimulatedCluster` (no HTTP)."""

    def __init__(self, cluster: SimulatedCluster, field_manager: str) -> None:
        self.cluster = cluster
        self.field_manager = field_manager

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self.cluster.get("Deployment", namespace, name)

    def patch_deployment(
        self, namespace: str, name: str, body: Any, content_type: str, dry_run: bool
    ) -> dict[str, Any]:
        return self.cluster.patch_deployment(
            namespace,
            name,
            copy.deepcopy(body),
            content_type,
            dry_run=dry_run,
            field_manager=self.field_manager,
        )

    def list_replica_sets(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.cluster.select("ReplicaSet", namespace, selector)

    def read_scale(self, namespace: str, name: str) -> dict[str, Any]:
        return self.cluster.get_scale(namespace, name)

    def patch_scale(self, namespace: str, name: str, body: Any, dry_run: bool) -> dict[str, Any]:
        return self.cluster.update_scale(
            namespace,
            name,
            copy.deepcopy(body),
            STRATEGIC_MERGE_PATCH,
            dry_run=dry_run,
            field_manager=self.field_manager,
        )

    def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        return self.cluster.select("HorizontalPodAutoscaler", namespace)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.cluster.get("Pod", namespace, name)

    def evict_pod(
        self, namespace: str, name: str, *, uid: str, grace: int | None, dry_run: bool
    ) -> None:
        self.cluster.evict_pod(namespace, name, preconditions={"uid": uid}, dry_run=dry_run)

    def delete_pod(
        self, namespace: str, name: str, *, uid: str, rv: str, grace: int | None, dry_run: bool
    ) -> None:
        self.cluster.delete_pod(
            namespace, name, preconditions={"uid": uid, "resourceVersion": rv}, dry_run=dry_run
        )


def translate(err: ApiStatusError, action: Action) -> ActuatorError:
    """Map a failed API call onto the :class:`ActuatorError` tree (H2)."""
    target = f"`{action.namespace}/{action.name}`"
    if err.timeout:
        return ClusterTimeoutError(f"the kubernetes api timed out acting on {target}")
    if err.code == 0:
        return ClusterUnavailableError(f"the kubernetes api is unreachable: {err.message}")
    if err.code == 404:
        return TargetNotFoundError(f"{action.target_kind.lower()} {target} does not exist")
    if err.code in (401, 403):
        return ClusterForbiddenError(
            f"the kubernetes api refused access to {target}: {err.message}"
        )
    if err.code == 409:
        return ActionConflict(f"{target} changed while acting on it: {err.message}")
    if err.code >= 500:
        return ClusterUnavailableError(f"the kubernetes api failed with {err.code}: {err.message}")
    return ClusterRejectedError(f"the kubernetes api rejected the call ({err.code}): {err.message}")


class _Retry(Exception):
    """Internal: the target changed; re-read and try the step again."""


def _ann(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _revision(rs: Mapping[str, Any]) -> int:
    try:
        return int(_ann(rs).get(REVISION, "0"))
    except ValueError:
        return 0


class Remediator:
    """Runs :class:`Action` objects against :class:`ClusterOps` (see remediation.md §1)."""

    def __init__(
        self,
        ops: ClusterOps,
        settings: RemediationSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.ops = ops
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.stats = {"conflict_retries": 0, "read_retries": 0, "blocked_by_pdb": 0}

    # -- plumbing --------------------------------------------------------------------------

    def _read(self, fn: Callable[[], T]) -> T:
        s = self.settings
        for attempt in range(1, s.read_attempts + 1):
            try:
                return fn()
            except ApiStatusError as err:
                transient = err.timeout or err.code == 0 or err.code >= 500 or err.code == 429
                if not transient or attempt == s.read_attempts:
                    raise
                self.stats["read_retries"] += 1
                delay = min(s.backoff_max_seconds, s.backoff_base_seconds * 2 ** (attempt - 1))
                self._sleep(self._rng.uniform(0, delay))
        raise AssertionError("unreachable")  # pragma: no cover

    def execute(self, action: Action, dry_run: bool = False) -> ActionResult:
        """Run ``action``; see :class:`aegis.actuators.Actuator` for the contract."""
        step = {
            "restart_deployment": self._restart_deployment,
            "scale_deployment": self._scale_deployment,
            "rollback_deployment": self._rollback_deployment,
            "restart_pod": self._restart_pod,
        }[action.type]
        try:
            for _ in range(self.settings.conflict_retries + 1):
                try:
                    return step(action, dry_run)
                except _Retry:
                    self.stats["conflict_retries"] += 1
                    continue
            raise ActionConflict(
                f"`{action.namespace}/{action.name}` kept changing; gave up after "
                f"{self.settings.conflict_retries} retries"
            )
        except ApiStatusError as err:
            raise translate(err, action) from err

    def _write(self, fn: Callable[[], T], *, rv_test_is_422: bool = False) -> T:
        try:
            return fn()
        except ApiStatusError as err:
            if err.code == 409:
                raise _Retry from err
            if rv_test_is_422 and err.code == 422 and "/metadata/resourceVersion" in err.message:
                raise _Retry from err
            raise

    def _done(
        self,
        action: Action,
        dry_run: bool,
        reason: str,
        message: str,
        details: Mapping[str, Any],
        *,
        changed: bool = True,
    ) -> ActionResult:
        return ActionResult.for_action(
            action,
            status="dry_run" if dry_run else "succeeded",
            changed=changed,
            reason=reason,
            message=message,
            details=details,
        )

    def _refuse(
        self, action: Action, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> ActionResult:
        return ActionResult.for_action(
            action,
            status="failed",
            changed=False,
            reason=reason,
            message=message,
            details=details,
        )

    def restart_timestamp(self, action: Action) -> str:
        """The ``restartedAt`` value: the action's ``issued_at`` (deterministic) or now."""
        if action.issued_at is not None:
            when = datetime.fromtimestamp(action.issued_at, UTC)
        else:
            when = self._clock()
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- restart_deployment (§1.1) -----------------------------------------------------------

    def _restart_deployment(self, action: Action, dry_run: bool) -> ActionResult:
        ns, name = action.namespace, action.name
        dep = self._read(lambda: self.ops.read_deployment(ns, name))
        rv = dep["metadata"]["resourceVersion"]
        if _ann(dep).get(REQUEST_ID_ANNOTATION) == action.request_id:
            return self._done(
                action,
                dry_run,
                "already_applied",
                f"request `{action.request_id}` was already applied",
                {"resource_version": rv},
                changed=False,
            )
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        if spec.get("paused"):
            return self._refuse(
                action,
                "deployment_paused",
                "can't restart paused deployment (run rollout resume first)",
            )
        if _rollout_in_progress(dep):
            return self._refuse(
                action,
                "rollout_in_progress",
                "a rollout is already in progress; retry when it completes",
                {
                    "generation": dep["metadata"].get("generation"),
                    "observed_generation": status.get("observedGeneration"),
                },
            )
        ts = self.restart_timestamp(action)
        body = {
            "metadata": {
                "resourceVersion": rv,
                "annotations": {REQUEST_ID_ANNOTATION: action.request_id},
            },
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: ts}}}},
        }
        out = self._write(
            lambda: self.ops.patch_deployment(ns, name, body, STRATEGIC_MERGE_PATCH, dry_run)
        )
        return self._done(
            action,
            dry_run,
            "restarted",
            f"deployment `{ns}/{name}` restarted at {ts}",
            {
                "restarted_at": ts,
                "resource_version_before": rv,
                "resource_version_after": out["metadata"]["resourceVersion"],
                "generation": out["metadata"].get("generation"),
            },
        )

    # -- scale_deployment (§1.2) ------------------------------------------------------------

    def _scale_deployment(self, action: Action, dry_run: bool) -> ActionResult:
        ns, name, s = action.namespace, action.name, self.settings
        assert isinstance(action.params, ScaleDeploymentParams)
        want = action.params.replicas
        if not s.min_replicas <= want <= s.max_replicas:
            return self._refuse(
                action,
                "replicas_out_of_bounds",
                f"replicas {want} is outside the allowed range {s.min_replicas}..{s.max_replicas}",
            )
        hpas = [
            h["metadata"]["name"]
            for h in self._read(lambda: self.ops.list_hpas(ns))
            if (ref := (h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind")
            == "Deployment"
            and ref.get("name") == name
        ]
        if hpas and not s.allow_scale_with_hpa:
            return self._refuse(
                action,
                "hpa_owns_deployment",
                f"horizontal pod autoscaler `{hpas[0]}` scales this deployment; "
                "a manual scale would be overwritten",
                {"hpas": hpas},
            )
        scale = self._read(lambda: self.ops.read_scale(ns, name))
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        rv = scale["metadata"]["resourceVersion"]
        if current == want:
            return self._done(
                action,
                dry_run,
                "already_applied",
                f"deployment `{ns}/{name}` already has {want} replicas",
                {"replicas_before": current, "replicas_after": want, "resource_version": rv},
                changed=False,
            )
        if want > current + s.max_scale_up_step or want < current - s.max_scale_down_step:
            return self._refuse(
                action,
                "scale_step_too_large",
                f"scaling from {current} to {want} exceeds the step cap "
                f"(+{s.max_scale_up_step}/-{s.max_scale_down_step})",
                {"replicas_before": current},
            )
        body = {"metadata": {"resourceVersion": rv}, "spec": {"replicas": want}}
        out = self._write(lambda: self.ops.patch_scale(ns, name, body, dry_run))
        return self._done(
            action,
            dry_run,
            "scaled",
            f"deployment `{ns}/{name}` scaled from {current} to {want}",
            {
                "replicas_before": current,
                "replicas_after": want,
                "resource_version_before": rv,
                "resource_version_after": out["metadata"]["resourceVersion"],
                "hpas": hpas,
            },
        )

    # -- rollback_deployment (§1.3, kubectl rollout undo) --------------------------------------

    def _rollback_deployment(self, action: Action, dry_run: bool) -> ActionResult:
        ns, name = action.namespace, action.name
        assert isinstance(action.params, RollbackDeploymentParams)
        dep = self._read(lambda: self.ops.read_deployment(ns, name))
        rv, uid = dep["metadata"]["resourceVersion"], dep["metadata"]["uid"]
        if _ann(dep).get(REQUEST_ID_ANNOTATION) == action.request_id:
            return self._done(
                action,
                dry_run,
                "already_applied",
                f"request `{action.request_id}` was already applied",
                {"resource_version": rv},
                changed=False,
            )
        if (dep.get("spec") or {}).get("paused"):
            return self._refuse(
                action,
                "deployment_paused",
                "you cannot rollback a paused deployment; resume it first",
            )
        selector = selector_string((dep.get("spec") or {}).get("selector"))
        owned = [
            rs
            for rs in self._read(lambda: self.ops.list_replica_sets(ns, selector))
            if any(
                ref.get("controller") and ref.get("uid") == uid
                for ref in (rs.get("metadata") or {}).get("ownerReferences") or []
            )
        ]
        to_revision = action.params.to_revision
        target = _pick_revision(owned, to_revision)
        if target is None:
            if to_revision:
                return self._refuse(
                    action,
                    "revision_not_found",
                    f"unable to find specified revision {to_revision} in history",
                )
            return self._refuse(action, "no_rollout_history", "no rollout history found")
        revision = _revision(target)
        if template_without_hash(target["spec"]["template"]) == template_without_hash(
            dep["spec"]["template"]
        ):
            return self._done(
                action,
                dry_run,
                "already_at_revision",
                f"skipped rollback (current template already matches revision {revision})",
                {"revision": revision, "resource_version": rv},
                changed=False,
            )
        template = template_without_hash(target["spec"]["template"])
        annotations = {k: v for k, v in _ann(dep).items() if k in SKIP_ANNOTATIONS}
        annotations.update({k: v for k, v in _ann(target).items() if k not in SKIP_ANNOTATIONS})
        annotations[REQUEST_ID_ANNOTATION] = action.request_id
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]
        out = self._write(
            lambda: self.ops.patch_deployment(ns, name, patch, JSON_PATCH, dry_run),
            rv_test_is_422=True,
        )
        return self._done(
            action,
            dry_run,
            "rolled_back",
            f"deployment `{ns}/{name}` rolled back to revision {revision}",
            {
                "to_revision": revision,
                "resource_version_before": rv,
                "resource_version_after": out["metadata"]["resourceVersion"],
            },
        )

    # -- restart_pod (§1.4) -----------------------------------------------------------------

    def _restart_pod(self, action: Action, dry_run: bool) -> ActionResult:
        ns, name, s = action.namespace, action.name, self.settings
        assert isinstance(action.params, RestartPodParams)
        grace = action.params.grace_period_seconds
        pod = self._read(lambda: self.ops.read_pod(ns, name))
        meta = pod["metadata"]
        controller = next(
            (r for r in meta.get("ownerReferences") or [] if r.get("controller")), None
        )
        if meta.get("deletionTimestamp"):
            return self._done(
                action,
                dry_run,
                "already_terminating",
                f"pod `{ns}/{name}` is already terminating",
                {},
                changed=False,
            )
        if controller is None:
            return self._refuse(
                action, "bare_pod", f"pod `{ns}/{name}` has no controller and would not come back"
            )
        if (
            "kubernetes.io/config.mirror" in (meta.get("annotations") or {})
            or controller.get("kind") == "Node"
        ):
            return self._refuse(action, "static_pod", f"pod `{ns}/{name}` is a static (mirror) pod")
        if controller.get("kind") == "DaemonSet" and not s.allow_daemonset_pods:
            return self._refuse(
                action, "daemonset_pod", f"pod `{ns}/{name}` belongs to a daemonset"
            )
        if (pod.get("spec") or {}).get(
            "priorityClassName"
        ) in CRITICAL_PRIORITY_CLASSES and not s.allow_system_critical_pods:
            return self._refuse(
                action, "system_critical_pod", f"pod `{ns}/{name}` is system-critical"
            )
        uid, rv = meta["uid"], meta["resourceVersion"]
        details = {"uid": uid, "owner": f"{controller.get('kind')}/{controller.get('name')}"}
        method = "delete" if s.pod_restart == "delete" else "evict"
        if method == "evict":
            try:
                self.ops.evict_pod(ns, name, uid=uid, grace=grace, dry_run=dry_run)
            except ApiStatusError as err:
                if err.code == 429:
                    self.stats["blocked_by_pdb"] += 1
                    causes = (err.details or {}).get("causes") or []
                    return self._refuse(
                        action,
                        "blocked_by_pdb",
                        "eviction refused: it would violate a pod disruption budget",
                        {
                            **details,
                            "server_message": err.message,
                            "causes": [c.get("message") for c in causes],
                        },
                    )
                if err.code == 409:
                    raise ActionConflict(
                        f"pod `{ns}/{name}` was replaced; not touching the new pod"
                    ) from err
                eviction_unavailable = err.code in (403, 405) or (
                    err.code == 404 and not err.details.get("name")
                )
                if not (eviction_unavailable and s.pod_restart == "evict_or_delete"):
                    raise
                method = "delete"
                details["eviction_error"] = err.code
        if method == "delete":
            try:
                self.ops.delete_pod(ns, name, uid=uid, rv=rv, grace=grace, dry_run=dry_run)
            except ApiStatusError as err:
                if err.code == 409:
                    raise ActionConflict(
                        f"pod `{ns}/{name}` changed or was replaced; not deleted"
                    ) from err
                raise
        verb = "evicted" if method == "evict" else "deleted"
        return self._done(
            action, dry_run, verb, f"pod `{ns}/{name}` {verb}", {**details, "method": method}
        )


def _rollout_in_progress(dep: Mapping[str, Any]) -> bool:
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    if meta.get("generation") != status.get("observedGeneration"):
        return True
    replicas = spec.get("replicas", 1)
    return int(status.get("updatedReplicas") or 0) < int(replicas if replicas is not None else 1)


def _pick_revision(owned: list[dict[str, Any]], to_revision: int) -> dict[str, Any] | None:
    """kubectl's choice: the exact revision, or the second-highest for ``0``."""
    if to_revision:
        return next((rs for rs in owned if _revision(rs) == to_revision), None)
    if not owned:
        return None
    latest = max(_revision(rs) for rs in owned)
    previous = [rs for rs in owned if _revision(rs) < latest]
    if not previous:
        return None
    return max(previous, key=_revision)
