"""Rate limiting of every request, by the limits its route declares (BF-2, RL-1..3).

Anonymous callers are counted per client address; callers with a valid access token per user
(the token is verified here without touching the database; the auth middleware does the full
check later). Routes of the ``auth`` class are counted per route and address whatever the
token. Every response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset``; a refusal is a 429 with ``Retry-After``.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aegis.server._context import AppContext, send_error
from aegis.server.errors import ApiError
from aegis.server.ratelimit import parse_limits

__all__ = ["RateLimitMiddleware"]


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is exactly one."""
    values = Headers(scope=scope).getlist("authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class RateLimitMiddleware:
    """Counts the request against its route's limits before any work is done."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx
        settings = ctx.settings
        self._anonymous = parse_limits(settings.rate_limit_anonymous)
        self._authenticated = parse_limits(settings.rate_limit_authenticated)
        self._auth = parse_limits(settings.rate_limit_auth)
        self._per_route = {
            e.action + " " + e.method + " " + e.path: parse_limits(e.rate_limit)
            for e in ctx.endpoints
            if e.rate_limit
        }

    def _subject(self, scope: Scope) -> str | None:
        token = bearer_token(scope)
        if token is None:
            return None
        try:
            return self.ctx.tokens.verify(token).subject
        except ApiError:
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope.get("aegis.endpoint")
        address = scope["aegis.client"]
        if endpoint is not None and endpoint.rate_class == "auth":
            items = self._auth
            key = f"auth:{endpoint.action}:{address}"
            strict = True
        else:
            subject = self._subject(scope)
            items = self._authenticated if subject else self._anonymous
            key = f"user:{subject}" if subject else f"addr:{address}"
            strict = False
        if endpoint is not None:
            own = self._per_route.get(endpoint.action + " " + endpoint.method + " " + endpoint.path)
            if own:
                items, key = own, f"route:{endpoint.action}:{key}"
        verdict = await self.ctx.limiter.hit(items, key, strict_fallback=strict)
        headers = verdict.headers()
        if not verdict.allowed:
            label = endpoint.rate_class if endpoint else "unmatched"
            self.ctx.metrics.rate_limited.labels(label).inc()
            self.ctx.event(
                "rate_limited",
                request_id=scope.get("aegis.request_id"),
                client=address,
                route=endpoint.path if endpoint else None,
            )
            error = ApiError("rate.limited", "too many requests, retry later", headers=headers)
            await send_error(send, error, scope.get("aegis.request_id"))
            return
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)
