"""The ``aegis executor`` HTTP shell: a pure-ASGI app around :class:`~aegis.remediation.Executor`.

Routes (see ``docs/actuators.md``, "The executor service")::

    POST /v1/actions          signed   run one action through the pipeline
    GET  /v1/actions          signed   action records, newest first (?limit=1..1000&status=…)
    GET  /v1/actions/{id}     signed   one action record
    GET  /v1/report           signed   the self-healing report
    GET  /health              open     200 when the executor can audit, else 503
    GET  /metrics             open     Prometheus text format

Every request, in this order:

1. The body is read while counting bytes, ``Content-Length`` checked first; more than
   ``max_body_bytes`` (64 KiB) is 413 before anything else (INP-1).
2. ``/health`` and ``/metrics`` are answered without a signature.
3. A request under ``/v1/`` (or carrying any ``Aegis-*`` signature header) is verified
   *before* it is routed, over the raw path (``scope["raw_path"]``) and the raw query
   (``scope["query_string"]``) exactly as received: a bad signature is one generic 401 (and
   an audited security event) whatever the path or method; only a correctly signed request
   learns 404 or 405. Routing matches the same raw path, byte for byte, so what is verified
   is what is served (``/v1/%61ctions`` and ``/v1/actions/`` are not ``/v1/actions``).
4. Anything else is a JSON 404. No answer ever carries a traceback.

The pipeline calls block (database, actuator), so they run in the thread pool.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from aegis.actuators import ACTION_TYPES, SignatureError
from aegis.remediation import Executor, ExecutorResponse, ExecutorStoreError
from aegis.server.executor.metrics import ExecutorMetrics

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ExecutorApp", "create_executor_app"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024
_log = logging.getLogger("aegis.executor")
_access = logging.getLogger("aegis.executor.access")
_SIGNATURE_HEADERS = frozenset(
    {b"aegis-key-id", b"aegis-timestamp", b"aegis-nonce", b"aegis-signature"}
)
_ACTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LIMIT = re.compile(r"[1-9][0-9]{0,3}")
_STATUSES = frozenset({"pending", "succeeded", "failed", "dry_run", "unknown"})
_AUDIT_DOWN = "the executor cannot audit; nothing was done"


def _error(status: int, code: str, message: str) -> ExecutorResponse:
    return ExecutorResponse(status, {"error": {"code": code, "message": message}})


_UNAUTHORIZED = _error(401, SignatureError.code, SignatureError.GENERIC_MESSAGE)


class _Provider:
    """The executor, or a factory retried (at most every ``retry_seconds``) until it works.

    A factory raising :class:`ExecutorStoreError` means the audit database is unreachable:
    the service stays up and answers 503 (fail closed) until a later attempt succeeds. On
    success the provider calls ``start()`` (outbox replay, reconciliation) and logs every
    intent it marked ``unknown``.
    """

    def __init__(
        self,
        executor: Executor | Callable[[], Executor],
        retry_seconds: float,
    ) -> None:
        self._executor = executor if isinstance(executor, Executor) else None
        self._factory = None if isinstance(executor, Executor) else executor
        self._retry = retry_seconds
        self._last_try = float("-inf")
        self._lock = threading.Lock()

    @property
    def current(self) -> Executor | None:
        return self._executor

    def get(self) -> Executor | None:
        if self._executor is not None or self._factory is None:
            return self._executor
        with self._lock:
            return self._get_locked()

    def _get_locked(self) -> Executor | None:
        if self._executor is not None:  # another thread built it meanwhile
            return self._executor
        if self._factory is None:
            return None
        now = time.monotonic()
        if now - self._last_try < self._retry:
            return None
        self._last_try = now
        try:
            executor = self._factory()
        except ExecutorStoreError as exc:
            _log.error("the audit database is unavailable (--database): %s", exc)
            return None
        try:
            unknown = executor.start()
        except ExecutorStoreError as exc:
            executor.store.close()
            _log.error("the audit database is unavailable (--database): %s", exc)
            return None
        log_reconciled(unknown)
        self._executor = executor
        return executor


def log_reconciled(unknown: list[dict[str, Any]]) -> None:
    """Log the intents that ``Executor.start()`` marked ``unknown`` (one summary line)."""
    if unknown:
        _log.error(
            "reconciled %d intent(s) without an outcome as unknown: %s",
            len(unknown),
            ", ".join(f"{r['id']} ({r['type']} {r['namespace']}/{r['name']})" for r in unknown),
        )
    else:
        _log.info("reconciliation: no intent without an outcome")


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


async def _send(
    send: Send, status: int, body: bytes, content_type: str = "application/json"
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class _BadLength(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, counted while streaming (INP-1); ``Content-Length`` is checked first."""
    lengths = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
    if len(lengths) > 1 or (lengths and not (lengths[0].isdigit() and len(lengths[0]) < 20)):
        raise _BadLength
    if lengths and int(lengths[0]) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ExecutorApp:
    """The ASGI application of ``aegis executor`` (build it with :func:`create_executor_app`).

    Args:
        executor: a started :class:`~aegis.remediation.Executor`, or a factory building one
            (retried while it raises :class:`~aegis.remediation.ExecutorStoreError`; the
            app then calls ``start()`` on the result).
        max_body_bytes: the request body limit (64 KiB).
        metrics: the counters to update (a new registry by default).
        retry_seconds: how often a failing factory is retried.
        actuator_name: shown by ``/health``.
    """

    def __init__(
        self,
        executor: Executor | Callable[[], Executor],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        metrics: ExecutorMetrics | None = None,
        retry_seconds: float = 2.0,
        actuator_name: str | None = None,
    ) -> None:
        self._provider = _Provider(executor, retry_seconds)
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics or ExecutorMetrics()
        self.actuator_name = actuator_name

    @property
    def executor(self) -> Executor | None:
        """The executor, once it could be built (``None`` while the database is down)."""
        return self._provider.current

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 0, "route": "unmatched"}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, tracking_send, state)
        except _Disconnected:
            state["status"] = state["status"] or 499
        except Exception:
            _log.exception("unexpected error while serving a request")
            if not state["status"]:
                await _send(
                    tracking_send,
                    500,
                    _json_bytes({"error": {"code": "internal", "message": "internal error"}}),
                )
        finally:
            status = int(state["status"])
            self.metrics.requests.labels(str(state["route"]), str(status)).inc()
            raw = scope.get("raw_path") or scope.get("path", "").encode()
            _access.info(
                json.dumps(
                    {
                        "event": "request",
                        "method": scope.get("method"),
                        "path": raw.decode("latin-1")[:200],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                )
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                executor = self._provider.current
                if executor is not None:
                    executor.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch ---------------------------------------------------------------------------------

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, state: dict[str, Any]
    ) -> None:
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        try:
            body = await _read_body(scope, receive, self.max_body_bytes)
        except _TooLarge:
            self.metrics.refusals.labels("body_too_large").inc()
            await self._respond(
                send,
                _error(
                    413,
                    "request.too_large",
                    f"the request body exceeds {self.max_body_bytes} bytes",
                ),
            )
            return
        except _BadLength:
            await self._respond(
                send, _error(400, "request.bad_length", "the content-length header is invalid")
            )
            return
        if raw_path in (b"/health", b"/metrics"):
            state["route"] = raw_path.decode()
            if method not in ("GET", "HEAD"):
                await self._respond(send, _error(405, "request.method", "method not allowed"))
            elif raw_path == b"/health":
                await self._health(send)
            else:
                await _send(send, 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        signed = any(k.lower() in _SIGNATURE_HEADERS for k, _ in scope["headers"])
        if not (raw_path.startswith(b"/v1/") or raw_path == b"/v1" or signed):
            await self._respond(send, _error(404, "request.not_found", "no such route"))
            return
        try:
            path = raw_path.decode("utf-8")
            query = bytes(scope.get("query_string", b"")).decode("utf-8")
        except UnicodeDecodeError:
            self.metrics.signature_failures.inc()
            await self._respond(send, _UNAUTHORIZED)
            return
        executor = await run_in_threadpool(self._provider.get)
        if executor is None:
            self.metrics.audit_failures.inc()
            await self._respond(send, _error(503, "executor.audit_unavailable", _AUDIT_DOWN))
            return
        if path == "/v1/actions" and method == "POST":
            state["route"] = "/v1/actions"
            response = await run_in_threadpool(
                lambda: executor.submit(
                    method=method, path=path, query=query, headers=headers, body=body
                )
            )
            self._observe(response, body)
            await self._respond(send, response)
            return
        verified = await run_in_threadpool(
            lambda: executor.authenticate(
                method=method, path=path, query=query, headers=headers, body=body
            )
        )
        if isinstance(verified, ExecutorResponse):
            self._observe(verified, body)
            await self._respond(send, verified)
            return
        handler = self._route(path, method, state)
        if handler is None:
            await self._respond(send, _error(404, "request.not_found", "no such route"))
            return
        if isinstance(handler, ExecutorResponse):
            await self._respond(send, handler)
            return
        try:
            response = await run_in_threadpool(lambda: handler(executor, query))
        except ExecutorStoreError:
            self.metrics.audit_failures.inc()
            response = _error(503, "executor.audit_unavailable", "the audit store is unavailable")
        await self._respond(send, response)

    def _route(
        self, path: str, method: str, state: dict[str, Any]
    ) -> Callable[[Executor, str], ExecutorResponse] | ExecutorResponse | None:
        handler: Callable[[Executor, str], ExecutorResponse] | None = None
        if path == "/v1/actions":
            state["route"] = "/v1/actions"
            handler = _list_actions
        elif path == "/v1/report":
            state["route"] = "/v1/report"
            handler = _report
        elif path.startswith("/v1/actions/") and _ACTION_ID.fullmatch(path[12:]):
            state["route"] = "/v1/actions/{id}"
            handler = _get_action(path[12:])
        if handler is None:
            return None
        if method != "GET":
            return _error(405, "request.method", "method not allowed")
        return handler

    async def _health(self, send: Send) -> None:
        executor = await run_in_threadpool(self._provider.get)
        ok = executor is not None and await run_in_threadpool(_database_ok, executor)
        body: dict[str, Any] = {
            "status": "ok" if ok else "unavailable",
            "audit_store": "ok" if ok else "unavailable",
        }
        if self.actuator_name:
            body["actuator"] = self.actuator_name
        await _send(send, 200 if ok else 503, _json_bytes(body))

    async def _respond(self, send: Send, response: ExecutorResponse) -> None:
        await _send(send, response.status_code, _json_bytes(response.body))

    def _observe(self, response: ExecutorResponse, body: bytes) -> None:
        """Count one pipeline answer in the metrics."""
        m, status, data = self.metrics, response.status_code, response.body
        raw_error = data.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        code = str(error.get("code", ""))
        if status == 401:
            m.signature_failures.inc()
        elif status == 409 and code == "actuator.replay":
            m.replays.inc()
        elif status in (403, 409, 422):
            reason = error.get("reason") or code.rsplit(".", 1)[-1] or "unknown"
            m.refusals.labels(str(reason)[:64]).inc()
        elif status == 503:
            (m.audit_failures if code == "executor.audit_unavailable" else m.unavailable).inc()
        elif "status" in data:
            m.actions.labels(_action_type(body), str(data["status"])).inc()


def _action_type(body: bytes) -> str:
    try:
        value = json.loads(body).get("type")
    except (ValueError, AttributeError, RecursionError):
        return "unknown"
    return value if value in ACTION_TYPES else "unknown"


def _database_ok(executor: Executor) -> bool:
    import sqlalchemy as sa

    table = executor.store.actions
    try:  # a read of the audit table itself: a locked or missing store fails here
        with executor.store.engine.connect() as conn:
            conn.execute(sa.select(table.c.id).limit(1)).all()
    except sa.exc.SQLAlchemyError:
        return False
    return True


def _list_actions(executor: Executor, query: str) -> ExecutorResponse:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        return _error(422, "request.invalid_query", "the query string is malformed")
    names = [k for k, _ in pairs]
    unknown = sorted(set(names) - {"limit", "status"})
    if unknown:
        return _error(422, "request.invalid_query", f"unknown query parameter `{unknown[0]}`")
    if len(names) != len(set(names)):
        return _error(422, "request.invalid_query", "a query parameter is repeated")
    params = dict(pairs)
    limit = params.get("limit", "100")
    if not _LIMIT.fullmatch(limit) or int(limit) > 1000:
        return _error(422, "request.invalid_query", "`limit` must be an integer 1..1000")
    status = params.get("status")
    if status is not None and status not in _STATUSES:
        return _error(
            422, "request.invalid_query", f"`status` must be one of {', '.join(sorted(_STATUSES))}"
        )
    return ExecutorResponse(
        200, {"actions": executor.list_actions(limit=int(limit), status=status)}
    )


def _get_action(action_id: str) -> Callable[[Executor, str], ExecutorResponse]:
    def handler(executor: Executor, _query: str) -> ExecutorResponse:
        record = executor.get(action_id)
        if record is None:
            return _error(404, "executor.not_found", f"no action `{action_id}`")
        return ExecutorResponse(200, record)

    return handler


def _report(executor: Executor, _query: str) -> ExecutorResponse:
    return ExecutorResponse(200, executor.report())


def create_executor_app(
    executor: Executor | Callable[[], Executor],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics: ExecutorMetrics | None = None,
    retry_seconds: float = 2.0,
    actuator_name: str | None = None,
) -> ExecutorApp:
    """Build the ``aegis executor`` ASGI app (serve it with uvicorn).

    Args:
        executor: a started executor, or a factory (see :class:`ExecutorApp`).
        max_body_bytes: the request body limit (INP-1: 64 KiB).
        metrics: the counters to update (a registry of its own by default).
        retry_seconds: how often a factory that failed on the database is retried.
        actuator_name: the backend name shown by ``/health``.

    Returns:
        The ASGI application.

    Example:
        >>> from aegis.remediation import build_executor  # doctest: +SKIP
        >>> executor = build_executor(keys=..., allow_namespaces=["prod"], ...)  # doctest: +SKIP
        >>> executor.start()  # doctest: +SKIP
        >>> uvicorn.run(create_executor_app(executor), port=8081)  # doctest: +SKIP
    """
    return ExecutorApp(
        executor,
        max_body_bytes=max_body_bytes,
        metrics=metrics,
        retry_seconds=retry_seconds,
        actuator_name=actuator_name,
    )
