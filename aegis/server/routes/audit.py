"""``/api/v1/audit``: read and verify the security-event chain (administrators, auditors).

Filters come from an allowlist, values are bound parameters, times are parsed before they
reach SQL, and ``limit`` is clamped to 500 (AUD-6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.audit import ENGINE_CHAIN, engine_events, event_to_dict, verify_chain
from aegis.server.db.models import AuditEvent
from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.routes._common import context, json_response, page_limit, query_params
from aegis.server.schemas import AuditListV1, ErrorV1

__all__ = ["endpoints"]

_FILTERS = {"action", "actor_id", "target_id", "outcome"}


def _time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError("request.invalid", f"`{name}` must be an ISO-8601 time") from None
    if value.tzinfo is None:
        raise ApiError("request.invalid", f"`{name}` must carry a UTC offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise ApiError("request.invalid", f"`{name}` is out of range") from None


async def list_events(request: Request) -> Response:
    """A page of events, oldest first, filtered by action, actor, target, outcome and time."""
    ctx = context(request)
    params = query_params(request, {"limit", "cursor", "since", "until", *_FILTERS})
    limit = page_limit(params.get("limit"))
    after: int | None = None
    if params.get("cursor"):
        if not params["cursor"].isdigit() or len(params["cursor"]) > 18:
            raise ApiError("request.invalid", "`cursor` is invalid")
        after = int(params["cursor"])
    since = _time("since", params["since"]) if "since" in params else None
    until = _time("until", params["until"]) if "until" in params else None
    equals = {name: params[name] for name in sorted(_FILTERS & params.keys())}
    if ctx.db.audit_sink is not None:

        def page(session: Any) -> list[dict[str, Any]]:
            return engine_events(
                session, limit=limit + 1, after_seq=after, equals=equals, since=since, until=until
            )

    else:
        query = sa.select(AuditEvent).order_by(AuditEvent.seq).limit(limit + 1)
        if after is not None:
            query = query.where(AuditEvent.seq > after)
        for name, value in equals.items():
            query = query.where(getattr(AuditEvent, name) == value)
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if until is not None:
            query = query.where(AuditEvent.at < until)

        def page(session: Any) -> list[dict[str, Any]]:
            return [event_to_dict(e) for e in session.scalars(query)]

    rows = await ctx.db.run(page)
    more = len(rows) > limit
    items = rows[:limit]
    return json_response({"items": items, "next_cursor": str(items[-1]["seq"]) if more else None})


async def verify(request: Request) -> Response:
    """Recompute the hash chain: ``{"ok": true}`` or the first ``seq`` that does not verify."""
    ctx = context(request)
    sink = ctx.db.audit_sink
    if sink is not None:
        results = await anyio.to_thread.run_sync(sink.verify)
        result = results.get(ENGINE_CHAIN)
        bad = None if result is None or result.ok else result.first_bad_seq
        ok = result is None or result.ok
        verdict = {"ok": ok, "first_bad_seq": bad}
    else:
        bad = await ctx.db.run(verify_chain)
        verdict = {"ok": bad is None, "first_bad_seq": bad}
    from aegis.server.routes.decisions import with_chains  # part 2: the decision chain too

    return json_response(await with_chains(ctx, verdict))


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/audit`` endpoints."""
    err = ("error", ErrorV1)
    return [
        Endpoint(
            "/api/v1/audit/events",
            "GET",
            "api:audit:read",
            list_events,
            "List security events",
            responses={
                200: ("a page of events", AuditListV1),
                401: err,
                403: err,
                422: err,
                429: err,
            },
            tags=("audit",),
        ),
        Endpoint(
            "/api/v1/audit/verify",
            "GET",
            "api:audit:read",
            verify,
            "Verify the event hash chain",
            responses={200: ("the verdict", None), 401: err, 403: err, 429: err},
            tags=("audit",),
        ),
    ]
