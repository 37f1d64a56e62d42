"""Pure-ASGI middleware of the server, applied in this order (outermost first):

1. :class:`RequestIdMiddleware` — request id header, client address, route resolution, access log;
2. :class:`BodyLimitMiddleware` — body size, ``Content-Type`` and JSON shape limits (INP-1..3);
3. :class:`RateLimitMiddleware` — per-address / per-user limits declared by each route;
4. :class:`AuthMiddleware` — bearer token → principal, then the route's action → policy.
"""

from __future__ import annotations

from aegis.server.middleware.auth import AuthMiddleware
from aegis.server.middleware.body import BodyLimitMiddleware
from aegis.server.middleware.ratelimit import RateLimitMiddleware
from aegis.server.middleware.request_id import RequestIdMiddleware

__all__ = ["AuthMiddleware", "BodyLimitMiddleware", "RateLimitMiddleware", "RequestIdMiddleware"]
