"""In-memory sink and the group-commit core shared by every sink."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from aegis.engine.audit import AuditRecordV1, MemoryAuditSink, event_record
from aegis.engine.errors import AuditError

Records = Callable[..., list[AuditRecordV1]]


class CountingSink(MemoryAuditSink):
    """Counts transactions, so a test can see that concurrent callers share them."""

    def __init__(self, *args: object, fail: bool = False, **kwargs: object) -> None:
        self.transactions = 0
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _write(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        self.gate.wait(10)
        self.transactions += 1
        if self.fail:
            raise RuntimeError("backend exploded")
        return super()._write(records)


def test_sync_append_returns_sealed_records(records: Records) -> None:
    sink = MemoryAuditSink()
    out = sink.append(records(2) + records(1, chain="events"))
    assert [(r.chain, r.seq) for r in out] == [("decisions", 1), ("decisions", 2), ("events", 1)]
    assert all(r.is_sealed for r in out)
    assert sink.head("decisions").seq == 2
    assert sink.chains() == ["decisions", "events"]
    assert all(r.ok for r in sink.verify().values())
    assert sink.append([]) == []


def test_sealed_input_is_resealed_by_the_sink(records: Records) -> None:
    sink = MemoryAuditSink()
    first = sink.append(records(1))
    again = sink.append([first[0]._clone(id="other")])
    assert again[0].seq == 2
    assert again[0].prev_hash == first[0].hash


def test_group_commit_shares_transactions_between_concurrent_callers() -> None:
    sink = CountingSink()
    sink.gate.clear()  # the first leader blocks inside its transaction ...
    threads = [
        threading.Thread(target=sink.append, args=([event_record("e", {"i": i})],))
        for i in range(32)
    ]
    for t in threads:
        t.start()
    while len(sink._pending) < 31:  # ... while the others queue up behind it
        threading.Event().wait(0.005)
    sink.gate.set()
    for t in threads:
        t.join(10)
    assert sink.head("events").seq == 32
    assert sink.transactions == 2  # the leader's own, then one for all 31 followers
    assert sink.verify()["events"].ok


def test_a_failing_backend_fails_every_caller_of_the_batch() -> None:
    sink = CountingSink(fail=True)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            sink.append([event_record("e", {})])
        except AuditError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(errors) == 8
    assert "backend exploded" in str(errors[0])


def test_close_waits_and_then_refuses(records: Records) -> None:
    sink = MemoryAuditSink()
    sink.append(records(1))
    sink.close()
    with pytest.raises(AuditError, match="closed"):
        sink.append(records(1))


def test_only_records_are_accepted() -> None:
    with pytest.raises(AuditError, match="AuditRecordV1"):
        MemoryAuditSink().append([{"id": "x"}])  # type: ignore[list-item]


def test_async_memory_sink_flushes_in_order(tmp_path: Path, records: Records) -> None:
    sink = MemoryAuditSink("async", spill_path=tmp_path / "spill.jsonl", max_batch=7)
    batch = records(40)
    for i in range(0, 40, 3):
        sink.append(batch[i : i + 3])
    sink.close()
    assert [r.id for r in sink.records("decisions")] == [r.id for r in batch]
    assert sink.status()["closed"]


def test_async_close_racing_appends_loses_nothing_accepted(tmp_path: Path) -> None:
    sink = MemoryAuditSink("async", spill_path=tmp_path / "spill.jsonl", queue_size=4)
    accepted: list[str] = []
    refused = threading.Event()

    def writer(k: int) -> None:
        i = 0
        while True:
            try:
                out = sink.append([event_record("e", {"k": k, "i": i})])
            except AuditError:
                refused.set()
                return
            accepted.append(out[0].id)
            i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    threading.Event().wait(0.05)
    sink.close()
    for t in threads:
        t.join(10)
    assert refused.is_set()
    assert sorted(r.id for r in sink.records("events")) == sorted(accepted)
    assert sink.verify()["events"].ok
