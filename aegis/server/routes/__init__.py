"""The API routes, grouped by resource; each module exposes ``endpoints()``."""

from __future__ import annotations

from aegis.server.permissions import Endpoint
from aegis.server.routes import audit, auth, health, users

__all__ = ["all_endpoints"]


def all_endpoints() -> list[Endpoint]:
    """Every endpoint of the API, in documentation order."""
    return [*auth.endpoints(), *users.endpoints(), *audit.endpoints(), *health.endpoints()]
