"""``/api/v1/settings``: runtime settings (administrators), typed, validated and audited.

The body of ``PUT`` is the whole :class:`~aegis.server.policy_service.RuntimeSettingsV1`
(fields left out take their defaults; unknown fields, wrong types and out-of-range values are
a 422). A change is stored with a new revision, written to the security-event chain with the
old and new value of each changed field, and in force on every replica within a second (the
same invalidation as a policy change). Start-up settings (``AEGIS_*``) are not changed here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.audit import append_event
from aegis.server.permissions import Endpoint
from aegis.server.policy_service import (
    SETTINGS_KEY,
    PolicyService,
    RuntimeSettingsV1,
    stored_settings,
)
from aegis.server.routes._common import (
    address,
    body,
    context,
    json_response,
    principal,
    request_id,
)
from aegis.server.routes.policies import service
from aegis.server.schemas import ErrorV1

__all__ = ["endpoints"]


async def get_settings(request: Request) -> Response:
    """The runtime settings in force (as stored)."""
    current = await context(request).db.run(stored_settings)
    return json_response(current.model_dump())


async def put_settings(request: Request) -> Response:
    """Replace the runtime settings."""
    ctx, me = context(request), principal(request)
    data = body(request, RuntimeSettingsV1)
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def store(session: Session) -> tuple[dict[str, Any], bool]:
        PolicyService.lock(session)
        before = stored_settings(session).model_dump()
        after = data.model_dump()
        changed = {k: [before[k], after[k]] for k in after if before.get(k) != after[k]}
        if not changed:
            return after, False
        revision = PolicyService.bump(session, SETTINGS_KEY, now, me.id, after)
        append_event(
            session,
            at=now,
            action="settings_updated",
            actor_id=me.id,
            address=where,
            request_id=rid,
            details={"changed": changed, "revision": revision},
        )
        return after, True

    stored, changed = await ctx.db.run(store)
    if changed:
        await service(request).changed()
    return json_response(stored)


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/settings`` endpoints."""
    err = ("error", ErrorV1)
    common: dict[int, tuple[str, Any]] = {401: err, 403: err, 429: err}
    return [
        Endpoint(
            "/api/v1/settings",
            "GET",
            "api:settings:read",
            get_settings,
            "Runtime settings",
            responses={200: ("the settings", RuntimeSettingsV1), **common},
            tags=("settings",),
        ),
        Endpoint(
            "/api/v1/settings",
            "PUT",
            "api:settings:write",
            put_settings,
            "Replace the runtime settings",
            request_model=RuntimeSettingsV1,
            responses={200: ("the settings", RuntimeSettingsV1), 422: err, **common},
            tags=("settings",),
        ),
    ]
