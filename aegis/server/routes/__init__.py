"""The API routes, grouped by resource; each module exposes ``endpoints()``."""

from __future__ import annotations

from aegis.server.permissions import Endpoint
from aegis.server.routes import (
    audit,
    auth,
    decisions,
    evaluate,
    health,
    metrics_api,
    policies,
    settings_api,
    users,
)

__all__ = ["all_endpoints"]


def all_endpoints() -> list[Endpoint]:
    """Every endpoint of the API, in documentation order."""
    return [
        *auth.endpoints(),
        *users.endpoints(),
        *audit.endpoints(),
        *health.endpoints(),
        *policies.endpoints(),
        *evaluate.endpoints(),
        *decisions.endpoints(),
        *metrics_api.endpoints(),
        *settings_api.endpoints(),
    ]
