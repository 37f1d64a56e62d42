"""Health, the OpenAPI document and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.openapi import build_openapi
from aegis.server.permissions import Endpoint
from aegis.server.routes._common import context, json_response
from aegis.server.schemas import ErrorV1, HealthV1

__all__ = ["endpoints"]


async def _timed(check: Any) -> dict[str, object]:
    started = time.perf_counter()
    try:
        ok = bool(await check())
        error = None
    except Exception as exc:  # a failing dependency is reported, never raised
        ok, error = False, type(exc).__name__
    out: dict[str, object] = {
        "status": "ok" if ok else "down",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if error:
        out["error"] = error
    return out


async def health(request: Request) -> Response:
    """Database, Redis and each configured plugin, with status and latency.

    ``ok`` when everything answers; ``degraded`` (still 200) when Redis or a plugin is down;
    ``down`` (503) when the database is.
    """
    ctx = context(request)

    async def database() -> bool:
        return bool(await ctx.db.run(lambda s: s.execute(sa.text("SELECT 1")).scalar() == 1))

    checks: dict[str, dict[str, object]] = {"database": await _timed(database)}
    if ctx.limiter.shared:
        checks["redis"] = await _timed(ctx.limiter.ping)
    else:
        checks["redis"] = {"status": "disabled", "latency_ms": 0.0}
    for name, check in sorted(ctx.health_checks.items()):
        checks[f"plugin:{name}"] = await _timed(check)
    if checks["database"]["status"] != "ok":
        status, code = "down", 503
    elif any(c["status"] == "down" for c in checks.values()):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return json_response({"status": status, "checks": checks}, code)


async def ping(request: Request) -> Response:
    """Liveness: answers without touching any dependency."""
    return json_response({"status": "ok"})


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document of this server, built from its route table."""
    ctx = context(request)
    return json_response(build_openapi(ctx.endpoints, ctx.authorizer, ctx.settings))


async def metrics(request: Request) -> Response:
    """Prometheus metrics of this app."""
    ctx = context(request)
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def endpoints() -> list[Endpoint]:
    """Health, OpenAPI and metrics endpoints."""
    return [
        Endpoint(
            "/api/v1/health",
            "GET",
            "api:health:read",
            health,
            "Health of the server and its dependencies",
            responses={200: ("ok or degraded", HealthV1), 503: ("down", HealthV1)},
            tags=("health",),
        ),
        Endpoint(
            "/api/v1/health/ping",
            "GET",
            "api:health:read",
            ping,
            "Liveness",
            responses={200: ("alive", None)},
            tags=("health",),
        ),
        Endpoint(
            "/api/v1/openapi.json",
            "GET",
            "api:openapi:read",
            openapi,
            "This document",
            responses={200: ("OpenAPI 3.1", None)},
            tags=("meta",),
        ),
        Endpoint(
            "/metrics",
            "GET",
            "api:metrics:read",
            metrics,
            "Prometheus metrics",
            responses={
                200: ("text exposition format", None),
                401: ("error", ErrorV1),
                403: ("error", ErrorV1),
            },
            tags=("meta",),
        ),
    ]
