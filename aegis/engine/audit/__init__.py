"""Tamper-evident audit records: the ``AuditSink`` protocol, ``AuditRecordV1`` and backends.

A record is built unsealed (:func:`decision_record`, :func:`event_record`) and handed to a
sink, which chains it: ``seq`` (gapless per chain), ``prev_hash`` and
``hash = sha256(prev_hash ‖ canonical_json(record without hash))`` (AUD-2). Backends:
:class:`MemoryAuditSink`, :class:`JsonlAuditSink`, and ``aegis.engine.audit.sql.SqlAuditSink``
(SQLite/PostgreSQL; imported on demand because it needs SQLAlchemy). :func:`open_sink` maps
a URL (``jsonl:PATH``, ``memory:``, a SQLAlchemy URL) to a sink; :func:`verify` checks a
chain and names the first bad record. See ``docs/audit.md``.

Usage::

    from aegis.engine.audit import decision_record, open_sink

    sink = open_sink("sqlite:///audit.db")           # sync: durable on return
    sink.append([decision_record(decision, request)])
    sink.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from aegis.engine.audit._batching import BatchingSink, Mode, RecordRejected
from aegis.engine.audit._chain import ChainHead, Entry, VerifyResult, seal, verify
from aegis.engine.audit._cli import open_sink, verify_url
from aegis.engine.audit._files import HeadAnchor
from aegis.engine.audit._record import (
    DEFAULT_SENSITIVE_KEYS,
    GENESIS_HASH,
    AuditRecordV1,
    Masker,
    canonical_json,
    decision_record,
    event_record,
)
from aegis.engine.audit.jsonl import JsonlAuditSink, verify_jsonl
from aegis.engine.audit.memory import MemoryAuditSink

__all__ = [
    "DEFAULT_SENSITIVE_KEYS",
    "GENESIS_HASH",
    "AuditRecordV1",
    "AuditSink",
    "BatchingSink",
    "ChainHead",
    "Entry",
    "HeadAnchor",
    "JsonlAuditSink",
    "Masker",
    "MemoryAuditSink",
    "Mode",
    "RecordRejected",
    "VerifyResult",
    "canonical_json",
    "decision_record",
    "event_record",
    "open_sink",
    "seal",
    "verify",
    "verify_jsonl",
    "verify_url",
]


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go (habit H10: a small protocol with a written contract).

    Contract:

    * ``append(records)`` appends records, each to the chain named by its ``chain`` field,
      in the given order, and returns them. Records are given *unsealed* (``seq``,
      ``prev_hash``, ``hash`` unset — set ones are ignored); the sink assigns ``seq``
      (gapless, from 1, per chain) and computes the hashes *at the store*, under the
      chain's writer lock, so several processes may share a store.
      In ``sync`` mode it returns the sealed records once they are durable (committed and
      fsynced); concurrent callers may share one transaction (group commit). In ``async``
      mode it returns the records unsealed once queued; they are written later, in order.
      Appending is not idempotent: two calls append two records, even with equal content
      (ids are unique; a store may reject a repeated id with :class:`AuditError`).
      Thread-safe. Raises :class:`aegis.engine.errors.AuditError` when the records could
      not be made durable (sync) or queued (async) — the caller must then treat the
      audited operation as failed if it is fail-closed (AUD-5).
    * ``close()`` flushes everything queued, then releases resources. Idempotent; no
      record accepted by ``append`` is lost by a clean close (async records that cannot
      reach the store stay in the spill file). ``append`` after ``close`` raises
      :class:`AuditError`.
    """

    def append(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        """Append ``records``; see the class docstring for the contract."""

    def close(self) -> None:
        """Flush and release; see the class docstring for the contract."""
