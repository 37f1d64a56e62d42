"""The Kubernetes actuator, on the official ``kubernetes`` client (remediation.md §1).

This is the only module that imports ``kubernetes``. The algorithms live in
``aegis.actuators._remediate`` and are shared with the simulated actuator; this module adds
the client calls: ``dryRun=All`` on every write when asked, ``fieldManager`` on every write,
a per-call timeout (10 s by default), and the translation of ``ApiException`` and urllib3
errors into :class:`~aegis.actuators._status.ApiStatusError` (then the ActuatorError tree).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import Field

from aegis.actuators._patch import STRATEGIC_MERGE_PATCH
from aegis.actuators._remediate import RemediationSettings, Remediator
from aegis.actuators._status import ApiStatusError
from aegis.actuators.base import Action, ActionResult
from aegis.errors import ConfigurationError, require

require("kubernetes", "kubernetes")

import urllib3  # noqa: E402 - a dependency of kubernetes
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

__all__ = ["KubernetesActuator", "KubernetesActuatorConfig", "make_configuration"]

T = TypeVar("T")


class KubernetesActuatorConfig(RemediationSettings):
    """Configuration of the ``kubernetes`` entry point.

    Attributes:
        in_cluster: use the pod's service account (``load_incluster_config``).
        kubeconfig: path of a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``).
        context: kubeconfig context to use.
        host: an explicit API server URL (no credentials); for tests against a fake.
        timeout_seconds: per-call timeout.
    """

    in_cluster: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    host: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)


def make_configuration(config: KubernetesActuatorConfig | None = None) -> k8s.Configuration:
    """Build a client ``Configuration`` from in-cluster, kubeconfig or an explicit host.

    urllib3's own retries are switched off: a write must never be resent behind our back
    (K8S-4); our read retries are explicit.

    Raises:
        ConfigurationError: the kubeconfig or service-account files cannot be loaded.
    """
    config = config or KubernetesActuatorConfig()
    configuration = k8s.Configuration()
    try:
        if config.host:
            configuration.host = config.host
        elif config.in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=config.kubeconfig,
                context=config.context,
                client_configuration=configuration,
            )
    except (k8s_config.ConfigException, OSError) as exc:
        raise ConfigurationError(f"cannot load kubernetes configuration: {exc}") from exc
    configuration.retries = False
    return configuration


def _status_from(exc: ApiException) -> ApiStatusError:
    body: Any = None
    try:
        body = json.loads(exc.body) if exc.body else None
    except (TypeError, ValueError):
        body = None
    code = int(exc.status or 0)
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiStatusError(
            code,
            str(body.get("reason") or exc.reason or ""),
            str(body.get("message") or ""),
            body.get("details") if isinstance(body.get("details"), dict) else None,
        )
    return ApiStatusError(code, str(exc.reason or "Unknown"), str(exc.body or exc.reason or ""))


class _ClientOps:
    """:class:`~aegis.actuators._remediate.ClusterOps` over the official client."""

    def __init__(self, api_client: k8s.ApiClient, timeout: float, field_manager: str) -> None:
        self.api_client = api_client
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.autoscaling = k8s.AutoscalingV2Api(api_client)
        self.timeout = timeout
        self.field_manager = field_manager

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiException as exc:
            raise _status_from(exc) from exc
        except urllib3.exceptions.NewConnectionError as exc:  # subclasses ConnectTimeoutError
            raise ApiStatusError(0, "ConnectionError", str(exc)) from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise ApiStatusError(0, "Timeout", str(exc), timeout=True) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ApiStatusError(0, "ConnectionError", str(exc)) from exc

    def _json(self, obj: Any) -> Any:
        return self.api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]

    def _obj(self, obj: Any) -> dict[str, Any]:
        out = self._json(obj)
        if not isinstance(out, dict):
            raise ApiStatusError(500, "InternalError", "the api server returned no object")
        return out

    def _items(self, obj: Any) -> list[dict[str, Any]]:
        return [self._obj(item) for item in (obj.items or [])]

    def _write_kwargs(self, dry_run: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"_request_timeout": self.timeout}
        if dry_run:
            kwargs["dry_run"] = "All"
        return kwargs

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return self._obj(
            self._call(
                lambda: self.apps.read_namespaced_deployment(
                    name, namespace, _request_timeout=self.timeout
                )
            )
        )

    def patch_deployment(
        self, namespace: str, name: str, body: Any, content_type: str, dry_run: bool
    ) -> dict[str, Any]:
        return self._obj(
            self._call(
                lambda: self.apps.patch_namespaced_deployment(
                    name,
                    namespace,
                    body,
                    field_manager=self.field_manager,
                    _content_type=content_type,
                    **self._write_kwargs(dry_run),
                )
            )
        )

    def list_replica_sets(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = self._call(
            lambda: self.apps.list_namespaced_replica_set(
                namespace, label_selector=selector, _request_timeout=self.timeout
            )
        )
        return self._items(out)

    def read_scale(self, namespace: str, name: str) -> dict[str, Any]:
        return self._obj(
            self._call(
                lambda: self.apps.read_namespaced_deployment_scale(
                    name, namespace, _request_timeout=self.timeout
                )
            )
        )

    def patch_scale(self, namespace: str, name: str, body: Any, dry_run: bool) -> dict[str, Any]:
        return self._obj(
            self._call(
                lambda: self.apps.patch_namespaced_deployment_scale(
                    name,
                    namespace,
                    body,
                    field_manager=self.field_manager,
                    _content_type=STRATEGIC_MERGE_PATCH,
                    **self._write_kwargs(dry_run),
                )
            )
        )

    def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        out = self._call(
            lambda: self.autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, _request_timeout=self.timeout
            )
        )
        return self._items(out)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self._obj(
            self._call(
                lambda: self.core.read_namespaced_pod(
                    name, namespace, _request_timeout=self.timeout
                )
            )
        )

    def evict_pod(
        self, namespace: str, name: str, *, uid: str, grace: int | None, dry_run: bool
    ) -> None:
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=k8s.V1DeleteOptions(
                grace_period_seconds=grace,
                preconditions=k8s.V1Preconditions(uid=uid),
                dry_run=["All"] if dry_run else None,
            ),
        )
        self._call(
            lambda: self.core.create_namespaced_pod_eviction(
                name,
                namespace,
                body,
                field_manager=self.field_manager,
                **self._write_kwargs(dry_run),
            )
        )

    def delete_pod(
        self, namespace: str, name: str, *, uid: str, rv: str, grace: int | None, dry_run: bool
    ) -> None:
        body = k8s.V1DeleteOptions(
            preconditions=k8s.V1Preconditions(uid=uid, resource_version=rv),
            grace_period_seconds=grace,
        )
        kwargs = self._write_kwargs(dry_run)
        if grace is not None:
            kwargs["grace_period_seconds"] = grace
        self._call(lambda: self.core.delete_namespaced_pod(name, namespace, body=body, **kwargs))


class KubernetesActuator:
    """An :class:`~aegis.actuators.Actuator` acting on a real cluster.

    Args:
        configuration: a client ``Configuration`` (see :func:`make_configuration`) or an
            ``ApiClient``; by default the kubeconfig is loaded.
        settings: bounds and behaviour (:class:`KubernetesActuatorConfig` or the shared
            :class:`~aegis.actuators.RemediationSettings`).
        timeout_seconds: per-call timeout (10 s).
        sleep: the backoff sleep (injectable for tests).

    Example:
        >>> from aegis.testing import FakeKubernetesAPI  # doctest: +SKIP
        >>> with FakeKubernetesAPI.from_yaml("cluster.yaml") as fake:  # doctest: +SKIP
        ...     actuator = KubernetesActuator(fake.configuration())
        ...     actuator.execute(action)
    """

    def __init__(
        self,
        configuration: k8s.Configuration | k8s.ApiClient | None = None,
        settings: RemediationSettings | None = None,
        *,
        timeout_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if isinstance(configuration, k8s.ApiClient):
            self.api_client = configuration
        else:
            self.api_client = k8s.ApiClient(configuration or make_configuration())
        self.settings = settings or RemediationSettings()
        self._ops = _ClientOps(self.api_client, timeout_seconds, self.settings.field_manager)
        self._remediator = Remediator(self._ops, self.settings, sleep=sleep, clock=clock)

    @classmethod
    def from_config(cls, config: KubernetesActuatorConfig) -> KubernetesActuator:
        """Build from a validated :class:`KubernetesActuatorConfig`."""
        settings = RemediationSettings.model_validate(
            config.model_dump(include=set(RemediationSettings.model_fields))
        )
        return cls(make_configuration(config), settings, timeout_seconds=config.timeout_seconds)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: 409 re-reads, read retries, evictions blocked by a PDB."""
        return dict(self._remediator.stats)

    def execute(self, action: Action, dry_run: bool = False) -> ActionResult:
        """Perform ``action`` on the cluster (see the Actuator contract)."""
        return self._remediator.execute(action, dry_run)

    def close(self) -> None:
        """Release the client's connection pool."""
        self.api_client.close()  # type: ignore[no-untyped-call]
