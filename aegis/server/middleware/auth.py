"""Authentication (bearer access token → principal) and route authorization by policy.

The token is verified (signature, type, claims), then the user, the session and the ``jti``
denylist are read from the database on every request, so a logout, a disabled account or a
role change takes effect on the next request (SES-5). If the database cannot be read the
answer is 503, never "allowed because we could not check" (SES-6). The route's action is then
decided by the policy engine; anything but an explicit allow is refused (AC-1, AC-3).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from aegis.server._context import AppContext, Principal, send_error
from aegis.server.db import repositories as repo
from aegis.server.errors import ApiError
from aegis.server.middleware.ratelimit import bearer_token

__all__ = ["AuthMiddleware", "anonymous_request"]


def anonymous_request(
    action: str, route: str, method: str, metrics_protected: bool
) -> dict[str, Any]:
    """The policy request for an anonymous caller (used by the authorization matrix test)."""
    return {
        "principal": {"id": "anonymous", "roles": [], "authenticated": False},
        "action": action,
        "resource": {"kind": "api", "route": route, "method": method},
        "context": {"metrics_protected": metrics_protected},
    }


class AuthMiddleware:
    """Sets ``scope["aegis.principal"]`` and enforces the route policy."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def _principal(self, token: str) -> Principal | None:
        claims = self.ctx.tokens.verify(token)
        user = await self.ctx.db.run(
            lambda s: repo.authenticate(s, claims.subject, claims.session_id, claims.token_id)
        )
        if user is None:
            return None
        return Principal(
            id=user.id,
            email=user.email,
            roles=tuple(user.roles),
            session_id=claims.session_id,
            token_id=claims.token_id,
            token_expires_at=claims.expires_at,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = scope.get("aegis.endpoint") if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request_id = scope.get("aegis.request_id")
        token = bearer_token(scope)
        principal: Principal | None = None
        auth_error: ApiError | None = None
        if token is not None:
            try:
                principal = await self._principal(token)
            except ApiError as exc:
                auth_error = exc
            except SQLAlchemyError:
                self.ctx.log.exception("database unavailable while authenticating")
                await send_error(send, _unavailable(), request_id)
                return
            if principal is None and auth_error is None:
                auth_error = ApiError(
                    "auth.invalid_token",
                    "the access token is invalid or expired",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
        request = anonymous_request(
            endpoint.action, endpoint.path, endpoint.method, self.ctx.settings.metrics_protected
        )
        if principal is not None:
            request["principal"] = {
                "id": principal.id,
                "roles": list(principal.roles),
                "authenticated": True,
            }
        if self.ctx.authorizer.is_allowed(request):
            scope["aegis.principal"] = principal
            await self.app(scope, receive, send)
            return
        self.ctx.metrics.authorization_denied.labels(endpoint.action).inc()
        self.ctx.event(
            "access_denied",
            request_id=request_id,
            action=endpoint.action,
            actor=principal.id if principal else None,
            client=scope.get("aegis.client"),
        )
        if principal is None:
            error = auth_error or ApiError(
                "auth.required",
                "this route needs an access token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            error = ApiError("auth.forbidden", "you are not allowed to do this")
        await send_error(send, error, request_id)


def _unavailable() -> ApiError:
    return ApiError(
        "service.unavailable",
        "the service is temporarily unavailable",
        headers={"Retry-After": "5"},
    )
