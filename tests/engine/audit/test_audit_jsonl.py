"""JSON-lines sink: head recovery, refusing a bad tail, tampering with lines (AUD-2)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.engine.audit import AuditRecordV1, JsonlAuditSink, verify_jsonl
from aegis.engine.errors import AuditError, AuditIntegrityError

Records = Callable[..., list[AuditRecordV1]]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def write(path: Path, content: list[str]) -> None:
    path.write_text("".join(content), encoding="utf-8")


@pytest.fixture
def audit_file(tmp_path: Path, records: Records) -> Path:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditSink(path) as sink:
        sink.append(records(6))
    return path


def test_each_line_is_one_canonical_record(audit_file: Path) -> None:
    raw = lines(audit_file)
    assert len(raw) == 6
    recs = [AuditRecordV1.from_json(x) for x in raw]
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5, 6]
    assert all(x == r.to_json() + "\n" for x, r in zip(raw, recs, strict=True))
    assert verify_jsonl(audit_file).ok
    assert oct(audit_file.stat().st_mode & 0o777) == "0o600"


def test_reopen_recovers_the_head(audit_file: Path, records: Records) -> None:
    with JsonlAuditSink(audit_file) as sink:
        assert sink.head().seq == 6
        assert sink.chain == "decisions"
        out = sink.append(records(2))
    assert [r.seq for r in out] == [7, 8]
    result = verify_jsonl(audit_file)
    assert (result.ok, result.checked) == (True, 8)


def test_one_chain_per_file(audit_file: Path, records: Records) -> None:
    with pytest.raises(AuditError, match="holds chain `decisions`"):
        JsonlAuditSink(audit_file, chain="events")
    with JsonlAuditSink(audit_file) as sink, pytest.raises(AuditError, match="keeps chain"):
        sink.append(records(1, chain="events"))


def test_torn_last_line_is_cut_on_reopen(audit_file: Path, records: Records) -> None:
    with audit_file.open("a", encoding="utf-8") as fh:
        fh.write('{"allow":[],"chain":"deci')  # a crash in the middle of a write
    with JsonlAuditSink(audit_file) as sink:
        assert sink.append(records(1))[0].seq == 7
    assert verify_jsonl(audit_file).ok


def test_AUD2_refuses_to_append_after_a_bad_tail(audit_file: Path) -> None:
    content = lines(audit_file)
    content[-1] = content[-1].replace("api-5", "api-X")
    write(audit_file, content)
    with pytest.raises(AuditIntegrityError, match="does not verify at its tail"):
        JsonlAuditSink(audit_file)
    content = lines(audit_file)
    write(audit_file, content[:-2] + content[-1:])  # last line no longer follows
    with pytest.raises(AuditIntegrityError):
        JsonlAuditSink(audit_file)


def test_AUD2_edited_line_is_named(audit_file: Path) -> None:
    content = lines(audit_file)
    content[2] = content[2].replace('"decision":"DENY"', '"decision":"ALLOW"')
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.ok, result.problem, result.first_bad_seq, result.where) == (
        False,
        "changed",
        3,
        "line 3",
    )


def test_AUD2_deleted_line_is_named(audit_file: Path) -> None:
    content = lines(audit_file)
    del content[3]
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.problem, result.first_bad_seq, result.where) == ("deleted", 4, "line 4")


def test_AUD2_inserted_line_is_named(audit_file: Path) -> None:
    content = lines(audit_file)
    content.insert(4, content[1])
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.problem, result.first_bad_seq, result.where) == ("inserted", 5, "line 5")


def test_AUD2_inserted_garbage_line_is_named(audit_file: Path) -> None:
    content = lines(audit_file)
    content.insert(2, "not json at all\n")
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.problem, result.first_bad_seq, result.where) == ("changed", 3, "line 3")


def test_AUD2_swapped_lines_are_named(audit_file: Path) -> None:
    content = lines(audit_file)
    content[1], content[2] = content[2], content[1]
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.problem, result.first_bad_seq, result.where) == ("reordered", 2, "line 2")


def test_AUD2_rewritten_and_rehashed_line_is_named(audit_file: Path) -> None:
    content = lines(audit_file)
    rec = AuditRecordV1.from_json(content[3])
    prev = AuditRecordV1.from_json(content[2])
    forged = rec._clone(reason="forged").sealed(4, prev.hash or "")
    content[3] = forged.to_json() + "\n"
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.problem, result.first_bad_seq) == ("changed", 4)


def test_two_sinks_on_one_file_interleave_safely(tmp_path: Path, records: Records) -> None:
    path = tmp_path / "shared.jsonl"
    sinks = [JsonlAuditSink(path), JsonlAuditSink(path)]

    def writer(k: int) -> None:
        for i in range(20):
            sinks[k % 2].append(records(1, start=k * 100 + i))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in sinks:
        s.close()
    result = verify_jsonl(path)
    assert (result.ok, result.checked) == (True, 120)


def test_async_mode_flushes_on_close(tmp_path: Path, records: Records) -> None:
    path = tmp_path / "async.jsonl"
    sink = JsonlAuditSink(path, mode="async")
    for i in range(50):
        returned = sink.append(records(2, start=2 * i))
        assert returned[0].seq is None  # accepted, not yet sealed
    sink.close()
    result = verify_jsonl(path)
    assert (result.ok, result.checked) == (True, 100)
    ids = [json.loads(x)["id"] for x in lines(path)]
    assert len(set(ids)) == 100


def test_unreadable_file_is_an_audit_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot read audit file"):
        verify_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(AuditError, match="cannot open audit file"):
        JsonlAuditSink(tmp_path)  # a directory


def test_AUD2_even_a_harmless_byte_edit_is_named(audit_file: Path) -> None:
    content = lines(audit_file)
    content[1] = content[1].replace('{"allow":', '{ "allow":', 1)  # same JSON value
    write(audit_file, content)
    result = verify_jsonl(audit_file)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 2)
    assert "canonical" in (result.reason or "")


def test_lone_surrogates_are_replaced_so_records_stay_writable(
    tmp_path: Path, records: Records
) -> None:
    from aegis.engine.audit import decision_record

    request = json.loads('{"principal": {"id": "\\ud800x", "\\udfff": 1}, "action": "a"}')
    rec = decision_record({"decision": "DENY", "reason": "r", "version": "v"}, request)
    path = tmp_path / "s.jsonl"
    with JsonlAuditSink(path) as sink:
        out = sink.append([rec])
    assert out[0].request == {"principal": {"id": "\ufffdx", "\ufffd": 1}, "action": "a"}
    assert verify_jsonl(path).ok


def test_AUD2_deleted_last_line_is_caught_by_the_head_file(audit_file: Path) -> None:
    content = lines(audit_file)
    write(audit_file, content[:-1])
    result = verify_jsonl(audit_file)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "truncated", 6)
    write(audit_file, [])
    emptied = verify_jsonl(audit_file)
    assert (emptied.ok, emptied.problem, emptied.chain) == (False, "truncated", "decisions")
    assert verify_jsonl(audit_file, head_file=False).ok


def test_head_file_is_rewritten_per_batch(tmp_path: Path, records: Records) -> None:
    path = tmp_path / "h.jsonl"
    with JsonlAuditSink(path) as sink:
        sink.append(records(2))
        sink.append(records(3))
    head = json.loads((tmp_path / "h.jsonl.head").read_text())
    assert head["seq"] == 5
    assert head["hash"] == AuditRecordV1.from_json(lines(path)[-1]).hash
    (tmp_path / "h.jsonl.head").write_text("garbage")
    with pytest.raises(AuditError, match="not a head entry"):
        verify_jsonl(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    op=st.sampled_from(["edit", "delete", "insert", "swap", "truncate"]),
    i=st.integers(0, 7),
    j=st.integers(0, 7),
)
def test_AUD2_any_line_tampering_is_detected(
    tmp_path: Path, records: Records, op: str, i: int, j: int
) -> None:
    path = tmp_path / f"{op}-{i}-{j}.jsonl"
    with JsonlAuditSink(path) as sink:
        sink.append(records(8))
    content = lines(path)
    if op == "edit":
        content[i] = content[i].replace('"kind":"decision"', '"kind":"decisioN"')
    elif op == "delete":
        del content[i]
    elif op == "insert":
        content.insert(i, content[j])
    elif op == "swap":
        if i == j:
            j = (i + 1) % 8
        content[i], content[j] = content[j], content[i]
    else:
        content = content[:i]
    write(path, content)
    result = verify_jsonl(path)
    assert not result.ok
    assert result.first_bad_seq is not None
    # the first bad seq is at, or (for a duplicated neighbour) just before, the tampered line
    assert result.first_bad_seq <= (min(i, j) if op == "swap" else i) + 1


def test_AUD2_reopening_a_file_cut_behind_its_head_file_is_refused(
    audit_file: Path, records: Records
) -> None:
    content = lines(audit_file)
    write(audit_file, content[:-1])
    with pytest.raises(AuditIntegrityError, match="tail was cut or rewritten"):
        JsonlAuditSink(audit_file)
    write(audit_file, [])
    with pytest.raises(AuditIntegrityError):
        JsonlAuditSink(audit_file)


def test_a_lagging_head_file_is_accepted(audit_file: Path, records: Records) -> None:
    head = audit_file.with_name(audit_file.name + ".head")
    first = AuditRecordV1.from_json(lines(audit_file)[0])
    head.write_text(json.dumps({"chain": "decisions", "seq": 1, "hash": first.hash}) + "\n")
    with JsonlAuditSink(audit_file) as sink:  # after a crash the head file may lag
        assert sink.append(records(1))[0].seq == 7
    assert verify_jsonl(audit_file).ok
