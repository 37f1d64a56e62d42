"""``create_app``: the Aegis control plane as a Starlette application (H13).

Everything is built here, from the settings and the optional overrides, with no module-level
state: two apps in one process share nothing. The middleware order is written once, below.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aegis.server._context import AppContext, HealthCheck
from aegis.server.auth.passwords import PasswordHasher, load_common_file
from aegis.server.auth.throttle import LoginThrottle
from aegis.server.auth.tokens import TokenService
from aegis.server.db.database import Database
from aegis.server.errors import ApiError, error_body, status_for
from aegis.server.mail import Mailer, OutboxMailer, SmtpMailer
from aegis.server.metrics import Metrics
from aegis.server.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    RateLimitMiddleware,
    RequestIdMiddleware,
)
from aegis.server.permissions import Authorizer, Endpoint, EngineAuthorizer, check_endpoints
from aegis.server.policy_service import PolicyService
from aegis.server.ratelimit import ClientAddress, RateLimiter
from aegis.server.routes import all_endpoints
from aegis.server.settings import Settings

__all__ = ["create_app"]

_log = logging.getLogger("aegis.server")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _error_response(error: ApiError) -> Response:
    return Response(
        error.body(),
        status_code=error.status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **error.headers},
    )


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        error = ApiError("resource.not_found", "no such resource", headers=headers)
    elif exc.status_code == 405:
        error = ApiError("method.not_allowed", "this method is not allowed here", headers=headers)
    else:
        code = next((c for c, s in _STATUS_CODES if s == exc.status_code), "request.malformed")
        error = ApiError(code, "the request cannot be processed", headers=headers)
    return _error_response(error)


_STATUS_CODES = sorted((c, status_for(c)) for c in ("request.malformed", "request.too_large"))


async def _on_database_down(request: Request, exc: Exception) -> Response:
    # FLT-08/09: an unreachable or exhausted database is a 503, never a trace.
    _log.error(
        "database unavailable in request %s: %s",
        request.scope.get("aegis.request_id"),
        type(exc).__name__,
    )
    return _error_response(
        ApiError(
            "service.unavailable",
            "the service is temporarily unavailable",
            headers={"Retry-After": "5"},
        )
    )


async def _on_crash(request: Request, exc: Exception) -> Response:
    # LOG-4: one last-resort handler; the body never carries a trace, SQL or path.
    _log.error("unhandled error in request %s", request.scope.get("aegis.request_id"), exc_info=exc)
    return Response(
        error_body("internal.error", "an internal error occurred"),
        status_code=500,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _dispatcher(by_method: Mapping[str, Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        if any("\x00" in str(v) for v in request.path_params.values()):
            # no id holds a NUL, and PostgreSQL text cannot even be asked for one
            raise ApiError("resource.not_found", "no such resource")
        return await by_method[method].handler(request)

    return dispatch


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    mailer: Mailer | None = None,
    authorizer: Authorizer | None = None,
    database: Database | None = None,
    health_checks: Mapping[str, HealthCheck] | None = None,
    extra_endpoints: Sequence[Endpoint] = (),
) -> Starlette:
    """Build the control-plane application.

    The database schema is not migrated here: run ``aegis db upgrade`` (``aegis serve`` does it
    before starting) or :func:`aegis.server.db.upgrade`.

    Args:
        settings: the configuration (see :class:`Settings` and ``docs/server.md``).
        clock: returns the current aware UTC time; inject one to travel in time in tests.
        mailer: where user mail goes (default: SMTP when configured, else the outbox table).
        authorizer: decides route access (default: the policy engine over
            ``settings.policy_paths``).
        database: an existing database handle (default: one for ``settings.database_url``).
        health_checks: extra named checks reported by ``/api/v1/health`` (plugins).
        extra_endpoints: more routes (each must declare an action).

    Returns:
        The Starlette application.

    Raises:
        ServerError: a route declares no action (AC-1).
        PolicyLoadError: the route policy set does not load.

    Usage::

        app = create_app(Settings.from_env())
    """
    now = clock or _utcnow
    endpoints = [*all_endpoints(), *extra_endpoints]
    check_endpoints(endpoints)
    db = database or Database(settings.database_url)
    if settings.audit_backend == "engine" and db.audit_sink is None:
        from aegis.engine.audit.sql import SqlAuditSink

        db.audit_sink = SqlAuditSink(settings.database_url)
    metrics = Metrics()
    tokens = TokenService(
        settings.all_jwt_keys(),
        settings.jwt_key_id,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=settings.access_token_ttl,
        leeway=settings.jwt_leeway,
        clock=now,
    )
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    limiter = RateLimiter(redis_url, settings.redis_prefix, metrics)
    if mailer is None:
        outbox = OutboxMailer(db, now)
        if settings.smtp_host:
            mailer = SmtpMailer(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value()
                if settings.smtp_password
                else None,
                starttls=settings.smtp_starttls,
                fallback=outbox,
            )
        else:
            mailer = outbox
    ctx = AppContext(
        settings=settings,
        clock=now,
        db=db,
        tokens=tokens,
        hasher=PasswordHasher(settings.password_hash_profile, settings.hash_workers),
        limiter=limiter,
        throttle=LoginThrottle(limiter, settings, db, now),
        metrics=metrics,
        mailer=mailer,
        authorizer=authorizer or EngineAuthorizer(settings.policy_paths),
        client_address=ClientAddress(settings.trusted_proxies),
        endpoints=endpoints,
        extra_common=load_common_file(settings.common_passwords_file),
        health_checks=dict(health_checks or {}),
    )
    policies = ctx.policies = PolicyService(settings, db, metrics, now)
    # One Starlette route per path, so a 405 lists every method the path has in `Allow`.
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    routes: list[Route] = []
    for path, by_method in by_path.items():
        route = Route(path, _dispatcher(by_method), methods=sorted(by_method))
        routes.append(route)
        ctx.routes.append((route, by_method))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await policies.start()
        yield
        await policies.aclose()
        await limiter.aclose()
        if database is None:
            db.dispose()

    exception_handlers: dict[Any, Any] = {
        ApiError: _on_api_error,
        HTTPException: _on_http_error,
        sa_exc.OperationalError: _on_database_down,
        sa_exc.InterfaceError: _on_database_down,
        sa_exc.TimeoutError: _on_database_down,
        Exception: _on_crash,
    }
    # The order is written once: outermost first.
    middleware = [
        Middleware(RequestIdMiddleware, ctx=ctx),
        Middleware(BodyLimitMiddleware, ctx=ctx),
        Middleware(RateLimitMiddleware, ctx=ctx),
        Middleware(AuthMiddleware, ctx=ctx),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.aegis = ctx
    return app
