"""One in-memory Kubernetes cluster model behind two fronts.

:class:`~aegis.actuators.SimulatedActuator` calls it directly;
:class:`aegis.testing.FakeKubernetesAPI` serves it over HTTP to the real ``kubernetes``
client. Objects are stored as the JSON the API server would return (camelCase keys), and
every rule the actuators depend on is the API server's or a controller's:

- every write bumps a cluster-wide ``resourceVersion``; a write that changes nothing is not a
  write (no bump), as the API server's no-op detection does;
- a ``resourceVersion`` in a patch or PUT body that is not the current one is ``409 Conflict``;
- a spec change bumps ``metadata.generation``; the deployment controller then (when
  ``converge`` is on) makes a ReplicaSet for the template — reusing an old one whose template
  matches, ignoring ``pod-template-hash``, and giving it the next revision number as
  Kubernetes does on rollback — scales the old ones to zero, creates/deletes pods, and writes
  ``status.observedGeneration``; with ``converge`` off the rollout stays "in progress";
- evictions (``policy/v1``) are refused with ``429`` when a PodDisruptionBudget would be
  violated, ``500`` when more than one PDB matches; deletes honour UID/resourceVersion
  preconditions (``409``);
- ``dry_run=True`` runs validation and returns the would-be object, and persists nothing.

Simplifications (documented in ``docs/actuators.md``): rollouts are instantaneous, pods are
Ready as soon as they exist, deleted pods vanish at once, PDB ``expectedPods`` is the number
of matching pods, ``managedFields`` records one entry per manager and operation.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aegis.actuators._patch import apply_patch
from aegis.actuators._selectors import matches, parse_selector, selector_string
from aegis.actuators._status import ApiStatusError
from aegis.errors import ConfigurationError

__all__ = ["REVISION", "TEMPLATE_HASH", "ClusterSeed", "SimulatedCluster"]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
TEMPLATE_HASH = "pod-template-hash"
# Deployment annotations the controller does not copy to ReplicaSets (kubectl's skip-list).
SKIP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)

_RESOURCES = {
    "Deployment": ("deployments", "apps", "apps/v1"),
    "ReplicaSet": ("replicasets", "apps", "apps/v1"),
    "Pod": ("pods", "", "v1"),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", "autoscaling", "autoscaling/v2"),
    "PodDisruptionBudget": ("poddisruptionbudgets", "policy", "policy/v1"),
}
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString alphabet


def _encode(data: bytes, length: int) -> str:
    n = int.from_bytes(hashlib.sha256(data).digest(), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, len(_SAFE))
        out.append(_SAFE[r])
    return "".join(out)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def template_without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """A pod template with the ``pod-template-hash`` label removed (for comparisons)."""
    result = copy.deepcopy(dict(template))
    labels = (result.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(TEMPLATE_HASH, None)
    return result


def _qualified(kind: str) -> str:
    plural, group, _ = _RESOURCES[kind]
    return f"{plural}.{group}" if group else plural


def not_found(kind: str, name: str) -> ApiStatusError:
    """The API server's 404 Status for a missing object."""
    plural, group, _ = _RESOURCES[kind]
    return ApiStatusError(
        404,
        "NotFound",
        f'{_qualified(kind)} "{name}" not found',
        {"name": name, "group": group, "kind": plural} if group else {"name": name, "kind": plural},
    )


def conflict(kind: str, name: str) -> ApiStatusError:
    """The API server's 409 Status for a stale resourceVersion."""
    plural, group, _ = _RESOURCES[kind]
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(kind)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, name: str, field: str, detail: str) -> ApiStatusError:
    """The API server's 422 Status for a validation error."""
    _, group, _ = _RESOURCES[kind]
    return ApiStatusError(
        422,
        "Invalid",
        f'{kind}.{group or "core"} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        },
    )


# --- seed format ----------------------------------------------------------------------------


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DeploymentSeed(_Seed):
    """One deployment of a seed file; ``history`` lists older images, oldest first."""

    namespace: str
    name: str
    replicas: int = Field(default=1, ge=0)
    image: str
    history: list[str] = Field(default_factory=list)
    paused: bool = False
    labels: dict[str, str] | None = None
    revision_history_limit: int = Field(default=10, ge=0)


class HPASeed(_Seed):
    """An autoscaling/v2 HPA targeting a deployment."""

    namespace: str
    name: str
    target: str
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)


class PDBSeed(_Seed):
    """A policy/v1 PodDisruptionBudget with a ``matchLabels`` selector."""

    namespace: str
    name: str
    selector: dict[str, str]
    min_available: int | str | None = None
    max_unavailable: int | str | None = None


class PodSeed(_Seed):
    """A pod not managed through a seeded deployment (bare, DaemonSet, static …)."""

    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    owner_kind: str | None = None
    owner_name: str | None = None
    priority_class_name: str | None = None
    mirror: bool = False


class ClusterSeed(_Seed):
    """The YAML seed format shared by the simulated actuator and the fake API."""

    deployments: list[DeploymentSeed] = Field(default_factory=list)
    hpas: list[HPASeed] = Field(default_factory=list)
    pdbs: list[PDBSeed] = Field(default_factory=list)
    pods: list[PodSeed] = Field(default_factory=list)


# --- the model ------------------------------------------------------------------------------

_Key = tuple[str, str, str]


class SimulatedCluster:
    """A thread-safe in-memory cluster; see the module docstring for the semantics.

    Args:
        converge: run the deployment and ReplicaSet controllers after each write (default);
            switch off to hold rollouts "in progress", then call :meth:`reconcile`.
        clock: returns the current UTC time (timestamps only).
    """

    def __init__(
        self, *, converge: bool = True, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._lock = threading.RLock()
        self._objects: dict[_Key, dict[str, Any]] = {}
        self._by_owner: dict[str, set[_Key]] = {}  # controller uid -> owned object keys
        self._rv = itertools.count(1000)
        self._names = itertools.count(1)
        self._clock = clock or (lambda: datetime.now(UTC))
        self.converge = converge
        self.current_rv = "999"

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_seed(cls, data: Mapping[str, Any] | ClusterSeed, **kwargs: Any) -> SimulatedCluster:
        """Build a cluster from seed data (the YAML format, already parsed).

        Raises:
            ConfigurationError: the seed does not match the format.
        """
        try:
            seed = data if isinstance(data, ClusterSeed) else ClusterSeed.model_validate(dict(data))
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].lower()}" for e in exc.errors()
            )
            raise ConfigurationError(f"invalid cluster seed: {fields}") from exc
        cluster = cls(**kwargs)
        for dep in seed.deployments:
            cluster.add_deployment(dep)
        for pod in seed.pods:
            cluster.add_pod(pod)
        for hpa in seed.hpas:
            cluster.add_hpa(hpa)
        for pdb in seed.pdbs:
            cluster.add_pdb(pdb)
        return cluster

    @classmethod
    def from_yaml(cls, source: str | Path, **kwargs: Any) -> SimulatedCluster:
        """Build a cluster from a YAML seed file (a :class:`~pathlib.Path`) or YAML text.

        Raises:
            ConfigurationError: the file cannot be read or parsed, or does not match the format.
        """
        try:
            text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
            data = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read cluster seed `{source}`: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError("invalid cluster seed: the top level must be a mapping")
        return cls.from_seed(data, **kwargs)

    def _now(self) -> str:
        return self._clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _next_rv(self) -> str:
        self.current_rv = str(next(self._rv))
        return self.current_rv

    def _meta(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": self._next_rv(),
            "creationTimestamp": self._now(),
        }

    def _store(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        self._unindex(key)
        self._objects[key] = obj
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller"):
                self._by_owner.setdefault(ref["uid"], set()).add(key)

    def _unindex(self, key: _Key) -> None:
        old = self._objects.get(key)
        for ref in (old or {}).get("metadata", {}).get("ownerReferences") or []:
            self._by_owner.get(ref.get("uid"), set()).discard(key)

    def _delete(self, key: _Key) -> None:
        self._unindex(key)
        del self._objects[key]

    def add_deployment(self, seed: DeploymentSeed) -> dict[str, Any]:
        """Create a deployment with its revision history (older images first)."""
        with self._lock:
            labels = seed.labels or {"app": seed.name}
            images = [*seed.history, seed.image]
            dep: dict[str, Any] = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    **self._meta("Deployment", seed.namespace, seed.name),
                    "generation": 1,
                    "labels": dict(labels),
                    "annotations": {},
                },
                "spec": {
                    "replicas": seed.replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": _template(seed.name, labels, images[0]),
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    },
                    "revisionHistoryLimit": seed.revision_history_limit,
                    "progressDeadlineSeconds": 600,
                },
                "status": {},
            }
            self._store(dep)
            self._reconcile_deployment(dep)
            for image in images[1:]:
                dep = self._objects[("Deployment", seed.namespace, seed.name)]
                new = copy.deepcopy(dep)
                new["spec"]["template"]["spec"]["containers"][0]["image"] = image
                self._write("Deployment", dep, new, "aegis-seed", "Update")
            if seed.paused:
                dep = self._objects[("Deployment", seed.namespace, seed.name)]
                new = copy.deepcopy(dep)
                new["spec"]["paused"] = True
                self._write("Deployment", dep, new, "aegis-seed", "Update")
            return copy.deepcopy(self._objects[("Deployment", seed.namespace, seed.name)])

    def add_pod(self, seed: PodSeed) -> dict[str, Any]:
        """Create a pod (bare unless an owner is given)."""
        with self._lock:
            meta = {**self._meta("Pod", seed.namespace, seed.name), "labels": dict(seed.labels)}
            if seed.owner_kind:
                meta["ownerReferences"] = [
                    {
                        "apiVersion": "apps/v1",
                        "kind": seed.owner_kind,
                        "name": seed.owner_name or seed.name,
                        "uid": str(
                            uuid.uuid5(uuid.NAMESPACE_URL, f"{seed.owner_kind}/{seed.owner_name}")
                        ),
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ]
            if seed.mirror:
                meta["annotations"] = {"kubernetes.io/config.mirror": "mirror"}
            spec: dict[str, Any] = {
                "containers": [{"name": seed.name, "image": "registry.local/pause:3.9"}],
                "terminationGracePeriodSeconds": 30,
                "nodeName": "node-1",
            }
            if seed.priority_class_name:
                spec["priorityClassName"] = seed.priority_class_name
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": spec,
                "status": _running(),
            }
            self._store(pod)
            return copy.deepcopy(pod)

    def add_hpa(self, seed: HPASeed) -> dict[str, Any]:
        """Create an autoscaling/v2 HPA targeting a deployment."""
        with self._lock:
            hpa = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": self._meta("HorizontalPodAutoscaler", seed.namespace, seed.name),
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": seed.target,
                    },
                    "minReplicas": seed.min_replicas,
                    "maxReplicas": seed.max_replicas,
                },
                "status": {"currentReplicas": 0, "desiredReplicas": 0},
            }
            self._store(hpa)
            return copy.deepcopy(hpa)

    def add_pdb(self, seed: PDBSeed) -> dict[str, Any]:
        """Create a policy/v1 PodDisruptionBudget."""
        with self._lock:
            spec: dict[str, Any] = {"selector": {"matchLabels": dict(seed.selector)}}
            if seed.min_available is not None:
                spec["minAvailable"] = seed.min_available
            if seed.max_unavailable is not None:
                spec["maxUnavailable"] = seed.max_unavailable
            pdb = {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {
                    **self._meta("PodDisruptionBudget", seed.namespace, seed.name),
                    "generation": 1,
                },
                "spec": spec,
            }
            self._store(pdb)
            return copy.deepcopy(pdb)

    # -- reads ---------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of one object.

        Raises:
            ApiStatusError: 404 when it does not exist.
        """
        with self._lock:
            obj = self._objects.get((kind, namespace, name))
            if obj is None:
                raise not_found(kind, name)
            return self._present(obj)

    def select(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Copies of the objects of ``kind`` in ``namespace`` matching ``label_selector``."""
        reqs = parse_selector(label_selector or "")
        with self._lock:
            return [
                self._present(obj)
                for (k, ns, _), obj in sorted(self._objects.items())
                if k == kind and ns == namespace and matches(reqs, obj["metadata"].get("labels"))
            ]

    def list_document(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> dict[str, Any]:
        """The ``…List`` document the API server returns for a list call."""
        items = self.select(kind, namespace, label_selector)
        return {
            "apiVersion": _RESOURCES[kind][2],
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": self.current_rv},
            "items": items,
        }

    def _present(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        if out["kind"] == "PodDisruptionBudget":
            out["status"] = self._pdb_status(obj)
        elif out["kind"] == "HorizontalPodAutoscaler":
            target = self._objects.get(
                ("Deployment", obj["metadata"]["namespace"], obj["spec"]["scaleTargetRef"]["name"])
            )
            n = target["spec"]["replicas"] if target else 0
            out["status"] = {"currentReplicas": n, "desiredReplicas": n}
        return out

    # -- writes --------------------------------------------------------------------------

    def _write(
        self,
        kind: str,
        old: dict[str, Any],
        new: dict[str, Any],
        manager: str | None,
        operation: str,
    ) -> dict[str, Any]:
        """Commit ``new`` over ``old`` (already validated); no-op when nothing changed."""
        if new == old:
            return copy.deepcopy(old)
        meta = new["metadata"]
        if kind in {"Deployment", "ReplicaSet"} and new.get("spec") != old.get("spec"):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if manager:
            entries = [
                e
                for e in meta.get("managedFields", [])
                if not (e.get("manager") == manager and e.get("operation") == operation)
            ]
            entries.append(
                {
                    "manager": manager,
                    "operation": operation,
                    "apiVersion": _RESOURCES[kind][2],
                    "time": self._now(),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {},
                }
            )
            meta["managedFields"] = entries
        meta["resourceVersion"] = self._next_rv()
        self._store(new)
        if self.converge and kind == "Deployment":
            self._reconcile_deployment(new)
        return copy.deepcopy(self._objects[(kind, meta["namespace"], meta["name"])])

    def _check_rv(self, kind: str, current: dict[str, Any], candidate: dict[str, Any]) -> None:
        rv = (candidate.get("metadata") or {}).get("resourceVersion")
        if rv not in (None, "") and rv != current["metadata"]["resourceVersion"]:
            raise conflict(kind, current["metadata"]["name"])

    def patch_deployment(
        self,
        namespace: str,
        name: str,
        body: Any,
        content_type: str,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """PATCH a deployment (JSON, merge or strategic merge patch).

        Raises:
            ApiStatusError: 404, 409 (stale resourceVersion in the body), 422 (invalid result
                or failed JSON Patch ``test``), 400/415 (malformed patch).
        """
        with self._lock:
            current = self._objects.get(("Deployment", namespace, name))
            if current is None:
                raise not_found("Deployment", name)
            patched = apply_patch(current, body, content_type)
            self._check_rv("Deployment", current, patched)
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            patched["status"] = copy.deepcopy(current.get("status", {}))  # status subresource
            _validate_deployment(current, patched)
            if dry_run:
                if patched.get("spec") != current.get("spec"):
                    patched["metadata"]["generation"] = (
                        int(current["metadata"].get("generation", 1)) + 1
                    )
                return patched
            return self._write("Deployment", current, patched, field_manager, "Update")

    def get_scale(self, namespace: str, name: str) -> dict[str, Any]:
        """The ``autoscaling/v1 Scale`` subresource of a deployment."""
        with self._lock:
            dep = self._objects.get(("Deployment", namespace, name))
            if dep is None:
                raise not_found("Deployment", name)
            return _scale_of(dep)

    def update_scale(
        self,
        namespace: str,
        name: str,
        body: Any,
        content_type: str | None,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """PATCH (``content_type`` given) or PUT (``None``) the scale subresource.

        Raises:
            ApiStatusError: 404, 409 (stale resourceVersion), 422 (bad replicas), 400/415.
        """
        with self._lock:
            dep = self._objects.get(("Deployment", namespace, name))
            if dep is None:
                raise not_found("Deployment", name)
            scale = _scale_of(dep)
            if content_type is None:
                if not isinstance(body, dict):
                    raise ApiStatusError(400, "BadRequest", "the body must be a Scale object")
                new_scale = body
            else:
                new_scale = apply_patch(scale, body, content_type)
            self._check_rv("Deployment", dep, new_scale)
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(
                    "Deployment",
                    name,
                    "spec.replicas",
                    f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
                )
            new = copy.deepcopy(dep)
            new["spec"]["replicas"] = replicas
            if dry_run:
                would = copy.deepcopy(dep)
                would["spec"]["replicas"] = replicas
                return _scale_of(would)
            written = self._write("Deployment", dep, new, field_manager, "Update")
            return _scale_of(written)

    def delete_pod(
        self,
        namespace: str,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE a pod, honouring UID/resourceVersion preconditions.

        Returns:
            The pod as it was, with ``deletionTimestamp`` set (as the API server answers).

        Raises:
            ApiStatusError: 404, or 409 when a precondition fails.
        """
        with self._lock:
            pod = self._objects.get(("Pod", namespace, name))
            if pod is None:
                raise not_found("Pod", name)
            _check_preconditions(pod, preconditions)
            out = copy.deepcopy(pod)
            out["metadata"]["deletionTimestamp"] = self._now()
            if dry_run:
                return out
            self._delete(("Pod", namespace, name))
            self._next_rv()
            if self.converge:
                self._reconcile_all()
            return out

    def evict_pod(
        self,
        namespace: str,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """POST a policy/v1 Eviction for a pod.

        Returns:
            The ``Status`` object of a successful eviction (code 201).

        Raises:
            ApiStatusError: 404; 409 when a precondition fails; 429 when a
                PodDisruptionBudget would be violated; 500 when several PDBs match.
        """
        with self._lock:
            pod = self._objects.get(("Pod", namespace, name))
            if pod is None:
                raise not_found("Pod", name)
            _check_preconditions(pod, preconditions)
            labels = pod["metadata"].get("labels") or {}
            pdbs = [
                obj
                for (k, ns, _), obj in sorted(self._objects.items())
                if k == "PodDisruptionBudget"
                and ns == namespace
                and matches(parse_selector(selector_string(obj["spec"].get("selector"))), labels)
            ]
            if len(pdbs) > 1:
                raise ApiStatusError(
                    500,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction "
                    "subresource does not support.",
                )
            if pdbs:
                status = self._pdb_status(pdbs[0])
                if status["disruptionsAllowed"] <= 0:
                    cause = (
                        f"The disruption budget {pdbs[0]['metadata']['name']} needs "
                        f"{status['desiredHealthy']} healthy pods and has "
                        f"{status['currentHealthy']} currently"
                    )
                    raise ApiStatusError(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        {"causes": [{"reason": "DisruptionBudget", "message": cause}]},
                    )
            if not dry_run:
                self._delete(("Pod", namespace, name))
                self._next_rv()
                if self.converge:
                    self._reconcile_all()
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            }

    # -- controllers ---------------------------------------------------------------------

    def reconcile(self) -> None:
        """Run the deployment and ReplicaSet controllers once over every deployment."""
        with self._lock:
            self._reconcile_all(force=True)

    def _reconcile_all(self, force: bool = False) -> None:
        for key in sorted(k for k in self._objects if k[0] == "Deployment"):
            self._reconcile_deployment(self._objects[key], force=force)
        for key in sorted(k for k in self._objects if k[0] == "ReplicaSet"):
            if key in self._objects:
                self._reconcile_rs(self._objects[key])

    def _owned(self, kind: str, owner: Mapping[str, Any]) -> list[dict[str, Any]]:
        ns, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
        found = [
            (key, self._objects[key])
            for key in self._by_owner.get(uid, ())
            if key[0] == kind and key[1] == ns and key in self._objects
        ]
        return [obj for _, obj in sorted(found, key=lambda item: item[0])]

    def _reconcile_deployment(self, dep: dict[str, Any], *, force: bool = False) -> None:
        if not (self.converge or force):
            return
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        dep = self._objects[("Deployment", ns, name)]
        owned = self._owned("ReplicaSet", dep)
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned]
        max_rev = max(revisions, default=0)
        wanted = template_without_hash(dep["spec"]["template"])
        new_rs = next(
            (rs for rs in owned if template_without_hash(rs["spec"]["template"]) == wanted), None
        )
        replicas = dep["spec"]["replicas"]
        if dep["spec"].get("paused") and new_rs is None:
            # A paused deployment keeps its ReplicaSets; only scaling goes through.
            current = max(
                owned,
                key=lambda rs: int(rs["metadata"]["annotations"].get(REVISION, "0")),
                default=None,
            )
            if current is not None:
                self._set_rs_replicas(current, replicas)
            self._set_deployment_status(dep, current, replicas)
            return
        if new_rs is None:
            pod_hash = _encode(_canonical(wanted), 10)
            labels = {**(wanted.get("metadata", {}).get("labels") or {}), TEMPLATE_HASH: pod_hash}
            template = copy.deepcopy(wanted)
            template.setdefault("metadata", {})["labels"] = labels
            annotations = {
                k: v
                for k, v in (dep["metadata"].get("annotations") or {}).items()
                if k not in SKIP_ANNOTATIONS
            }
            annotations.update(
                {
                    REVISION: str(max_rev + 1),
                    DESIRED_REPLICAS: str(replicas),
                    MAX_REPLICAS: str(replicas + math.ceil(replicas * 0.25)),
                }
            )
            new_rs = {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    **self._meta("ReplicaSet", ns, f"{name}-{pod_hash}"),
                    "generation": 1,
                    "labels": labels,
                    "annotations": annotations,
                    "ownerReferences": [_owner_ref(dep)],
                },
                "spec": {
                    "replicas": 0,
                    "selector": {
                        "matchLabels": {
                            **dep["spec"]["selector"].get("matchLabels", {}),
                            TEMPLATE_HASH: pod_hash,
                        }
                    },
                    "template": template,
                },
                "status": {"replicas": 0, "observedGeneration": 1},
            }
            self._store(new_rs)
        else:
            rev = int(new_rs["metadata"].get("annotations", {}).get(REVISION, "0"))
            if rev < max_rev:
                # Rollback: the old ReplicaSet becomes the newest revision, and the
                # deployment's non-skip annotations are copied onto it.
                ann = dict(new_rs["metadata"].get("annotations") or {})
                history = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h]
                ann[REVISION_HISTORY] = ",".join([*history, str(rev)])
                ann[REVISION] = str(max_rev + 1)
                for k, v in (dep["metadata"].get("annotations") or {}).items():
                    if k not in SKIP_ANNOTATIONS:
                        ann[k] = v
                new_rs["metadata"]["annotations"] = ann
                new_rs["metadata"]["resourceVersion"] = self._next_rv()
        self._set_rs_replicas(new_rs, replicas)
        for rs in self._owned("ReplicaSet", dep):
            if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]:
                self._set_rs_replicas(rs, 0)
        self._prune_history(dep, new_rs)
        self._set_deployment_status(dep, new_rs, replicas)

    def _prune_history(self, dep: dict[str, Any], new_rs: dict[str, Any]) -> None:
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        old = [
            rs
            for rs in self._owned("ReplicaSet", dep)
            if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        old.sort(key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0")))
        for rs in old[: max(0, len(old) - limit)]:
            meta = rs["metadata"]
            self._delete(("ReplicaSet", meta["namespace"], meta["name"]))

    def _set_rs_replicas(self, rs: dict[str, Any], replicas: int) -> None:
        changed = rs["spec"]["replicas"] != replicas
        if changed:
            rs["spec"]["replicas"] = replicas
            rs["metadata"]["generation"] = int(rs["metadata"].get("generation", 1)) + 1
            rs["metadata"].setdefault("annotations", {})[DESIRED_REPLICAS] = str(replicas)
        self._reconcile_rs(rs)
        status = {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": rs["metadata"]["generation"],
        }
        if changed or rs.get("status") != status:
            rs["status"] = status
            rs["metadata"]["resourceVersion"] = self._next_rv()

    def _reconcile_rs(self, rs: dict[str, Any]) -> None:
        pods = [p for p in self._owned("Pod", rs) if "deletionTimestamp" not in p["metadata"]]
        want = int(rs["spec"]["replicas"])
        ns = rs["metadata"]["namespace"]
        for pod in pods[want:]:
            self._delete(("Pod", ns, pod["metadata"]["name"]))
            self._next_rv()
        for _ in range(want - len(pods)):
            name = f"{rs['metadata']['name']}-{_encode(str(next(self._names)).encode(), 5)}"
            template = rs["spec"]["template"]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    **self._meta("Pod", ns, name),
                    "labels": dict(template.get("metadata", {}).get("labels") or {}),
                    "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                    "ownerReferences": [_owner_ref(rs)],
                },
                "spec": {**copy.deepcopy(template["spec"]), "nodeName": "node-1"},
                "status": _running(),
            }
            self._store(pod)

    def _set_deployment_status(
        self, dep: dict[str, Any], rs: dict[str, Any] | None, replicas: int
    ) -> None:
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": replicas if rs is not None else 0,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }
        ann = dep["metadata"].setdefault("annotations", {})
        revision = rs["metadata"]["annotations"].get(REVISION) if rs is not None else None
        if dep.get("status") != status or (revision and ann.get(REVISION) != revision):
            dep["status"] = status
            if revision:
                ann[REVISION] = revision
            dep["metadata"]["resourceVersion"] = self._next_rv()

    def _pdb_status(self, pdb: Mapping[str, Any]) -> dict[str, Any]:
        ns = pdb["metadata"]["namespace"]
        reqs = parse_selector(selector_string(pdb["spec"].get("selector")))
        pods = [
            p
            for (k, n, _), p in self._objects.items()
            if k == "Pod" and n == ns and matches(reqs, p["metadata"].get("labels"))
        ]
        healthy = sum(1 for p in pods if _ready(p))
        expected = len(pods)
        spec = pdb["spec"]
        if "minAvailable" in spec:
            desired = _scaled(spec["minAvailable"], expected)
        elif "maxUnavailable" in spec:
            desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
        else:
            desired = 0
        return {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": max(0, healthy - desired),
        }

    # -- inspection helpers for tests --------------------------------------------------------

    def objects(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of every object of ``kind`` (optionally in one namespace)."""
        with self._lock:
            return [
                self._present(o)
                for (k, ns, _), o in sorted(self._objects.items())
                if k == kind and (namespace is None or ns == namespace)
            ]

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of every stored object, for before/after comparisons."""
        with self._lock:
            return {"/".join(k): copy.deepcopy(v) for k, v in sorted(self._objects.items())}


def _template(name: str, labels: Mapping[str, str], image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [{"name": name, "image": image}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }


def _running() -> dict[str, Any]:
    return {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


def _ready(pod: Mapping[str, Any]) -> bool:
    if "deletionTimestamp" in pod["metadata"]:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _owner_ref(owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _scale_of(dep: Mapping[str, Any]) -> dict[str, Any]:
    meta = dep["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": dep["spec"]["replicas"]},
        "status": {
            "replicas": (dep.get("status") or {}).get("replicas", 0),
            "selector": selector_string(dep["spec"]["selector"]),
        },
    }


def _check_preconditions(obj: Mapping[str, Any], pre: Mapping[str, Any] | None) -> None:
    if not pre:
        return
    meta = obj["metadata"]
    uid, rv = pre.get("uid"), pre.get("resourceVersion")
    if uid is not None and uid != meta["uid"]:
        raise ApiStatusError(
            409,
            "Conflict",
            f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}",
            {"name": meta["name"], "kind": _RESOURCES[obj["kind"]][0]},
        )
    if rv is not None and rv != meta["resourceVersion"]:
        raise ApiStatusError(
            409,
            "Conflict",
            f"Precondition failed: ResourceVersion in precondition: {rv}, "
            f"ResourceVersion in object meta: {meta['resourceVersion']}",
            {"name": meta["name"], "kind": _RESOURCES[obj["kind"]][0]},
        )


def _validate_deployment(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    name = old["metadata"]["name"]
    for field in ("name", "namespace", "uid"):
        if new.get("metadata", {}).get(field) != old["metadata"][field]:
            raise invalid("Deployment", name, f"metadata.{field}", "field is immutable")
    annotations = new["metadata"].get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        raise invalid(
            "Deployment", name, "metadata.annotations", "annotation values must be strings"
        )
    spec = new.get("spec")
    if not isinstance(spec, dict):
        raise invalid("Deployment", name, "spec", "Required value")
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(
            "Deployment",
            name,
            "spec.replicas",
            f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
        )
    if "paused" in spec and not isinstance(spec["paused"], bool):
        raise invalid("Deployment", name, "spec.paused", "must be a boolean")
    if spec.get("selector") != old["spec"]["selector"]:
        raise invalid("Deployment", name, "spec.selector", "field is immutable")
    template = spec.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        raise invalid("Deployment", name, "spec.template", "Required value")
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = parse_selector(selector_string(spec["selector"]))
    if not matches(selector, labels):
        raise invalid(
            "Deployment",
            name,
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        )
    t_ann = (template.get("metadata") or {}).get("annotations") or {}
    if not isinstance(t_ann, dict) or not all(isinstance(v, str) for v in t_ann.values()):
        raise invalid(
            "Deployment",
            name,
            "spec.template.metadata.annotations",
            "annotation values must be strings",
        )
    containers = template["spec"].get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid("Deployment", name, "spec.template.spec.containers", "Required value")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c.get("image"):
            raise invalid(
                "Deployment",
                name,
                f"spec.template.spec.containers[{i}]",
                "name and image are required",
            )


def iter_kinds() -> Iterable[str]:
    """The kinds the model stores."""
    return iter(_RESOURCES)
