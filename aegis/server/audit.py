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

from aegis.server.db.models import AuditEvent

__all__ = ["GENESIS_HASH", "SCHEMA_VERSION", "append_event", "event_to_dict", "verify_chain"]

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
) -> AuditEvent:
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

    Returns:
        The new event.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    last = session.execute(
        sa.select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    event = AuditEvent(
        seq=seq,
        at=at.astimezone(UTC).replace(microsecond=at.microsecond),
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
    return event


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
