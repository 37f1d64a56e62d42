"""The per-app bundle of services that middleware and handlers share (no module globals)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope, Send

from aegis.server.auth.passwords import PasswordHasher
from aegis.server.auth.throttle import LoginThrottle
from aegis.server.auth.tokens import TokenService
from aegis.server.db.database import Database
from aegis.server.errors import ApiError, error_body, status_for
from aegis.server.mail import Mailer
from aegis.server.metrics import Metrics
from aegis.server.permissions import Authorizer, Endpoint
from aegis.server.ratelimit import ClientAddress, RateLimiter
from aegis.server.settings import Settings

if TYPE_CHECKING:
    from aegis.server.policy_service import PolicyService

HealthCheck = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Principal:
    """The signed-in caller of one request.

    Attributes:
        id: the user id.
        email: the user's address.
        roles: roles as stored now (read from the database on every request, SES-5).
        session_id: the refresh-token family of the access token.
        token_id: the access token's ``jti``.
        token_expires_at: when the access token expires.
    """

    id: str
    email: str
    roles: tuple[str, ...]
    session_id: str
    token_id: str
    token_expires_at: datetime


@dataclass
class AppContext:
    """Everything one app instance needs; built once by ``create_app``."""

    settings: Settings
    clock: Callable[[], datetime]
    db: Database
    tokens: TokenService
    hasher: PasswordHasher
    limiter: RateLimiter
    throttle: LoginThrottle
    metrics: Metrics
    mailer: Mailer
    authorizer: Authorizer
    client_address: ClientAddress
    endpoints: Sequence[Endpoint]
    routes: list[tuple[BaseRoute, Mapping[str, Endpoint]]] = field(default_factory=list)
    extra_common: frozenset[str] = frozenset()
    health_checks: Mapping[str, HealthCheck] = field(default_factory=dict)
    #: The managed policy set behind ``/api/v1/evaluate`` (part 2, ``aegis.server.policy_service``).
    policies: PolicyService | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("aegis.server"))

    def resolve(self, scope: Scope) -> tuple[Endpoint | None, dict[str, Any]]:
        """The endpoint a request will reach, and its path parameters (``None`` if no route)."""
        method = "GET" if scope.get("method") == "HEAD" else scope.get("method", "")
        for route, by_method in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL and method in by_method:
                return by_method[method], dict(child.get("path_params", {}))
        return None, {}

    def event(self, name: str, **fields: Any) -> None:
        """Write one structured JSON log line; user strings are JSON-escaped (LOG-2)."""
        record = {"event": name, "at": self.clock().isoformat(), **fields}
        self.log.info(json.dumps(record, sort_keys=True, default=str, ensure_ascii=True))


async def send_error(send: Send, error: ApiError, request_id: str | None = None) -> None:
    """Send an error response from an ASGI middleware (outside Starlette's handlers)."""
    await send_raw_error(
        send,
        error.code,
        message=error.message,
        details=error.details,
        headers=error.headers,
        request_id=request_id,
    )


async def send_raw_error(
    send: Send,
    code: str,
    *,
    message: str,
    details: Sequence[Any] = (),
    headers: Mapping[str, str] | None = None,
    request_id: str | None = None,
) -> None:
    """Send ``{"error": ...}`` with the status of ``code`` and the given headers."""
    body = error_body(code, message, details)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    for key, value in (headers or {}).items():
        raw.append((key.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status_for(code), "headers": raw})
    await send({"type": "http.response.body", "body": body})
