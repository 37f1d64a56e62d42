"""``/api/v1/metrics/*``: live figures and per-minute history of decisions (admins, auditors).

History comes from ``decision_rollups``, which every replica fills (counts are added, so
replicas sum up) at most every ten seconds and before answering a history query. Times are
RFC 3339 with an offset; every parameter is optional:

* ``historical``: ``to`` = the end of the current minute, ``from`` = ``to`` − 1 hour,
  ``step`` = 60 seconds (rounded up to a whole minute). A range that would need more than
  :data:`MAX_POINTS` points is not refused: the step grows (whole minutes) until it fits,
  and ``clamped`` says so.
* ``policy-evaluation-counts``: ``to`` = the end of the current minute, ``from`` = ``to`` −
  24 hours.

``GET /api/v1/ping-auth`` answers ``{"status": "ok"}`` to any signed-in caller after the whole
middleware chain (rate limit, token, database session check, route policy): the ceiling the
load benchmark compares ``/api/v1/evaluate`` with.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.db.models import DecisionRollup
from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.policy_service import minute
from aegis.server.routes._common import context, json_response, query_params
from aegis.server.routes.audit import _time as parse_time
from aegis.server.routes.policies import service
from aegis.server.schemas import ErrorV1

__all__ = ["MAX_POINTS", "endpoints"]

#: Most points one ``historical`` answer holds.
MAX_POINTS = 1000
_MAX_STEP = 86_400 * 366


class CurrentV1(BaseModel):
    """``GET /api/v1/metrics/current``: this replica's live figures."""

    at: str
    policy_version: str | None
    policy_revision: int | None
    documents: int
    rules: int
    decisions: int
    decisions_by_effect: dict[str, int]
    cache: dict[str, float]
    audit: dict[str, int | str | None]
    rate_limit: dict[str, int]


class PointV1(BaseModel):
    """Decisions in ``[time, time + step)``."""

    time: str
    allow: int
    deny: int
    total: int


class HistoryV1(BaseModel):
    """``GET /api/v1/metrics/historical``."""

    from_: str = Field(alias="from")
    to: str
    step: int
    clamped: bool
    points: list[PointV1]


class RuleCountV1(BaseModel):
    """Decisions in which a rule matched (or, for deny rules, errored), by effect."""

    rule: str
    effect: str
    count: int


class CountsV1(BaseModel):
    """``GET /api/v1/metrics/policy-evaluation-counts``."""

    from_: str = Field(alias="from")
    to: str
    totals: dict[str, int]
    items: list[RuleCountV1]


def _stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _range(
    request: Request, default: timedelta, extra: set[str]
) -> tuple[dict[str, str], datetime, datetime]:
    params = query_params(request, {"from", "to", *extra})
    now = context(request).clock()
    try:
        # the default end is the end of the current minute, so the minute in progress counts
        end = (
            parse_time("to", params["to"]) if "to" in params else minute(now) + timedelta(minutes=1)
        )
        start = parse_time("from", params["from"]) if "from" in params else end - default
    except OverflowError:
        raise ApiError("request.invalid", "the time range is out of range") from None
    if start >= end:
        raise ApiError("request.invalid", "`from` must be before `to`")
    return params, start, end


async def current(request: Request) -> Response:
    """Live figures of this replica: decisions, cache, audit queue, rate limits."""
    ctx = context(request)
    svc = service(request)
    await svc.loaded()
    registry = ctx.metrics.registry
    limited = sum(
        s.value
        for metric in ctx.metrics.rate_limited.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    )
    fail_open = registry.get_sample_value("ratelimit_fail_open_total") or 0.0
    figures = svc.stats()
    figures["rate_limit"] = {"rejected": int(limited), "fail_open": int(fail_open)}
    figures["at"] = _stamp(ctx.clock())
    return json_response(figures)


async def historical(request: Request) -> Response:
    """Decisions by effect per step, from the stored per-minute roll-ups."""
    params, start, end = _range(request, timedelta(hours=1), {"step"})
    raw = params.get("step", "60")
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise ApiError("request.invalid", "`step` must be a positive number of seconds")
    step = min(max(60, math.ceil(int(raw) / 60) * 60), _MAX_STEP)
    start = minute(start)
    span = (end - start).total_seconds()
    clamped = False
    if math.ceil(span / step) > MAX_POINTS:
        step = math.ceil(span / MAX_POINTS / 60) * 60
        clamped = True
    count = max(1, math.ceil(span / step))
    svc = service(request)
    await svc.flush_rollups()

    def rows(session: Session) -> list[tuple[datetime, str, int]]:
        query = sa.select(DecisionRollup.bucket, DecisionRollup.effect, DecisionRollup.count).where(
            DecisionRollup.rule == "",
            DecisionRollup.bucket >= start,
            DecisionRollup.bucket < end,
        )
        return [(b, e, int(c)) for b, e, c in session.execute(query)]

    points: list[dict[str, Any]] = [
        {"time": _stamp(start + timedelta(seconds=i * step)), "allow": 0, "deny": 0, "total": 0}
        for i in range(count)
    ]
    for bucket, effect, value in await context(request).db.run(rows):
        index = int((bucket - start).total_seconds() // step)
        if 0 <= index < count:
            key = "allow" if effect == "ALLOW" else "deny"
            points[index][key] += value
            points[index]["total"] += value
    return json_response(
        {
            "from": _stamp(start),
            "to": _stamp(end),
            "step": step,
            "clamped": clamped,
            "points": points,
        }
    )


async def rule_counts(request: Request) -> Response:
    """How often each rule matched, by decision effect, in a time range."""
    _, start, end = _range(request, timedelta(hours=24), set())
    svc = service(request)
    await svc.flush_rollups()
    start = minute(start)

    def rows(session: Session) -> list[tuple[str, str, int]]:
        query = (
            sa.select(DecisionRollup.rule, DecisionRollup.effect, sa.func.sum(DecisionRollup.count))
            .where(DecisionRollup.bucket >= start, DecisionRollup.bucket < end)
            .group_by(DecisionRollup.rule, DecisionRollup.effect)
            .order_by(DecisionRollup.rule, DecisionRollup.effect)
        )
        return [(r, e, int(c)) for r, e, c in session.execute(query)]

    totals = {"ALLOW": 0, "DENY": 0}
    items = []
    for rule, effect, value in await context(request).db.run(rows):
        if rule == "":
            totals[effect] = totals.get(effect, 0) + value
        else:
            items.append({"rule": rule, "effect": effect, "count": value})
    return json_response(
        {"from": _stamp(start), "to": _stamp(end), "totals": totals, "items": items}
    )


async def ping_auth(request: Request) -> Response:
    """An authenticated no-op (the whole middleware chain, no handler work)."""
    return json_response({"status": "ok"})


def endpoints() -> list[Endpoint]:
    """The metrics API endpoints and the authenticated ping."""
    err = ("error", ErrorV1)
    common: dict[int, tuple[str, type[BaseModel] | None]] = {401: err, 403: err, 429: err}
    return [
        Endpoint(
            "/api/v1/metrics/current",
            "GET",
            "api:metrics:query",
            current,
            "Live figures of this replica",
            responses={200: ("live figures", CurrentV1), **common},
            tags=("metrics",),
        ),
        Endpoint(
            "/api/v1/metrics/historical",
            "GET",
            "api:metrics:query",
            historical,
            "Decisions by effect over time (from, to: RFC 3339; step: seconds)",
            responses={200: ("the series", HistoryV1), 422: err, **common},
            tags=("metrics",),
        ),
        Endpoint(
            "/api/v1/metrics/policy-evaluation-counts",
            "GET",
            "api:metrics:query",
            rule_counts,
            "Decisions by rule and effect (from, to: RFC 3339)",
            responses={200: ("the counts", CountsV1), 422: err, **common},
            tags=("metrics",),
        ),
        Endpoint(
            "/api/v1/ping-auth",
            "GET",
            "api:ping:read",
            ping_auth,
            "Authenticated no-op (the load benchmark's ceiling)",
            responses={200: ("ok", None), **common},
            tags=("meta",),
        ),
    ]
