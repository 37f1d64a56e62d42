"""The spill file (async mode) and the head anchor, as files several processes share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aegis.engine.audit import AuditRecordV1, ChainHead, HeadAnchor
from aegis.engine.audit._files import SpillFile
from aegis.engine.errors import AuditError

Records = Callable[..., list[AuditRecordV1]]


def test_spill_keeps_order_and_survives_a_torn_append(tmp_path: Path, records: Records) -> None:
    spill = SpillFile(tmp_path / "s.jsonl")
    first, second = records(3), records(2, start=3)
    spill.append(first)
    with spill.path.open("ab") as fh:
        fh.write(b'{"allow":[],"cha')  # a process died in the middle of an append
    spill.append(second)  # starts on a fresh line, so its records stay intact
    got, _ = spill.read()
    assert [r.id for r in got] == [r.id for r in first + second]


def test_spill_clear_keeps_records_appended_after_the_read(
    tmp_path: Path, records: Records
) -> None:
    spill = SpillFile(tmp_path / "s.jsonl")
    spill.append(records(2))
    got, replayed = spill.read()
    assert len(got) == 2
    late = records(1, start=2)
    spill.append(late)  # another process spills while this one replays
    spill.clear(replayed)
    assert [r.id for r in spill.read()[0]] == [late[0].id]


def test_spill_clear_after_someone_else_replayed_drops_nothing(
    tmp_path: Path, records: Records
) -> None:
    spill = SpillFile(tmp_path / "s.jsonl")
    spill.append(records(2))
    _, mine = spill.read()
    _, theirs = spill.read()
    spill.clear(theirs)  # the other process replayed first ...
    newer = records(1, start=5)
    spill.append(newer)  # ... and new records arrived
    spill.clear(mine)  # this one must not drop them
    assert [r.id for r in spill.read()[0]] == [newer[0].id]
    assert not SpillFile(tmp_path / "none.jsonl").pending()
    assert SpillFile(tmp_path / "none.jsonl").read() == ([], b"")


def test_anchor_keeps_the_highest_head_per_chain(tmp_path: Path) -> None:
    anchor = HeadAnchor(tmp_path / "anchor.jsonl")
    anchor.publish("decisions", ChainHead(3, "aa" * 32))
    anchor.publish("events", ChainHead(1, "bb" * 32))
    anchor.publish("decisions", ChainHead(5, "cc" * 32))
    assert anchor.latest() == {
        "decisions": ChainHead(5, "cc" * 32),
        "events": ChainHead(1, "bb" * 32),
    }
    (tmp_path / "anchor.jsonl").write_text("nonsense\n")
    with pytest.raises(AuditError, match="line 1 is not an anchor entry"):
        anchor.latest()
