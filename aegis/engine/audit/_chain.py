"""Hash chaining and chain verification (AUD-2, AUD-3)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from aegis.engine.audit._record import GENESIS_HASH, AuditRecordV1
from aegis.engine.errors import AuditError

__all__ = ["ChainHead", "Entry", "Problem", "VerifyResult", "seal", "verify"]

Problem = Literal["changed", "deleted", "inserted", "reordered", "truncated"]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record of a chain: its ``seq`` (0 for an empty chain) and ``hash``."""

    seq: int = 0
    hash: str = GENESIS_HASH


def seal(
    records: Iterable[AuditRecordV1], head: ChainHead
) -> tuple[list[AuditRecordV1], ChainHead]:
    """Chain ``records`` after ``head``: give each its ``seq``, ``prev_hash`` and ``hash``.

    Returns:
        The sealed records and the new head.
    """
    out: list[AuditRecordV1] = []
    seq, prev = head.seq, head.hash
    for rec in records:
        seq += 1
        sealed = rec.sealed(seq, prev)
        assert sealed.hash is not None
        prev = sealed.hash
        out.append(sealed)
    return out, ChainHead(seq, prev)


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored record as a reader found it, for :func:`verify`.

    Attributes:
        record: the parsed record, or ``None`` when the stored data did not parse.
        problem: why the stored data is wrong even before chain checks (unparseable line,
            a database column that disagrees with the hashed body), or ``None``.
        where: where it is stored (``"line 7"``, ``"row seq=7"``), for messages.
    """

    record: AuditRecordV1 | None
    problem: str | None = None
    where: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of :func:`verify` on one chain.

    Attributes:
        ok: the chain verifies (and matches the anchor, when one was given).
        checked: records verified before the first bad one (all of them when ``ok``).
        first_bad_seq: every record with a lower ``seq`` verified; ``None`` when ``ok``.
        reason: what is wrong, one sentence (``None`` when ``ok``).
        problem: ``"changed"``, ``"deleted"``, ``"inserted"``, ``"reordered"`` or
            ``"truncated"``; ``None`` when ``ok``.
        bad_id: id of the offending stored record, when there is one.
        where: where the offending record is stored (``"line 9"``), when known.
        chain: the chain's name, when known.
        head: the last verified record's ``seq`` and ``hash``.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    problem: Problem | None = None
    bad_id: str | None = None
    where: str | None = None
    chain: str | None = None
    head: ChainHead = ChainHead()


def _entries(records: Iterable[AuditRecordV1 | Entry]) -> Iterator[Entry]:
    for item in records:
        yield item if isinstance(item, Entry) else Entry(item)


def verify(
    records: Iterable[AuditRecordV1 | Entry],
    *,
    chain: str | None = None,
    anchor: ChainHead | Sequence[ChainHead] | None = None,
) -> VerifyResult:
    """Recompute one chain and name the first bad record.

    ``records`` must be in storage order (file order, or ``ORDER BY seq``). Position *i*
    must hold seq *i* whose ``prev_hash`` is the hash of seq *i-1* and whose ``hash`` matches
    its content. The first position where that fails is classified:

    * **changed** — content does not match its hash, or (when a record was edited and
      re-hashed) the next record no longer links to it; then the edited record is named;
    * **deleted** — a seq is missing and never appears later;
    * **reordered** — a seq is missing here but appears later;
    * **inserted** — a seq appears twice, or a record claims a seq already passed;
    * **truncated** — the chain ends before the head recorded in ``anchor`` (AUD-3), or its
      record at the anchored seq has another hash.

    Args:
        records: the stored records (or :class:`Entry` from a reader), in storage order.
        chain: when given, every record must belong to this chain.
        anchor: heads published earlier (to an independent sink, or the store's own head
            table): each must still be in the chain, which detects tail truncation.

    Returns:
        A :class:`VerifyResult`; ``verify`` raises nothing for bad data.
    """
    expected = 1
    prev_hash = GENESIS_HASH
    checked = 0
    anchors = [] if anchor is None else [anchor] if isinstance(anchor, ChainHead) else list(anchor)
    anchored = {a.seq for a in anchors if a.seq > 0}
    seen_at: dict[int, str] = {}
    it = _entries(records)

    def bad(seq: int, problem: Problem, reason: str, entry: Entry | None = None) -> VerifyResult:
        rec = entry.record if entry is not None else None
        return VerifyResult(
            ok=False,
            checked=checked,
            first_bad_seq=seq,
            reason=reason,
            problem=problem,
            bad_id=rec.id if rec is not None else None,
            where=entry.where if entry is not None else None,
            chain=chain,
            head=ChainHead(expected - 1, prev_hash),
        )

    for entry in it:
        rec = entry.record
        if entry.problem is not None or rec is None:
            return bad(expected, "changed", entry.problem or "record does not parse", entry)
        if chain is None:
            chain = rec.chain
        elif rec.chain != chain:
            return bad(expected, "changed", f"record belongs to chain `{rec.chain}`", entry)
        if rec.seq is None or rec.hash is None or rec.prev_hash is None:
            return bad(expected, "changed", "record has no seq, prev_hash or hash", entry)
        if rec.seq == expected:
            try:
                actual = rec.compute_hash()
            except AuditError as exc:
                return bad(expected, "changed", str(exc), entry)
            if actual != rec.hash:
                return bad(
                    expected, "changed", f"seq {expected}: content does not match its hash", entry
                )
            if rec.prev_hash != prev_hash:
                if expected == 1:
                    return bad(1, "changed", "seq 1 does not start from the genesis hash", entry)
                return bad(
                    expected - 1,
                    "changed",
                    f"seq {expected} does not link to seq {expected - 1}: seq {expected - 1} "
                    f"was replaced and re-hashed, or this link was altered",
                    entry,
                )
            if rec.seq in anchored:
                seen_at[rec.seq] = rec.hash
            prev_hash = rec.hash
            expected += 1
            checked += 1
            continue
        if rec.seq > expected:
            later = {e.record.seq for e in it if e.record is not None}
            if expected in later:
                return bad(
                    expected,
                    "reordered",
                    f"seq {rec.seq} is stored before seq {expected}",
                    entry,
                )
            last_missing = rec.seq - 1
            span = (
                f"seq {expected}" if last_missing == expected else f"seq {expected}-{last_missing}"
            )
            gone = bad(expected, "deleted", f"{span} missing before seq {rec.seq}", entry)
            return dataclasses.replace(gone, bad_id=None)  # the record is gone
        if rec.seq == expected - 1 and expected > 1:
            return bad(rec.seq, "inserted", f"seq {rec.seq} appears twice", entry)
        return bad(
            expected,
            "inserted",
            f"a record claiming seq {rec.seq} stands where seq {expected} belongs",
            entry,
        )

    head = ChainHead(expected - 1, prev_hash)
    for a in sorted(anchors, key=lambda x: x.seq):
        if a.seq <= 0:
            continue
        if head.seq < a.seq:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_seq=head.seq + 1,
                reason=(
                    f"chain ends at seq {head.seq} but its head was recorded at seq {a.seq}: "
                    f"records were removed from the tail"
                ),
                problem="truncated",
                chain=chain,
                head=head,
            )
        if seen_at.get(a.seq) != a.hash:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_seq=a.seq,
                reason=f"seq {a.seq} differs from the recorded head: the chain was rewritten",
                problem="changed",
                chain=chain,
                head=head,
            )
    return VerifyResult(ok=True, checked=checked, chain=chain, head=head)
