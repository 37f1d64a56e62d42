"""Small durable files: the head anchor (AUD-3) and the async spill file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from aegis.engine.audit._chain import ChainHead
from aegis.engine.audit._record import AuditRecordV1, canonical_json, utc_timestamp
from aegis.engine.errors import AuditError

__all__ = ["HeadAnchor", "SpillFile", "append_durably", "fsync_dir", "locked"]

_log = logging.getLogger("aegis.audit")


def fsync_dir(path: Path) -> None:
    """fsync the directory holding ``path`` so a newly created file survives a crash."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(fd: int) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``fd`` (several processes may share the file).

    Without ``fcntl`` (Windows) there is no OS lock: one process per file there.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _open_append(path: Path) -> int:
    existed = path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    if not existed:
        fsync_dir(path)
    return fd


def append_durably(fd: int, data: bytes, *, fsync: bool = True) -> None:
    """Write all of ``data`` to an ``O_APPEND`` descriptor, then fsync it."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    if fsync:
        os.fsync(fd)


class HeadAnchor:
    """An independent JSON-lines file where chain heads are published (AUD-3).

    A hash chain stored only in the database it protects cannot prove its own tail: whoever
    can delete the last rows leaves a shorter chain that still verifies. Sinks given an anchor
    append ``{"chain", "seq", "hash", "time"}`` here after commits (at most every
    ``anchor_interval`` seconds, and on close); ``aegis audit verify --anchor FILE`` compares
    the stored chains with the last head published for each. Keep the file on another
    machine or volume than the database (or ship it to a log collector) for it to count.

    Args:
        path: the anchor file (created if missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def publish(self, chain: str, head: ChainHead) -> None:
        """Append one head, durably.

        Raises:
            AuditError: the file cannot be written.
        """
        line = canonical_json(
            {"chain": chain, "seq": head.seq, "hash": head.hash, "time": utc_timestamp()}
        )
        try:
            with self._lock:
                fd = _open_append(self.path)
                try:
                    with locked(fd):
                        append_durably(fd, (line + "\n").encode())
                finally:
                    os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write audit anchor `{self.path}`: {exc.strerror}") from exc

    def latest(self) -> dict[str, ChainHead]:
        """The highest head published for each chain.

        Raises:
            AuditError: the file cannot be read or a line is not an anchor entry.
        """
        heads: dict[str, ChainHead] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditError(f"cannot read audit anchor `{self.path}`: {exc.strerror}") from exc
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                chain, seq, digest = str(raw["chain"]), int(raw["seq"]), str(raw["hash"])
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditError(
                    f"audit anchor `{self.path}` line {number} is not an anchor entry"
                ) from exc
            if chain not in heads or seq >= heads[chain].seq:
                heads[chain] = ChainHead(seq, digest)
        return heads


class SpillFile:
    """Local JSON-lines file holding unsealed records while the store is down (async mode).

    Records are appended in order and fsynced; :meth:`read` returns them in the same order,
    dropping a torn last line (a crash mid-append of records never acknowledged as durable).
    Only the sink's writer thread uses it; a file lock keeps two processes apart.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def pending(self) -> bool:
        """Whether the file holds records waiting for replay."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def append(self, records: Sequence[AuditRecordV1]) -> None:
        """Append records durably.

        Raises:
            AuditError: the file cannot be written.
        """
        data = "".join(r.unsealed().to_json() + "\n" for r in records).encode()
        try:
            fd = _open_append(self.path)
            try:
                with locked(fd):
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        data = b"\n" + data  # end a torn line left by a crash, alone
                    append_durably(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(
                f"cannot write audit spill file `{self.path}`: {exc.strerror}"
            ) from exc

    def read(self) -> tuple[list[AuditRecordV1], bytes]:
        """Every complete spilled record, oldest first, and the bytes they were read from.

        Pass the bytes to :meth:`clear`: records another process appended meanwhile are
        kept. A line that is not a record (the remains of a torn write) is skipped with an
        error log.

        Raises:
            AuditError: the file cannot be read.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return [], b""
        except OSError as exc:
            raise AuditError(f"cannot read audit spill file `{self.path}`: {exc.strerror}") from exc
        try:
            with locked(fd):
                size = os.fstat(fd).st_size
                data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        consumed = data.rfind(b"\n") + 1
        records: list[AuditRecordV1] = []
        offset = 0
        for line in data[:consumed].split(b"\n")[:-1]:
            try:
                if line:
                    records.append(AuditRecordV1.from_json(line.decode("utf-8")))
            except (AuditError, UnicodeDecodeError):
                _log.error(
                    "audit spill file %s: skipping a damaged line at byte %d", self.path, offset
                )
            offset += len(line) + 1
        return records, data[:consumed]

    def clear(self, replayed: bytes) -> None:
        """Drop ``replayed`` (what :meth:`read` returned, now stored) from the file's start.

        Bytes appended since are kept. If the file no longer starts with ``replayed``
        (another process replayed it first) nothing is dropped: a later replay skips
        records already stored, by id.
        """
        if not replayed:
            return
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            with locked(fd):
                size = os.fstat(fd).st_size
                if size < len(replayed) or os.pread(fd, len(replayed), 0) != replayed:
                    return
                rest = os.pread(fd, size - len(replayed), len(replayed))
                os.ftruncate(fd, 0)
                if rest:
                    os.pwrite(fd, rest, 0)
                os.fsync(fd)
        finally:
            os.close(fd)
