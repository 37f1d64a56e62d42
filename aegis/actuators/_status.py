"""The one failure type shared by the in-memory cluster and the Kubernetes adapter.

The cluster model raises it with the same code/reason/message the real API server would put
in its ``Status`` object; the Kubernetes adapter translates ``ApiException`` into it. The
remediation algorithms in :mod:`aegis.actuators._remediate` then handle one type only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiStatusError", "status_body"]


class ApiStatusError(Exception):
    """A failed Kubernetes API call.

    Attributes:
        code: HTTP status (``0`` when the server could not be reached).
        reason: the Status ``reason`` (``NotFound``, ``Conflict``, ``TooManyRequests`` …).
        message: the Status ``message``.
        details: the Status ``details`` object, if any.
        timeout: the call timed out (``code`` is then ``0``).
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        timeout: bool = False,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.timeout = timeout


def status_body(err: ApiStatusError) -> dict[str, Any]:
    """The ``meta/v1 Status`` object the real API server returns for ``err``."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": err.message,
        "reason": err.reason,
        "code": err.code,
    }
    if err.details:
        body["details"] = err.details
    return body
