"""Append-only JSON-lines audit sink: one chain per file, one canonical record per line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aegis.engine.audit._batching import BatchingSink, Mode, RecordRejected
from aegis.engine.audit._chain import ChainHead, Entry, VerifyResult, seal, verify
from aegis.engine.audit._files import HeadAnchor, append_durably, fsync_dir, locked
from aegis.engine.audit._record import (
    GENESIS_HASH,
    AuditRecordV1,
    canonical_json,
    check_chain_name,
)
from aegis.engine.errors import AuditError, AuditIntegrityError

__all__ = ["JsonlAuditSink", "JsonlSinkConfig", "factory", "head_path", "verify_jsonl"]

_log = logging.getLogger("aegis.audit")


class JsonlAuditSink(BatchingSink):
    """Appends records as canonical JSON lines to one file holding one chain.

    On open the sink recovers the chain head from the last two lines and refuses
    (:class:`AuditIntegrityError`) to extend a file whose tail does not verify. A torn last
    line (no newline: a crash in the middle of a write that was never acknowledged) is cut
    off with a warning. Each batch is written with one ``write`` on an ``O_APPEND``
    descriptor under an exclusive ``flock`` (so several processes may share the file) and
    fsynced before ``append`` returns.

    Args:
        path: the file; created with mode 0600 if missing.
        chain: the chain kept in the file; default: the file's chain, or ``"decisions"``
            for a new file. Appending a record of another chain raises :class:`AuditError`.
        mode: ``"sync"`` (default) or ``"async"``.
        fsync: fsync every batch (default). ``False`` survives a process crash, not a power
            loss.
        head_file: keep ``<path>.head`` with the chain head, rewritten after each batch, so
            that verification notices lines cut from the end by someone who left it alone
            (an external :class:`HeadAnchor` is what resists an informed intruder).
        spill_path: async spill file; default ``<path>.spill``.
        **options: see :class:`aegis.engine.audit._batching.BatchingSink`.

    Raises:
        AuditError: the file cannot be opened or holds another chain.
        AuditIntegrityError: the file's tail does not verify.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        chain: str | None = None,
        mode: Mode = "sync",
        fsync: bool = True,
        spill_path: str | os.PathLike[str] | None = None,
        head_file: bool = True,
        **options: Any,
    ) -> None:
        self.path = Path(path)
        self._head_path = head_path(self.path) if head_file else None
        if mode == "async" and spill_path is None:
            spill_path = self.path.with_name(self.path.name + ".spill")
        super().__init__(
            mode=mode, spill_path=None if spill_path is None else Path(spill_path), **options
        )
        self._fsync = fsync
        self._file_lock = threading.Lock()
        try:
            existed = self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            if not existed:
                fsync_dir(self.path)
        except OSError as exc:
            raise AuditError(f"cannot open audit file `{self.path}`: {exc.strerror}") from exc
        self.chain = check_chain_name(chain) if chain is not None else None
        try:
            with self._flock():
                self._recover()
        except BaseException:
            os.close(self._fd)
            raise
        self._start()

    def _flock(self) -> contextlib.AbstractContextManager[None]:
        return locked(self._fd)

    def _recover(self) -> None:
        """Read the head from the file's tail; cut a torn last line; refuse a bad tail."""
        size = os.fstat(self._fd).st_size
        tail = _read_tail(self._fd, size, 3)
        if tail and not tail[-1][1].endswith(b"\n"):
            cut = tail[-1][0]
            _log.warning("audit file %s: dropping a torn last line at byte %d", self.path, cut)
            os.ftruncate(self._fd, cut)
            os.fsync(self._fd)
            size = cut
            tail = tail[:-1]
        lines = tail[-2:]
        self._size = size
        if not lines:
            self.chain = self.chain or "decisions"
            self._head = ChainHead()
            self._check_head_file()
            return
        try:
            recs = [AuditRecordV1.from_json(line.decode("utf-8")) for _, line in lines]
        except (AuditError, UnicodeDecodeError) as exc:
            raise AuditIntegrityError(
                f"audit file `{self.path}` does not verify at its tail: {exc}"
            ) from exc
        last = recs[-1]
        if self.chain is None:
            self.chain = last.chain
        elif last.chain != self.chain:
            raise AuditError(
                f"audit file `{self.path}` holds chain `{last.chain}`, not `{self.chain}`"
            )
        prev = recs[0] if len(recs) == 2 else None
        problem = _tail_problem(last, prev)
        if problem is not None:
            raise AuditIntegrityError(
                f"audit file `{self.path}` does not verify at its tail ({problem}): "
                f"refusing to append"
            )
        assert last.seq is not None
        assert last.hash is not None
        self._head = ChainHead(last.seq, last.hash)
        self._check_head_file()

    def _check_head_file(self) -> None:
        """Refuse a file cut or rewritten behind our back (its head file is ahead of it).

        The head file may lag (it is not fsynced) but never runs ahead of durable records.
        """
        if self._head_path is None:
            return
        try:
            stored = _read_head_file(self._head_path)
        except AuditError as exc:
            raise AuditIntegrityError(f"{exc}: refusing to append") from exc
        if stored is None or stored[0] != self.chain:
            return
        recorded = stored[1]
        if recorded.seq > self._head.seq or (
            recorded.seq == self._head.seq and recorded.hash != self._head.hash
        ):
            raise AuditIntegrityError(
                f"audit file `{self.path}` ends at seq {self._head.seq} but its head file "
                f"records seq {recorded.seq}: the tail was cut or rewritten; refusing to append"
            )

    def _validate(self, record: AuditRecordV1) -> None:
        if record.chain != self.chain:
            raise AuditError(
                f"audit file `{self.path}` keeps chain `{self.chain}`, not `{record.chain}`"
            )

    def _write(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        for rec in records:
            if rec.chain != self.chain:  # validated at append; a spill may hold others
                raise RecordRejected(
                    f"audit file `{self.path}` keeps chain `{self.chain}`, not `{rec.chain}`"
                )
        with self._file_lock, self._flock():
            try:
                if os.fstat(self._fd).st_size != self._size:
                    self._recover()  # another process appended
                sealed, head = seal(records, self._head)
                data = "".join(r.to_json() + "\n" for r in sealed).encode("utf-8")
                try:
                    append_durably(self._fd, data, fsync=self._fsync)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, self._size)
                    raise
            except OSError as exc:
                raise AuditError(
                    f"cannot append to audit file `{self.path}`: {exc.strerror}"
                ) from exc
            self._size += len(data)
            self._head = head
            self._write_head_file(head)
        return sealed

    def _write_head_file(self, head: ChainHead) -> None:
        # After the data fsync, so the head file is never ahead of durable records; not
        # fsynced itself: after a crash it may lag, which verify accepts.
        if self._head_path is None:
            return
        data = canonical_json({"chain": self.chain, "seq": head.seq, "hash": head.hash}) + "\n"
        try:
            fd = os.open(self._head_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, data.encode(), 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        except OSError as exc:
            _log.error("cannot write audit head file %s: %s", self._head_path, exc.strerror)

    def _stored_ids(self, records: Sequence[AuditRecordV1]) -> set[str]:
        wanted = {r.id for r in records}
        found: set[str] = set()
        with self.path.open("rb") as fh:
            for line in fh:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    rid = json.loads(line)["id"]
                    if rid in wanted:
                        found.add(rid)
        return found

    def _close_backend(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def head(self, chain: str | None = None) -> ChainHead:
        """The last appended record's seq and hash (``ChainHead()`` for an empty file)."""
        with self._file_lock:
            return self._head

    def records(self) -> Iterator[AuditRecordV1]:
        """Parse the file's records in order.

        Raises:
            AuditError: a line does not parse.
        """
        with self.path.open("r", encoding="utf-8") as fh:
            for line in fh:
                yield AuditRecordV1.from_json(line)

    def verify(self, anchors: Mapping[str, ChainHead] | None = None) -> VerifyResult:
        """Verify the whole file (see :func:`verify_jsonl`)."""
        return verify_jsonl(self.path, anchors=anchors)


def _tail_problem(last: AuditRecordV1, prev: AuditRecordV1 | None) -> str | None:
    for rec in (prev, last):
        if rec is None:
            continue
        if rec.seq is None or rec.hash is None or rec.prev_hash is None:
            return "a record is not sealed"
        try:
            if rec.compute_hash() != rec.hash:
                return f"seq {rec.seq} does not match its hash"
        except AuditError as exc:
            return str(exc)
    assert last.seq is not None
    if prev is None:
        if last.seq != 1 or last.prev_hash != GENESIS_HASH:
            return "the only record is not a chain start"
        return None
    if prev.seq is None or last.seq != prev.seq + 1 or last.prev_hash != prev.hash:
        return f"seq {last.seq} does not follow the line before it"
    if prev.chain != last.chain:
        return "the last two lines belong to different chains"
    return None


def _read_tail(fd: int, size: int, count: int) -> list[tuple[int, bytes]]:
    """The last ``count`` lines of the file as (offset, bytes with newline)."""
    if size == 0:
        return []
    window = 64 * 1024
    while True:
        start = max(0, size - window)
        data = os.pread(fd, size - start, start)
        body = data if start == 0 else data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        offset = size - len(body)
        lines: list[tuple[int, bytes]] = []
        for line in body.splitlines(keepends=True):
            lines.append((offset, line))
            offset += len(line)
        if len(lines) > count or start == 0:
            return lines[-count:]
        window *= 4


def _entries(path: Path) -> Iterator[Entry]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            where = f"line {number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Entry(None, f"{where} is not UTF-8", where)
                continue
            if not text.endswith("\n"):
                yield Entry(None, f"{where} is torn (no newline)", where)
                continue
            try:
                rec = AuditRecordV1.from_json(text)
            except AuditError as exc:
                yield Entry(None, f"{where}: {exc}", where)
                continue
            if text != rec.to_json() + "\n":  # any byte edit counts, even a harmless one
                yield Entry(rec, f"{where} is not the canonical text of its record", where)
            else:
                yield Entry(rec, None, where)


def head_path(path: Path) -> Path:
    """The head file kept beside a JSON-lines audit file."""
    return path.with_name(path.name + ".head")


def _read_head_file(path: Path) -> tuple[str, ChainHead] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditError(f"cannot read audit head file `{path}`: {exc.strerror}") from exc
    try:
        raw = json.loads(text)
        return str(raw["chain"]), ChainHead(int(raw["seq"]), str(raw["hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"audit head file `{path}` is not a head entry") from exc


def verify_jsonl(
    path: str | os.PathLike[str],
    *,
    anchors: Mapping[str, ChainHead] | None = None,
    head_file: bool = True,
) -> VerifyResult:
    """Verify the chain kept in a JSON-lines audit file.

    Args:
        path: the file.
        anchors: heads published to an independent anchor (:class:`HeadAnchor`), by chain.
        head_file: also check the head recorded in ``<path>.head``, when it exists.

    Returns:
        The chain's :class:`VerifyResult`; its ``where`` names the offending line.

    Raises:
        AuditError: the file cannot be read.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            first = fh.readline()
    except OSError as exc:
        raise AuditError(f"cannot read audit file `{p}`: {exc.strerror}") from exc
    chain: str | None = None
    with contextlib.suppress(ValueError, TypeError, KeyError):
        chain = str(json.loads(first)["chain"])
    heads: list[ChainHead] = []
    stored = _read_head_file(head_path(p)) if head_file else None
    if stored is not None:
        chain = chain or stored[0]
        if stored[0] == chain:
            heads.append(stored[1])
    if chain is not None and chain in (anchors or {}):
        heads.append((anchors or {})[chain])
    try:
        return verify(_entries(p), chain=chain, anchor=heads)
    except OSError as exc:
        raise AuditError(f"cannot read audit file `{p}`: {exc.strerror}") from exc


class JsonlSinkConfig(BaseModel):
    """Configuration of the ``jsonl`` entry point."""

    model_config = ConfigDict(extra="forbid")
    path: Path
    chain: str | None = None
    mode: Mode = "sync"
    fsync: bool = True
    head_file: bool = True
    spill_path: Path | None = None
    anchor_path: Path | None = None
    anchor_interval: float = 60.0


class _Factory:
    config_model = JsonlSinkConfig

    def create(self, config: JsonlSinkConfig) -> JsonlAuditSink:
        return JsonlAuditSink(
            config.path,
            chain=config.chain,
            mode=config.mode,
            fsync=config.fsync,
            head_file=config.head_file,
            spill_path=config.spill_path,
            anchor=HeadAnchor(config.anchor_path) if config.anchor_path else None,
            anchor_interval=config.anchor_interval,
        )


factory = _Factory()
"""Entry point ``aegis.audit_sinks:jsonl``."""
