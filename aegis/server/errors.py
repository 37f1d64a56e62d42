"""Errors of the server and the one table that maps an error code to an HTTP status (H4).

Every error the API returns has the body ``{"error": {"code", "message", "details"}}``,
serialised canonically (sorted keys, no whitespace) so the same error always has the same
bytes; request ids travel in the ``X-Request-Id`` header, never in the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aegis.errors import AegisError

__all__ = ["STATUS_BY_CODE", "ApiError", "ServerError", "error_body", "status_for"]

# INVARIANT: every code the server emits is a key of this table; status_for falls back to 500.
STATUS_BY_CODE: Mapping[str, int] = {
    "request.malformed": 400,
    "request.invalid": 422,
    "request.too_large": 413,
    "request.unsupported_media_type": 415,
    "auth.required": 401,
    "auth.invalid_credentials": 401,
    "auth.invalid_token": 401,
    "auth.invalid_grant": 401,
    "auth.forbidden": 403,
    "auth.signup_closed": 403,
    "auth.invalid_reset_token": 400,
    "auth.invalid_invite": 400,
    "password.rejected": 422,
    "resource.not_found": 404,
    "resource.conflict": 409,
    "method.not_allowed": 405,
    "rate.limited": 429,
    "service.unavailable": 503,
    "internal.error": 500,
    "policy.invalid": 422,
    "decision.invalid_request": 400,
}


def status_for(code: str) -> int:
    """Return the HTTP status of an error code (500 for a code missing from the table)."""
    return STATUS_BY_CODE.get(code, 500)


def error_body(code: str, message: str, details: Sequence[Any] = ()) -> bytes:
    """Serialise an error body canonically, so identical errors have identical bytes.

    Args:
        code: the stable dotted error code.
        message: one lowercase sentence without a final period.
        details: JSON-serialisable details (field errors and the like).

    Returns:
        The UTF-8 JSON bytes of ``{"error": {"code", "message", "details"}}``.
    """
    payload = {"error": {"code": code, "details": list(details), "message": message}}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class ServerError(AegisError):
    """Root of the server's errors (a misconfigured server, a failed startup check)."""

    code = "server.error"


class ApiError(ServerError):
    """An error that becomes an HTTP error response.

    Args:
        code: a key of :data:`STATUS_BY_CODE`.
        message: one lowercase sentence without a final period.
        details: JSON-serialisable details.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        code: str,
        message: str,
        details: Sequence[Any] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        """The HTTP status of this error."""
        return status_for(self.code)

    def body(self) -> bytes:
        """The canonical JSON body of this error."""
        return error_body(self.code, self.message, self.details)
