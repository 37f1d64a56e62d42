"""Helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from aegis.server._context import AppContext, Principal
from aegis.server.errors import ApiError

M = TypeVar("M", bound=BaseModel)

UNAVAILABLE_HEADERS = {"Retry-After": "5"}


def context(request: Request) -> AppContext:
    """The app's services."""
    ctx: AppContext = request.app.state.aegis
    return ctx


def body(request: Request, model: type[M]) -> M:
    """The JSON body parsed by the body middleware, validated against ``model``."""
    raw = request.scope.get("aegis.json")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = [
            {"loc": [str(p) for p in err["loc"]], "type": err["type"], "msg": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        raise ApiError(
            "request.invalid", "the request body does not match the schema", details
        ) from None


def principal(request: Request) -> Principal:
    """The signed-in caller (the route policy guarantees one on routes that call this)."""
    found: Principal | None = request.scope.get("aegis.principal")
    if found is None:
        raise ApiError("auth.required", "this route needs an access token")
    return found


def address(request: Request) -> str:
    """The client address worked out by the request-id middleware."""
    return str(request.scope.get("aegis.client", "unknown"))


def request_id(request: Request) -> str | None:
    """The request id."""
    value = request.scope.get("aegis.request_id")
    return str(value) if value else None


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response that is never cached."""
    content = json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode()
    merged = {"Cache-Control": "no-store", **(headers or {})}
    return Response(content, status_code=status, media_type="application/json", headers=merged)


def query_params(request: Request, allowed: set[str]) -> dict[str, str]:
    """Query parameters, refusing unknown or repeated ones (AUD-6)."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise ApiError("request.invalid", f"unknown query parameter `{key[:64]}`")
        if key in out:
            raise ApiError("request.invalid", f"query parameter `{key[:64]}` is repeated")
        if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it before SQL sees it
            raise ApiError("request.invalid", f"query parameter `{key[:64]}` holds a NUL")
        out[key] = value
    return out


def page_limit(raw: str | None, default: int = 50, maximum: int = 500) -> int:
    """The ``limit`` query parameter, clamped to ``1..maximum``."""
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise ApiError("request.invalid", "`limit` must be a positive integer")
    return min(max(int(raw), 1), maximum)
