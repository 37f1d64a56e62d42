"""verify(): names the first bad record for every kind of tampering (AUD-2, AUD-3)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine.audit import (
    GENESIS_HASH,
    AuditRecordV1,
    ChainHead,
    Entry,
    event_record,
    seal,
    verify,
)


def chain(n: int) -> list[AuditRecordV1]:
    sealed, _ = seal([event_record("e", {"i": i}) for i in range(n)], ChainHead())
    return sealed


def test_AUD2_intact_chain_verifies_and_reports_head() -> None:
    recs = chain(5)
    result = verify(recs)
    assert result.ok
    assert result.checked == 5
    assert result.head == ChainHead(5, recs[-1].hash or "")
    assert recs[0].prev_hash == GENESIS_HASH
    assert verify([]).ok


def test_seal_continues_from_a_head() -> None:
    first, head = seal([event_record("e", {})], ChainHead())
    more, head2 = seal([event_record("e", {}), event_record("e", {})], head)
    assert [r.seq for r in more] == [2, 3]
    assert more[0].prev_hash == first[0].hash
    assert verify(first + more).ok
    assert head2.seq == 3


def test_AUD2_changed_content_is_named() -> None:
    recs = chain(6)
    recs[3] = recs[3]._clone(data={"i": 999})
    result = verify(recs)
    assert (result.ok, result.problem, result.first_bad_seq, result.checked) == (
        False,
        "changed",
        4,
        3,
    )
    assert result.bad_id == recs[3].id


def test_AUD2_changed_and_rehashed_names_the_rewritten_record() -> None:
    recs = chain(6)
    recs[2] = recs[2]._clone(data={"i": 999}).sealed(3, recs[1].hash or "")
    result = verify(recs)
    assert (result.problem, result.first_bad_seq) == ("changed", 3)
    assert "seq 4 does not link to seq 3" in (result.reason or "")


def test_AUD2_deleted_record_is_named() -> None:
    recs = chain(6)
    del recs[2]
    result = verify(recs)
    assert (result.problem, result.first_bad_seq) == ("deleted", 3)
    assert "seq 3 missing" in (result.reason or "")


def test_AUD2_deleted_first_record() -> None:
    recs = chain(3)[1:]
    result = verify(recs)
    assert (result.problem, result.first_bad_seq) == ("deleted", 1)


def test_AUD2_swapped_records_are_reordered() -> None:
    recs = chain(6)
    recs[1], recs[4] = recs[4], recs[1]
    result = verify(recs)
    assert (result.problem, result.first_bad_seq) == ("reordered", 2)


def test_AUD2_duplicated_record_is_inserted() -> None:
    recs = chain(5)
    recs.insert(3, recs[1])
    result = verify(recs)
    assert (result.problem, result.first_bad_seq) == ("inserted", 4)


def test_AUD2_forged_record_fitted_into_the_chain_is_inserted() -> None:
    recs = chain(5)
    forged = event_record("e", {"forged": True}).sealed(3, recs[1].hash or "")
    recs.insert(2, forged)  # a valid seq 3 linked to seq 2; the real seq 3 follows it
    result = verify(recs)
    assert (result.problem, result.first_bad_seq) == ("inserted", 3)
    assert "seq 3 appears twice" in (result.reason or "")


def test_AUD2_record_of_another_chain_is_flagged() -> None:
    recs = chain(3)
    other = AuditRecordV1(id=str(uuid.uuid4()), time=recs[0].time, chain="x", kind="e")
    recs.append(other.sealed(4, recs[-1].hash or ""))
    result = verify(recs, chain="events")
    assert (result.problem, result.first_bad_seq) == ("changed", 4)


def test_unparseable_entry_is_changed_and_located() -> None:
    recs: list[AuditRecordV1 | Entry] = list(chain(3))
    recs.insert(1, Entry(None, "line 2 is not valid JSON", "line 2"))
    result = verify(recs)
    assert (result.problem, result.first_bad_seq, result.where) == ("changed", 2, "line 2")


def test_AUD3_tail_truncation_is_detected_only_with_an_anchor() -> None:
    recs = chain(8)
    anchor = ChainHead(8, recs[-1].hash or "")
    assert verify(recs[:5]).ok  # a chain cannot prove its own tail
    result = verify(recs[:5], anchor=anchor)
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "truncated", 6)
    assert verify(recs, anchor=anchor).ok
    assert verify(recs + chain(0), anchor=ChainHead(4, recs[3].hash or "")).ok  # older anchor


def test_AUD3_rewritten_chain_differs_from_anchor() -> None:
    recs = chain(4)
    rewritten = chain(4)  # same length, other content: a re-chained history
    result = verify(rewritten, anchor=ChainHead(4, recs[-1].hash or ""))
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 4)


Tamper = Callable[[list[AuditRecordV1], int, int], tuple[str, int]]


def _change(recs: list[AuditRecordV1], i: int, _j: int) -> tuple[str, int]:
    recs[i] = recs[i]._clone(data={"tampered": True})
    return "changed", i + 1


def _delete(recs: list[AuditRecordV1], i: int, _j: int) -> tuple[str, int]:
    del recs[i]
    return "deleted", i + 1


def _swap(recs: list[AuditRecordV1], i: int, j: int) -> tuple[str, int]:
    recs[i], recs[j] = recs[j], recs[i]
    return "reordered", min(i, j) + 1


def _insert_copy(recs: list[AuditRecordV1], i: int, j: int) -> tuple[str, int]:
    # a copy of an earlier-or-equal record placed after position i
    src = min(i, j)
    recs.insert(i + 1, recs[src])
    return "inserted", i + 2 if src < i else i + 1


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(2, 30),
    data=st.data(),
    tamper=st.sampled_from([_change, _delete, _swap, _insert_copy]),
)
def test_AUD2_every_tampering_is_detected_at_the_first_bad_seq(
    n: int, data: st.DataObject, tamper: Tamper
) -> None:
    recs = chain(n)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i or tamper is not _swap))
    if tamper is _delete and i == n - 1:
        i = n - 2  # deleting the last record is truncation: see the anchor tests
    problem, first_bad = tamper(recs, i, j)
    result = verify(recs)
    assert not result.ok
    assert result.problem == problem
    assert result.first_bad_seq == first_bad
    assert result.checked == first_bad - 1 or problem == "inserted"


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_chains(n: int) -> None:
    assert verify(chain(n)).ok
