"""A fake Kubernetes API server on a loopback port, serving the in-memory cluster model."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aegis.actuators import SimulatedCluster
from aegis.actuators._status import ApiStatusError, status_body

__all__ = ["FakeKubernetesAPI", "RecordedRequest"]

_NS = r"/namespaces/(?P<ns>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p + r"\Z"), h)
    for m, p, h in [
        ("GET", rf"/apis/apps/v1{_NS}/deployments", "list_deployments"),
        ("GET", rf"/apis/apps/v1{_NS}/deployments/(?P<name>[^/]+)", "get_deployment"),
        ("PATCH", rf"/apis/apps/v1{_NS}/deployments/(?P<name>[^/]+)", "patch_deployment"),
        ("GET", rf"/apis/apps/v1{_NS}/deployments/(?P<name>[^/]+)/scale", "get_scale"),
        ("PATCH", rf"/apis/apps/v1{_NS}/deployments/(?P<name>[^/]+)/scale", "patch_scale"),
        ("PUT", rf"/apis/apps/v1{_NS}/deployments/(?P<name>[^/]+)/scale", "put_scale"),
        ("GET", rf"/apis/apps/v1{_NS}/replicasets", "list_replicasets"),
        ("GET", rf"/apis/apps/v1{_NS}/replicasets/(?P<name>[^/]+)", "get_replicaset"),
        ("GET", rf"/api/v1{_NS}/pods", "list_pods"),
        ("GET", rf"/api/v1{_NS}/pods/(?P<name>[^/]+)", "get_pod"),
        ("DELETE", rf"/api/v1{_NS}/pods/(?P<name>[^/]+)", "delete_pod"),
        ("POST", rf"/api/v1{_NS}/pods/(?P<name>[^/]+)/eviction", "evict_pod"),
        ("GET", rf"/apis/autoscaling/v2{_NS}/horizontalpodautoscalers", "list_hpas"),
        ("GET", rf"/apis/policy/v1{_NS}/poddisruptionbudgets", "list_pdbs"),
    ]
]
_VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "DELETE": "delete", "POST": "create"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received.

    Attributes:
        method: HTTP method.
        path: URL path.
        query: parsed query parameters (each a list of values).
        content_type: the ``Content-Type`` header, if any.
        body: the decoded JSON body, or ``None``.
        status: the HTTP status answered.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None
    body: Any
    status: int

    @property
    def is_write(self) -> bool:
        """Whether this was a mutating call (POST, PUT, PATCH, DELETE)."""
        return self.method in {"POST", "PUT", "PATCH", "DELETE"}

    @property
    def dry_run(self) -> bool:
        """Whether the call carried ``dryRun=All``."""
        return self.query.get("dryRun") == ["All"]


@dataclass
class _Fault:
    method: str | None
    path: re.Pattern[str]
    status: int
    times: int
    delay: float
    hits: int = field(default=0)


class FakeKubernetesAPI:
    """An HTTP server on ``127.0.0.1`` that behaves like the Kubernetes API for the calls the
    actuators make; drive it with the real ``kubernetes`` client.

    It serves :class:`aegis.actuators.SimulatedCluster` (the model behind the simulated
    actuator): deployments with revisions and ReplicaSets, pods, HPAs (``autoscaling/v2``),
    PDBs (``policy/v1``) and evictions, the scale subresource, ``dryRun=All``,
    ``fieldManager``, ``Status`` error bodies (400, 403, 404, 409, 415, 422, 429, 500). Every
    request is recorded in :attr:`requests`.

    Args:
        cluster: the cluster to serve (a new empty one by default).
        allowed_namespaces: simulate RBAC: calls outside these namespaces get 403.

    Example:
        >>> with FakeKubernetesAPI.from_yaml(Path("cluster.yaml")) as fake:  # doctest: +SKIP
        ...     actuator = KubernetesActuator(fake.configuration())
        ...     actuator.execute(action)
        ...     assert [r.method for r in fake.requests] == ["GET", "PATCH"]
    """

    def __init__(
        self,
        cluster: SimulatedCluster | None = None,
        *,
        allowed_namespaces: Iterable[str] | None = None,
        service_account: str = "system:serviceaccount:aegis:aegis-executor",
    ) -> None:
        self.cluster = cluster if cluster is not None else SimulatedCluster()
        self.allowed_namespaces = (
            None if allowed_namespaces is None else frozenset(allowed_namespaces)
        )
        self.service_account = service_account
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_yaml(cls, source: str | Path, **kwargs: Any) -> FakeKubernetesAPI:
        """A fake serving a cluster seeded from YAML (same format as the simulated actuator)."""
        return cls(SimulatedCluster.from_yaml(source), **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKubernetesAPI:
        """Start serving on a free loopback port; returns ``self``."""
        if self._server is not None:
            return self
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-k8s", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeKubernetesAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``)."""
        if self._server is None:
            raise RuntimeError("the fake kubernetes api is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` pointing at this fake (urllib3 retries off)."""
        from aegis.actuators.kubernetes import KubernetesActuatorConfig, make_configuration

        return make_configuration(KubernetesActuatorConfig(host=self.url))

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` pointing at this fake."""
        from kubernetes.client import ApiClient

        return ApiClient(self.configuration())

    # -- recording and faults ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def writes(self) -> list[RecordedRequest]:
        """The mutating requests received so far."""
        return [r for r in self.requests if r.is_write]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def inject_fault(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str = ".*",
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (after ``delay`` s).

        ``status=0`` with a ``delay`` just delays the real answer (to provoke client timeouts).
        """
        with self._lock:
            self._faults.append(_Fault(method, re.compile(path), status, times, delay))

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.hits < fault.times
                    and (fault.method in (None, method))
                    and fault.path.search(path)
                ):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    # -- dispatch --------------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, content_type: str | None, raw_body: bytes
    ) -> tuple[int, Any]:
        """Serve one request (also usable without HTTP); returns (status, JSON body)."""
        url = urlsplit(raw_path)
        query = parse_qs(url.query, keep_blank_values=True)
        body: Any = None
        status, answer = 500, None
        try:
            if raw_body:
                try:
                    body = json.loads(raw_body)
                except ValueError as exc:
                    raise ApiStatusError(400, "BadRequest", f"error decoding body: {exc}") from exc
            fault = self._take_fault(method, url.path)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status:
                    raise ApiStatusError(
                        fault.status, _REASONS.get(fault.status, "InternalError"), "injected fault"
                    )
            status, answer = self._dispatch(method, url.path, query, content_type, body)
        except ApiStatusError as err:
            status, answer = err.code, status_body(err)
        self._record(RecordedRequest(method, url.path, query, content_type, body, status))
        return status, answer

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        content_type: str | None,
        body: Any,
    ) -> tuple[int, Any]:
        for route_method, pattern, handler in _ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            if route_method != method:
                continue
            ns, name = m.group("ns"), m.groupdict().get("name")
            self._authorize(method, path, ns, name)
            dry_run = _dry_run(query)
            manager = query["fieldManager"][0] if query.get("fieldManager") else None
            if manager is not None and (len(manager) > 128 or not manager.isprintable()):
                raise ApiStatusError(
                    422,
                    "Invalid",
                    "fieldManager: Invalid value: must be at most 128 printable characters",
                )
            fn: Callable[..., tuple[int, Any]] = getattr(self, f"_h_{handler}")
            return fn(
                ns,
                name,
                query=query,
                content_type=content_type,
                body=body,
                dry_run=dry_run,
                manager=manager,
            )
        if any(p.match(path) for _, p, _ in _ROUTES):
            raise ApiStatusError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        raise ApiStatusError(404, "NotFound", "the server could not find the requested resource")

    def _authorize(self, method: str, path: str, ns: str, name: str | None) -> None:
        if self.allowed_namespaces is None or ns in self.allowed_namespaces:
            return
        parts = path.strip("/").split("/")
        i = parts.index("namespaces") + 2
        resource = parts[i]
        full = f"{resource}/{parts[i + 2]}" if len(parts) > i + 2 else resource
        group = "" if parts[0] == "api" else parts[1]
        verb = "list" if name is None and method == "GET" else _VERBS[method]
        what = f'{resource}{"." + group if group else ""} "{name}"' if name else resource
        raise ApiStatusError(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{self.service_account}" cannot {verb} resource '
            f'"{full}" in API group "{group}" in the namespace "{ns}"',
            {"name": name or "", "group": group, "kind": resource},
        )

    # handlers: (ns, name, **request) -> (status, body)

    def _h_list_deployments(
        self, ns: str, _name: None, *, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        return 200, self.cluster.list_document("Deployment", ns, _selector(query))

    def _h_get_deployment(self, ns: str, name: str, **_: Any) -> tuple[int, Any]:
        return 200, self.cluster.get("Deployment", ns, name)

    def _h_patch_deployment(
        self,
        ns: str,
        name: str,
        *,
        content_type: str | None,
        body: Any,
        dry_run: bool,
        manager: str | None,
        **_: Any,
    ) -> tuple[int, Any]:
        if body is None:
            raise ApiStatusError(400, "BadRequest", "the body of the request is empty")
        return 200, self.cluster.patch_deployment(
            ns, name, body, content_type or "", dry_run=dry_run, field_manager=manager
        )

    def _h_get_scale(self, ns: str, name: str, **_: Any) -> tuple[int, Any]:
        return 200, self.cluster.get_scale(ns, name)

    def _h_patch_scale(
        self,
        ns: str,
        name: str,
        *,
        content_type: str | None,
        body: Any,
        dry_run: bool,
        manager: str | None,
        **_: Any,
    ) -> tuple[int, Any]:
        return 200, self.cluster.update_scale(
            ns, name, body, content_type or "", dry_run=dry_run, field_manager=manager
        )

    def _h_put_scale(
        self, ns: str, name: str, *, body: Any, dry_run: bool, manager: str | None, **_: Any
    ) -> tuple[int, Any]:
        return 200, self.cluster.update_scale(
            ns, name, body, None, dry_run=dry_run, field_manager=manager
        )

    def _h_list_replicasets(
        self, ns: str, _name: None, *, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        return 200, self.cluster.list_document("ReplicaSet", ns, _selector(query))

    def _h_get_replicaset(self, ns: str, name: str, **_: Any) -> tuple[int, Any]:
        return 200, self.cluster.get("ReplicaSet", ns, name)

    def _h_list_pods(
        self, ns: str, _name: None, *, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        return 200, self.cluster.list_document("Pod", ns, _selector(query))

    def _h_get_pod(self, ns: str, name: str, **_: Any) -> tuple[int, Any]:
        return 200, self.cluster.get("Pod", ns, name)

    def _h_delete_pod(
        self, ns: str, name: str, *, body: Any, dry_run: bool, **_: Any
    ) -> tuple[int, Any]:
        pre = (body or {}).get("preconditions") if isinstance(body, dict) else None
        if isinstance(body, dict) and body.get("dryRun") == ["All"]:
            dry_run = True
        return 200, self.cluster.delete_pod(ns, name, preconditions=pre, dry_run=dry_run)

    def _h_evict_pod(
        self, ns: str, name: str, *, body: Any, dry_run: bool, **_: Any
    ) -> tuple[int, Any]:
        if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
            raise ApiStatusError(400, "BadRequest", "the body must be a policy/v1 Eviction")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise ApiStatusError(
                400, "BadRequest", "name in URL does not match name in Eviction object"
            )
        options = body.get("deleteOptions") or {}
        if options.get("dryRun") == ["All"]:
            dry_run = True
        return 201, self.cluster.evict_pod(
            ns, name, preconditions=options.get("preconditions"), dry_run=dry_run
        )

    def _h_list_hpas(
        self, ns: str, _name: None, *, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        return 200, self.cluster.list_document("HorizontalPodAutoscaler", ns, _selector(query))

    def _h_list_pdbs(
        self, ns: str, _name: None, *, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        return 200, self.cluster.list_document("PodDisruptionBudget", ns, _selector(query))


_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _selector(query: dict[str, list[str]]) -> str | None:
    return query["labelSelector"][0] if query.get("labelSelector") else None


def _dry_run(query: dict[str, list[str]]) -> bool:
    values = query.get("dryRun")
    if not values:
        return False
    if values != ["All"]:
        raise ApiStatusError(400, "BadRequest", f"Invalid dry run value: {values}")
    return True


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is not an error of the fake.
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _make_handler(fake: FakeKubernetesAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # one small answer must not wait for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, answer = fake.handle(
                self.command, self.path, self.headers.get("Content-Type"), raw
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
