"""In-memory audit sink: for tests, examples and ``aegis.testing`` (habit H10)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aegis.engine.audit._batching import BatchingSink, Mode
from aegis.engine.audit._chain import ChainHead, VerifyResult, seal, verify
from aegis.engine.audit._record import AuditRecordV1, check_chain_name, group_by_chain

__all__ = ["MemoryAuditSink", "MemorySinkConfig", "factory"]


class MemoryAuditSink(BatchingSink):
    """Keeps every chain in a list; same chaining and modes as the durable sinks.

    Args:
        mode: ``"sync"`` (default) or ``"async"`` (then ``spill_path`` is required).
        **options: see :class:`aegis.engine.audit._batching.BatchingSink`.

    Usage::

        sink = MemoryAuditSink()
        sink.append([decision_record(decision, request)])
        assert sink.verify()["decisions"].ok
    """

    def __init__(self, mode: Mode = "sync", **options: Any) -> None:
        super().__init__(mode=mode, **options)
        self._chains: dict[str, list[AuditRecordV1]] = {}
        self._store_lock = threading.Lock()
        self._start()

    def _write(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        out: list[AuditRecordV1 | None] = [None] * len(records)
        with self._store_lock:
            for chain, idx in group_by_chain(records).items():
                check_chain_name(chain)
                stored = self._chains.setdefault(chain, [])
                head = (
                    ChainHead(stored[-1].seq or 0, stored[-1].hash or "") if stored else ChainHead()
                )
                sealed, _ = seal([records[i] for i in idx], head)
                stored.extend(sealed)
                for i, rec in zip(idx, sealed, strict=True):
                    out[i] = rec
        return [r for r in out if r is not None]

    def _stored_ids(self, records: Sequence[AuditRecordV1]) -> set[str]:
        wanted = {r.id for r in records}
        with self._store_lock:
            return {r.id for chain in self._chains.values() for r in chain if r.id in wanted}

    def records(self, chain: str) -> list[AuditRecordV1]:
        """The sealed records of ``chain``, oldest first (a copy)."""
        with self._store_lock:
            return list(self._chains.get(chain, ()))

    def chains(self) -> list[str]:
        """Names of the chains held, sorted."""
        with self._store_lock:
            return sorted(self._chains)

    def head(self, chain: str) -> ChainHead:
        """The last record's seq and hash (``ChainHead()`` for an empty chain)."""
        with self._store_lock:
            stored = self._chains.get(chain)
            if not stored:
                return ChainHead()
            last = stored[-1]
            assert last.seq is not None
            assert last.hash is not None
            return ChainHead(last.seq, last.hash)

    def verify(self) -> dict[str, VerifyResult]:
        """Verify every chain held."""
        return {chain: verify(self.records(chain), chain=chain) for chain in self.chains()}


class MemorySinkConfig(BaseModel):
    """Configuration of the ``memory`` entry point."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = "sync"
    spill_path: Path | None = None


class _Factory:
    config_model = MemorySinkConfig

    def create(self, config: MemorySinkConfig) -> MemoryAuditSink:
        return MemoryAuditSink(config.mode, spill_path=config.spill_path)


factory = _Factory()
"""Entry point ``aegis.audit_sinks:memory``."""
