"""The server's security-event log: append-only (database triggers) and hash-chained.

Each event has a gapless ``seq``, the ``prev_hash`` of its predecessor (64 zeros for the first)
and ``hash = SHA-256(prev_hash ‖ canonical JSON of the event without its hash)``; canonical JSON
is sorted keys, no whitespace, UTF-8, timestamps ISO-8601 UTC. Writers are serialised
(``pg_advisory_xact_lock`` on PostgreSQL; SQLite transactions already hold the write lock).
Events are written in the transaction of the change they record, so one never exists without
the other. Never put a secret in ``details`` (LOG-1): tokens appear only as fingerprints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aegis.server.db.database import AUDIT_PENDING
from aegis.server.db.models import AuditEvent

__all__ = [
    "ENGINE_CHAIN",
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "append_event",
    "engine_events",
    "event_to_dict",
    "verify_chain",
]

#: The chain of ``aegis.engine.audit`` that holds the server's events.
ENGINE_CHAIN = "events"

GENESIS_HASH = "0" * 64
SCHEMA_VERSION = 1
_LOCK_KEY = 0x0AE615AD17  # pg advisory lock id of the audit chain


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _record(event: AuditEvent) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "seq": event.seq,
        "at": _iso(event.at),
        "action": event.action,
        "outcome": event.outcome,
        "actor_id": event.actor_id,
        "target_id": event.target_id,
        "address": event.address,
        "request_id": event.request_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }


def _hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(record["prev_hash"]) + _canonical(record)).hexdigest()


def append_event(
    session: Session,
    *,
    at: datetime,
    action: str,
    outcome: str = "success",
    actor_id: str | None = None,
    target_id: str | None = None,
    address: str | None = None,
    request_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one event to the chain inside the caller's transaction.

    Args:
        session: the open transaction.
        at: when it happened (aware).
        action: what happened (``login_succeeded``, ``refresh_reuse_detected`` …).
        outcome: ``success``, ``failure`` or ``denied``.
        actor_id: who did it (a user id), if known.
        target_id: whom it concerned (a user id), if any.
        address: the client address.
        request_id: the request that caused it.
        details: JSON data without secrets.

    With an engine audit sink configured (``AEGIS_AUDIT_BACKEND=engine``) the event is queued
    as an ``AuditRecordV1`` of chain ``events`` and appended by the sink after the commit.
    """
    pending = session.info.get(AUDIT_PENDING)
    if pending is not None:
        from aegis.engine.audit import event_record

        data = {
            "outcome": outcome,
            "actor_id": actor_id,
            "target_id": target_id,
            "address": address,
            "request_id": request_id,
            "details": dict(details or {}),
        }
        pending.append(event_record(action, data, chain=ENGINE_CHAIN, time=at))
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    last = session.execute(
        sa.select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    event = AuditEvent(
        seq=seq,
        at=at.astimezone(UTC),
        action=action,
        outcome=outcome,
        actor_id=actor_id,
        target_id=target_id,
        address=address,
        request_id=request_id,
        details=dict(details or {}),
        prev_hash=prev,
    )
    event.hash = _hash(_record(event))
    session.add(event)
    session.flush()


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """The API form of an event (``AuditRecordV1``): its record plus its hash."""
    record = _record(event)
    record["hash"] = event.hash
    return record


def verify_chain(session: Session) -> int | None:
    """Recompute the chain; return the first ``seq`` that does not verify, or ``None``."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    for event in session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)):
        record = _record(event)
        if (
            event.seq != expected_seq
            or event.prev_hash != expected_prev
            or _hash(record) != event.hash
        ):
            return event.seq
        expected_prev, expected_seq = event.hash, event.seq + 1
    return None


def engine_events(
    session: Session,
    *,
    limit: int,
    after_seq: int | None,
    equals: Mapping[str, str],
    since: datetime | None,
    until: datetime | None,
) -> list[dict[str, Any]]:
    """A page of the ``events`` chain kept by ``aegis.engine.audit``'s SQL sink, in API form.

    ``action`` and the time bounds filter in SQL; ``actor_id``, ``target_id`` and ``outcome``
    live inside the hashed body and are filtered while scanning (at most 20 000 rows a call).
    """
    from aegis.engine.audit.sql import audit_records as table

    dialect = session.get_bind().dialect.name

    def bound(value: datetime) -> datetime:
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect == "sqlite" else value

    query = sa.select(table).where(table.c.chain == ENGINE_CHAIN).order_by(table.c.seq)
    if after_seq is not None:
        query = query.where(table.c.seq > after_seq)
    if "action" in equals:
        query = query.where(table.c.kind == equals["action"])
    if since is not None:
        query = query.where(table.c.time >= bound(since))
    if until is not None:
        query = query.where(table.c.time < bound(until))
    wanted = {k: v for k, v in equals.items() if k != "action"}
    out: list[dict[str, Any]] = []
    for row in session.execute(query.limit(20_000)):
        body = json.loads(row.body)
        data = body.get("data") or {}
        item = {
            "schema_version": body.get("schema_version", 1),
            "seq": row.seq,
            "at": body.get("time"),
            "action": row.kind,
            "outcome": data.get("outcome"),
            "actor_id": data.get("actor_id"),
            "target_id": data.get("target_id"),
            "address": data.get("address"),
            "request_id": data.get("request_id"),
            "details": data.get("details") or {},
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }
        if all(item.get(k) == v for k, v in wanted.items()):
            out.append(item)
            if len(out) >= limit:
                break
    return out
