"""``/api/v1/audit/decisions``: the decision records of chain ``decisions`` (admins, auditors).

Records are read from ``aegis_audit_records`` with SQLAlchemy Core: every filter is a bound
parameter, times are parsed before they reach SQL, ``limit`` is clamped to 500 (AUD-6).
``decision`` and the time range are column filters; ``action``, ``principal`` (the request's
``principal.id``) and ``rule`` (a matched allow or deny rule) narrow the scan with a bound
``LIKE`` on the hashed body and are then checked exactly on the parsed record. One call scans
at most :data:`SCAN_LIMIT` rows: when it stops there, ``next_cursor`` continues the scan even
if the page holds fewer than ``limit`` items.

:func:`chain_verdicts` is what ``GET /api/v1/audit/verify`` reports for the chains kept by
``aegis.engine.audit`` (the same check as ``aegis audit verify --db``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from aegis.server._context import AppContext
from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.policy_service import DECISION_CHAIN
from aegis.server.routes._common import context, json_response, page_limit, query_params
from aegis.server.routes.audit import _time as parse_time
from aegis.server.schemas import ErrorV1

__all__ = [
    "SCAN_LIMIT",
    "DecisionRecordListV1",
    "chain_verdicts",
    "endpoints",
]

#: Most rows one call of ``GET /api/v1/audit/decisions`` examines.
SCAN_LIMIT = 20_000
_CHUNK = 1000
_FILTERS = ("decision", "action", "principal", "rule")


class DecisionRecordV1(BaseModel):
    """One sealed decision record (``AuditRecordV1``) with its hash."""

    schema_version: int
    seq: int
    id: str
    time: str
    chain: str
    kind: str
    policy_version: str | None
    request: dict[str, Any] | None
    decision: str | None
    reason: str | None
    allow: list[str]
    deny: list[str]
    errors: list[dict[str, Any]]
    data: dict[str, Any] | None
    prev_hash: str
    hash: str


class DecisionRecordListV1(BaseModel):
    """A page of decision records, oldest first."""

    items: list[DecisionRecordV1]
    next_cursor: str | None


def _like(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _record(row: Any) -> dict[str, Any]:
    """The stored record with its hash; a body that no longer parses (tampering) is shown
    from the row's columns with ``data.unreadable`` set, never an error."""
    try:
        record = json.loads(row.body)
    except ValueError:
        record = None
    keys = set(DecisionRecordV1.model_fields) - {"hash"}
    if not isinstance(record, dict) or not keys <= set(record):
        stamp = row.time.isoformat() if row.time is not None else ""
        record = {
            "schema_version": 1,
            "seq": row.seq,
            "id": row.id,
            "time": stamp,
            "chain": row.chain,
            "kind": row.kind,
            "policy_version": row.policy_version,
            "request": None,
            "decision": row.decision,
            "reason": None,
            "allow": [],
            "deny": [],
            "errors": [],
            "data": {"unreadable": True},
            "prev_hash": row.prev_hash,
        }
    record["hash"] = row.hash
    return record


def _matches(record: dict[str, Any], wanted: dict[str, str]) -> bool:
    request = record.get("request")
    request = request if isinstance(request, dict) else {}
    principal = request.get("principal")
    for name, value in wanted.items():
        if name == "action" and request.get("action") != value:
            return False
        if name == "principal" and not (
            isinstance(principal, dict) and principal.get("id") == value
        ):
            return False
        rules = [*(record.get("allow") or ()), *(record.get("deny") or ())]
        if name == "rule" and value not in rules:
            return False
    return True


def _page(
    session: Session,
    *,
    limit: int,
    after: int,
    wanted: dict[str, str],
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[dict[str, Any]], str | None]:
    from aegis.engine.audit.sql import audit_records as table

    sqlite = session.get_bind().dialect.name == "sqlite"

    def bound(value: datetime) -> datetime:
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if sqlite else value

    base = sa.select(table).where(table.c.chain == DECISION_CHAIN)
    if "decision" in wanted:
        base = base.where(table.c.decision == wanted["decision"])
    for name in ("action", "principal", "rule"):
        if name in wanted:
            base = base.where(table.c.body.like(_like(wanted[name]), escape="\\"))
    if since is not None:
        base = base.where(table.c.time >= bound(since))
    if until is not None:
        base = base.where(table.c.time < bound(until))
    exact = {k: v for k, v in wanted.items() if k != "decision"}
    items: list[dict[str, Any]] = []
    scanned, last = 0, after
    while scanned < SCAN_LIMIT:
        rows = session.execute(
            base.where(table.c.seq > last).order_by(table.c.seq).limit(_CHUNK)
        ).all()
        for row in rows:
            scanned += 1
            last = row.seq
            record = _record(row)
            if _matches(record, exact):
                items.append(record)
                if len(items) > limit:
                    return items[:limit], str(items[limit - 1]["seq"])
        if len(rows) < _CHUNK:
            return items, None
    return items, str(last)


async def list_decisions(request: Request) -> Response:
    """A page of decision records, filtered by decision, action, principal, rule and time."""
    ctx = context(request)
    params = query_params(request, {"limit", "cursor", "since", "until", *_FILTERS})
    limit = page_limit(params.get("limit"))
    raw = params.get("cursor") or None
    if raw is not None and (not raw.isdigit() or len(raw) > 18):
        raise ApiError("request.invalid", "`cursor` is invalid")
    after = int(raw) if raw else 0
    since = parse_time("since", params["since"]) if "since" in params else None
    until = parse_time("until", params["until"]) if "until" in params else None
    wanted = {name: params[name] for name in _FILTERS if params.get(name)}
    if "decision" in wanted:
        wanted["decision"] = wanted["decision"].upper()
        if wanted["decision"] not in ("ALLOW", "DENY"):
            raise ApiError("request.invalid", "`decision` must be `ALLOW` or `DENY`")
    for name, value in wanted.items():
        if len(value) > 256:
            raise ApiError("request.invalid", f"`{name}` is longer than 256 characters")
    items, cursor = await ctx.db.run(
        lambda s: _page(s, limit=limit, after=after, wanted=wanted, since=since, until=until)
    )
    return json_response({"items": items, "next_cursor": cursor})


def _verdict(result: Any) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "checked": result.checked,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
        "reason": result.reason,
        "bad_id": result.bad_id,
        "where": result.where,
        "head_seq": result.head.seq,
    }


async def chain_verdicts(ctx: AppContext) -> dict[str, dict[str, Any]]:
    """Verify every chain of ``aegis_audit_records`` (``decisions``, and ``events`` if kept there).

    Uses the audit package's own verifier (the one behind ``aegis audit verify --db``); the
    ``decisions`` chain is reported even before its first record.
    """
    assert ctx.policies is not None
    results = await anyio.to_thread.run_sync(ctx.policies.sink.verify)
    out = {name: _verdict(result) for name, result in sorted(results.items())}
    out.setdefault(
        DECISION_CHAIN,
        {
            "ok": True,
            "checked": 0,
            "first_bad_seq": None,
            "problem": None,
            "reason": None,
            "bad_id": None,
            "where": None,
            "head_seq": 0,
        },
    )
    return out


async def with_chains(ctx: AppContext, verdict: dict[str, Any]) -> dict[str, Any]:
    """Add the engine chains to the security-event verdict of ``GET /api/v1/audit/verify``.

    ``ok`` becomes true only when every chain verifies; ``first_bad`` names the first bad
    record (chain, seq, id, problem, reason) of the first chain (by name) that does not, and
    ``first_bad_seq`` is its seq.
    """
    chains = await chain_verdicts(ctx)
    if "events" not in chains:  # the events are in the server's own table (default)
        chains["events"] = {
            "ok": verdict["ok"],
            "checked": None,
            "first_bad_seq": verdict.get("first_bad_seq"),
            "problem": None if verdict["ok"] else "changed",
            "reason": None if verdict["ok"] else "an event does not match the hash chain",
            "bad_id": None,
            "where": "table audit_events",
            "head_seq": None,
        }
    chains = dict(sorted(chains.items()))
    first_bad = next(
        (
            {
                "chain": name,
                "seq": v["first_bad_seq"],
                "id": v["bad_id"],
                "problem": v["problem"],
                "reason": v["reason"],
                "where": v["where"],
            }
            for name, v in chains.items()
            if not v["ok"]
        ),
        None,
    )
    return {
        **verdict,
        "ok": first_bad is None,
        "first_bad_seq": first_bad["seq"] if first_bad else None,
        "first_bad": first_bad,
        "chains": chains,
    }


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/audit/decisions`` endpoint."""
    err = ("error", ErrorV1)
    return [
        Endpoint(
            "/api/v1/audit/decisions",
            "GET",
            "api:audit:read",
            list_decisions,
            "List decision records (filters: decision, action, principal, rule, since, until)",
            responses={
                200: ("a page of decision records", DecisionRecordListV1),
                401: err,
                403: err,
                422: err,
                429: err,
            },
            tags=("audit",),
        ),
    ]
