"""Body size, media type and JSON shape limits (INP-1, INP-2, INP-3).

For routes that take a JSON body, the body is read here while counting bytes (``Content-Length``
is not trusted), parsed once with duplicate keys, ``NaN``/``Infinity``, deep nesting, huge
objects or arrays and oversized integers refused, and handed on in ``scope["aegis.json"]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aegis.server._context import AppContext, send_error
from aegis.server.errors import ApiError

__all__ = ["BodyLimitMiddleware", "parse_json"]

_MAX_KEYS = 1000
_MAX_ITEMS = 10000
_MAX_INT_DIGITS = 64


class _Malformed(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > _MAX_KEYS:
        raise _Malformed("an object has more than 1000 keys")
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Malformed(f"duplicate key `{key[:64]}`")
        out[key] = value
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Malformed("an integer has more than 64 digits")
    return int(text)


def _constant(text: str) -> Any:
    raise _Malformed(f"`{text}` is not JSON")


def _text(value: str) -> None:
    # `"\ud800"` is valid JSON but not Unicode text: refuse it before it reaches a database.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Malformed("a string holds a lone surrogate") from None


def _depth_ok(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _text(item)
        elif isinstance(item, dict | list):
            if depth > limit:
                return False
            if isinstance(item, list) and len(item) > _MAX_ITEMS:
                raise _Malformed("an array has more than 10000 items")
            if isinstance(item, dict):
                for key in item:
                    _text(key)
            children: Iterator[Any] = iter(item.values() if isinstance(item, dict) else item)
            stack.extend((child, depth + 1) for child in children)
    return True


def parse_json(body: bytes, max_depth: int) -> Any:
    """Parse a request body strictly.

    Raises:
        ApiError: ``request.malformed`` (400) for anything but one well-formed, bounded value.
    """
    try:
        text = body.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_int, parse_constant=_constant)
        if not _depth_ok(value, max_depth):
            raise _Malformed(f"the JSON nests deeper than {max_depth} levels")
    except _Malformed as exc:
        raise ApiError("request.malformed", f"the request body is invalid: {exc}") from None
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise ApiError("request.malformed", "the request body is not valid JSON") from None
    return value


class BodyLimitMiddleware:
    """Enforces the body limits and parses JSON bodies of routes that declare a body model."""

    def __init__(self, app: ASGIApp, ctx: AppContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("aegis.request_id")
        limit = self.ctx.settings.max_body_bytes
        headers = Headers(scope=scope)
        try:
            declared = int(headers.get("content-length", "0") or "0")
        except ValueError:
            await send_error(
                send, ApiError("request.malformed", "bad `Content-Length`"), request_id
            )
            return
        if declared > limit:
            await send_error(send, _too_large(limit), request_id)
            return
        endpoint = scope.get("aegis.endpoint")
        if endpoint is None or endpoint.request_model is None:
            # INVARIANT: handlers of routes without a body model never read the body.
            await self.app(scope, receive, send)
            return
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            error = ApiError(
                "request.unsupported_media_type", "the body must be `application/json`"
            )
            await send_error(send, error, request_id)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_error(send, _too_large(limit), request_id)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            scope["aegis.json"] = parse_json(body, self.ctx.settings.max_json_depth)
        except ApiError as exc:
            await send_error(send, exc, request_id)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> ApiError:
    return ApiError("request.too_large", f"the request body is larger than {limit} bytes")
