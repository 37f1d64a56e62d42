"""Request id, client address and route resolution, plus one JSON access-log line per request."""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aegis.server._context import AppContext

__all__ = ["RequestIdMiddleware"]

_INCOMING_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
# An API never wants to be sniffed, framed, cached or to leak its URLs in a Referer.
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)


class RequestIdMiddleware:
    """Tags every request with an id (``X-Request-Id``) and resolves its route once.

    Sets ``scope["aegis.request_id"]``, ``scope["aegis.client"]`` (see
    :class:`~aegis.server.ratelimit.ClientAddress`) and ``scope["aegis.endpoint"]``.
    """

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _INCOMING_ID.fullmatch(incoming) else uuid.uuid4().hex
        client = scope.get("client")
        peer = client[0] if client else None
        address = self.ctx.client_address(peer, headers.get("x-forwarded-for"))
        endpoint, _ = self.ctx.resolve(scope)
        scope["aegis.request_id"] = request_id
        scope["aegis.client"] = address
        scope["aegis.endpoint"] = endpoint
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                present = {name.lower() for name, _ in message["headers"]}
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                    *(h for h in _SECURITY_HEADERS if h[0] not in present),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = endpoint.path if endpoint else "<unmatched>"
            self.ctx.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.ctx.metrics.latency.labels(route).observe(elapsed)
            self.ctx.event(
                "http_request",
                request_id=request_id,
                method=scope["method"],
                route=route,
                status=status,
                client=address,
                duration_ms=round(elapsed * 1000, 2),
            )
