"""Durability modes shared by every sink: ``sync`` group commit and ``async`` queue + spill.

A backend implements three small methods (:meth:`BatchingSink._write`,
:meth:`BatchingSink._stored_ids`, :meth:`BatchingSink._close_backend`); this base decides
*when* they run.

* ``sync``: :meth:`append` returns once its records are durable. Callers on several threads
  share transactions (group commit): the first caller to arrive becomes the leader, takes
  everything queued so far, writes it in one transaction and wakes the callers it served;
  callers that arrived meanwhile elect the next leader among themselves.
* ``async``: :meth:`append` puts the records on a bounded queue (blocking at most
  ``put_timeout`` seconds, then :class:`AuditError`) and returns unsealed records; a writer
  thread seals and writes them in batches. While the store fails, batches go, in order, to
  a local spill file (fsynced); once the spill file is non-empty every later batch goes
  there too, and a retry replays the file in order before anything else, skipping records
  whose id is already stored. Seq and hash are assigned by the store writer, so the chain
  stays gapless. :meth:`close` flushes the queue and tries the spill once more; records it
  cannot write stay in the spill file and are replayed when a sink opens it again.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from aegis.engine.audit._chain import ChainHead
from aegis.engine.audit._files import HeadAnchor, SpillFile
from aegis.engine.audit._record import AuditRecordV1, check_chain_name
from aegis.engine.errors import AuditError

__all__ = ["BatchingSink", "Mode", "RecordRejected"]

Mode = Literal["sync", "async"]

_log = logging.getLogger("aegis.audit")
_STOP = object()
_OPEN_ASYNC: weakref.WeakSet[BatchingSink] = weakref.WeakSet()


@atexit.register
def _close_open_async_sinks() -> None:
    """Flush async sinks the program forgot to close (daemon writers die at exit)."""
    for sink in list(_OPEN_ASYNC):
        try:
            sink.close()
        except Exception:  # at exit, a log line is all that is left to do
            _log.exception("audit sink failed to close at exit")


class RecordRejected(AuditError):
    """The store refuses this record for good (invalid field, duplicate id): never retried.

    A backend raises it from ``_write`` so that one bad record fails only its own caller
    (sync) or goes to the ``.rejected`` file (async), never the records batched with it.
    """

    code = "audit.rejected"


class _Waiter:
    """One ``append`` call in sync mode; ``wake`` is released when it is done or promoted."""

    __slots__ = ("done", "error", "lead", "records", "result", "wake")

    def __init__(self, records: list[AuditRecordV1]) -> None:
        self.records = records
        self.result: list[AuditRecordV1] = []
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()


class BatchingSink:
    """Base class of the shipped sinks: ``sync`` group commit, ``async`` queue and spill.

    A new backend subclasses it and implements ``_write(records)`` (seal after the stored
    head and store atomically and durably; return the sealed records in order),
    ``_stored_ids(records)`` (ids already stored, for idempotent spill replay) and
    optionally ``_close_backend()``; its ``__init__`` ends with ``self._start()``.
    See ``docs/audit.md`` for the two modes.

    Args:
        mode: ``"sync"`` or ``"async"``.
        max_batch: most records written in one transaction.
        queue_size: async only: most ``append`` calls waiting for the writer.
        put_timeout: async only: seconds ``append`` waits for queue space before failing.
        spill_path: async only: the spill file (required in async mode).
        retry_interval: async only: first delay before retrying a failed store (doubles up
            to 30 s while it keeps failing).
        anchor: where to publish chain heads (AUD-3), or ``None``.
        anchor_interval: seconds between two publications of a chain's head (0: every
            commit); heads are always published on :meth:`close`.
        commit_delay: sync only: the most a leader waits for more callers to join its
            transaction, and never more than half the previous write's duration (0: off).
    """

    def __init__(
        self,
        *,
        mode: Mode = "sync",
        max_batch: int = 1000,
        queue_size: int = 10_000,
        put_timeout: float = 5.0,
        spill_path: str | Path | None = None,
        retry_interval: float = 1.0,
        anchor: HeadAnchor | None = None,
        anchor_interval: float = 60.0,
        commit_delay: float = 0.002,
    ) -> None:
        if mode not in ("sync", "async"):
            raise AuditError(f"unknown audit durability mode `{mode}` (use `sync` or `async`)")
        if max_batch < 1 or queue_size < 1:
            raise AuditError("audit `max_batch` and `queue_size` must be positive")
        if mode == "async" and spill_path is None:
            raise AuditError("async audit mode needs a `spill_path`")
        self.mode: Mode = mode
        self._max_batch = max_batch
        self._put_timeout = put_timeout
        self._retry_base = retry_interval
        self._retry_delay = retry_interval
        self._next_retry = 0.0
        self._spill = SpillFile(spill_path) if spill_path is not None else None
        self._anchor = anchor
        self._anchor_interval = anchor_interval
        self._anchored: dict[str, float] = {}
        self._heads: dict[str, ChainHead] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: list[_Waiter] = []
        self._leader = False
        self._closed = False
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._commit_delay = max(0.0, commit_delay)
        self._last_write = 0.0
        self._last_batch = 0
        self._putting = 0
        self.spilled_total = 0
        """Records that went to the spill file (async)."""
        self.dropped_total = 0
        """Records lost because both the store and the spill file failed (async)."""
        self.rejected_total = 0
        """Records the store refused for good, kept in ``<spill>.rejected`` (async)."""

    # -- backend interface -------------------------------------------------------------

    def _write(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        """Seal and store ``records`` atomically and durably; return them sealed, in order."""
        raise NotImplementedError

    def _stored_ids(self, records: Sequence[AuditRecordV1]) -> set[str]:
        """Which of these record ids are already stored (for idempotent spill replay)."""
        raise NotImplementedError

    def _close_backend(self) -> None:
        """Release the backend's resources."""

    def _validate(self, record: AuditRecordV1) -> None:
        """Refuse a record the store could never hold (runs in the caller's thread).

        Raises:
            AuditError: the record is invalid for this store.
        """
        check_chain_name(record.chain)

    # -- lifecycle -----------------------------------------------------------------------

    def _start(self) -> None:
        """Called by subclasses at the end of ``__init__``."""
        if self._spill is not None and self._spill.pending() and self.mode == "sync":
            self._replay_spill()
        if self.mode == "async":
            self._thread = threading.Thread(
                target=self._run, name=f"aegis-audit-{type(self).__name__}", daemon=True
            )
            self._thread.start()
            _OPEN_ASYNC.add(self)

    def append(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        """Append records to their chains; see :class:`aegis.engine.audit.AuditSink`.

        Raises:
            AuditError: the sink is closed, the store failed (sync), or the queue stayed
                full for ``put_timeout`` seconds (async).
        """
        batch = list(records)
        for rec in batch:
            if not isinstance(rec, AuditRecordV1):
                raise AuditError("audit sinks append `AuditRecordV1` objects")
        if not batch:
            return []
        batch = [
            (
                r if r.seq is None and r.prev_hash is None and r.hash is None else r.unsealed()
            ).prepare()  # serialise here, in the caller's thread, not under the chain lock
            for r in batch
        ]
        for rec in batch:
            self._validate(rec)  # a bad record fails its caller, not a whole group commit
        if self.mode == "async":
            with self._lock:
                if self._closed:
                    raise AuditError("audit sink is closed")
                self._putting += 1  # close() waits for puts in flight before its STOP
            try:
                self._queue.put(batch, timeout=self._put_timeout)
            except queue.Full:
                raise AuditError(
                    f"audit queue is full (still full after {self._put_timeout:g} s)"
                ) from None
            finally:
                with self._cond:
                    self._putting -= 1
                    self._cond.notify_all()
            return batch
        return self._append_sync(batch)

    def _append_sync(self, batch: list[AuditRecordV1]) -> list[AuditRecordV1]:
        # Leader/follower group commit. Each waiter sleeps on its own lock, so a commit
        # wakes exactly the callers it served, plus the one promoted to lead next.
        me = _Waiter(batch)
        with self._lock:
            if self._closed:
                raise AuditError("audit sink is closed")
            self._pending.append(me)
            if not self._leader:
                self._leader = me.lead = True
        if not me.lead:
            me.wake.acquire()  # served by a leader, or promoted to lead
        if not me.done:
            try:
                while not me.done:
                    self._lead_once(me)
            finally:
                with self._cond:
                    if self._pending:
                        nxt = self._pending[0]
                        nxt.lead = True
                        nxt.wake.release()
                    else:
                        self._leader = False
                        self._cond.notify_all()  # close() may be waiting
        if me.error is not None:
            raise me.error
        return me.result

    def _gather(self) -> None:
        """Adaptive commit delay: while callers keep arriving, let them join this batch.

        Worth it when a commit costs an fsync: callers just served by the previous commit
        are building their next record; waiting ~0.1 ms per arrival makes one transaction
        out of what would otherwise be two alternating half-size ones.
        """
        budget = min(self._commit_delay, self._last_write / 2)
        if budget < 0.0002 or len(self._pending) >= self._last_batch:
            return  # cheap commits, or everyone from the last batch is already back
        deadline = time.perf_counter() + budget
        seen = len(self._pending)
        while time.perf_counter() < deadline:
            time.sleep(0.0001)
            now = len(self._pending)
            if now == seen:
                return
            seen = now

    def _lead_once(self, me: _Waiter) -> None:
        self._gather()
        with self._lock:
            group: list[_Waiter] = []
            count = 0
            while self._pending and (
                not group or count + len(self._pending[0].records) <= self._max_batch
            ):
                w = self._pending.pop(0)
                group.append(w)
                count += len(w.records)
        flat = [r for w in group for r in w.records]
        started = time.perf_counter()
        try:
            sealed = self._write(flat)
            error: BaseException | None = None
        except AuditError as exc:
            sealed, error = [], exc
        except Exception as exc:  # a backend bug must still wake every follower
            sealed, error = [], AuditError(f"audit write failed: {exc}")
            error.__cause__ = exc
        self._last_write = time.perf_counter() - started
        self._last_batch = len(group)
        if error is None:
            self._after_commit(sealed)
        elif isinstance(error, RecordRejected) and len(group) > 1:
            # one caller's record spoiled the shared transaction: redo each caller alone
            for w in group:
                try:
                    w.result = self._write(w.records)
                    self._after_commit(w.result)
                except Exception as exc:
                    w.error = exc if isinstance(exc, AuditError) else AuditError(str(exc))
                w.done = True
                if w is not me:
                    w.wake.release()
            return
        pos = 0
        for w in group:
            if error is None:
                w.result = sealed[pos : pos + len(w.records)]
                pos += len(w.records)
            else:
                w.error = error
            w.done = True
            if w is not me:
                w.wake.release()

    def _after_commit(self, sealed: Sequence[AuditRecordV1]) -> None:
        for rec in sealed:
            assert rec.seq is not None
            assert rec.hash is not None
            self._heads[rec.chain] = ChainHead(rec.seq, rec.hash)
        if self._anchor is None:
            return
        now = time.monotonic()
        for chain in {r.chain for r in sealed}:
            if now - self._anchored.get(chain, -1e18) >= self._anchor_interval:
                self._publish(chain)

    def _publish(self, chain: str) -> None:
        if self._anchor is None or chain not in self._heads:
            return
        try:
            self._anchor.publish(chain, self._heads[chain])
            self._anchored[chain] = time.monotonic()
        except AuditError as exc:
            _log.error("audit anchor publication failed: %s", exc)

    def publish_anchor(self) -> None:
        """Publish the head of every chain this sink wrote to, now (e.g. per executor action)."""
        for chain in list(self._heads):
            self._publish(chain)

    def close(self) -> None:
        """Flush (async: queue, then one more spill replay), publish anchors, release.

        Idempotent. After ``close``, :meth:`append` raises :class:`AuditError`.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._leader or self._pending or self._putting:
                self._cond.wait()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            _OPEN_ASYNC.discard(self)
        self.publish_anchor()
        self._close_backend()

    def __enter__(self) -> BatchingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        """Operational state for health endpoints: mode, queue depth, spill state, counters."""
        return {
            "mode": self.mode,
            "closed": self._closed,
            "queued": self._queue.qsize(),
            "spill_pending": self._spill.pending() if self._spill is not None else False,
            "spilled_total": self.spilled_total,
            "dropped_total": self.dropped_total,
            "rejected_total": self.rejected_total,
        }

    # -- async writer ------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=min(0.5, self._retry_base))
            except queue.Empty:
                item = None
            batch: list[AuditRecordV1] = []
            while item is not None:
                if item is _STOP:
                    stop = True
                else:
                    batch.extend(item)
                if stop or len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            try:
                self._process(batch, final=stop)
            except Exception:  # never let the writer die: the queue would only fill up
                _log.exception("audit writer failed; %d records go to the spill file", len(batch))
                self._to_spill(batch)

    def _process(self, batch: list[AuditRecordV1], *, final: bool) -> None:
        assert self._spill is not None
        if self._spill.pending():
            if batch:
                self._to_spill(batch)
            if final or time.monotonic() >= self._next_retry:
                self._try_replay()
            return
        if not batch:
            return
        try:
            for start in range(0, len(batch), self._max_batch):
                self._write_isolating(batch[start : start + self._max_batch])
            self._retry_delay = self._retry_base
        except Exception as exc:
            _log.warning("audit store unavailable, spilling to %s: %s", self._spill.path, exc)
            stored = self._stored_ids_safe(batch)
            self._to_spill([r for r in batch if r.id not in stored])
            self._schedule_retry()
            if final:
                self._try_replay()

    def _write_isolating(self, records: Sequence[AuditRecordV1]) -> None:
        """Write; records the store refuses for good go to the rejected file, one by one.

        Raises:
            AuditError: a transient failure (the caller spills and retries).
        """
        try:
            sealed = self._write(records)
        except RecordRejected as exc:
            if len(records) > 1:
                for rec in records:
                    self._write_isolating([rec])
                return
            self._reject(records, exc)
            return
        self._after_commit(sealed)

    def _reject(self, records: Sequence[AuditRecordV1], exc: AuditError) -> None:
        assert self._spill is not None
        rejected = SpillFile(self._spill.path.with_name(self._spill.path.name + ".rejected"))
        self.rejected_total += len(records)
        _log.error(
            "audit record %s refused by the store (%s); kept in %s",
            records[0].id,
            exc,
            rejected.path,
        )
        try:
            rejected.append(records)
        except AuditError as err:
            self.dropped_total += len(records)
            _log.critical("audit record %s lost: %s", records[0].id, err)

    def _stored_ids_safe(self, batch: Sequence[AuditRecordV1]) -> set[str]:
        try:
            return self._stored_ids(batch)
        except Exception:
            return set()

    def _to_spill(self, batch: Sequence[AuditRecordV1]) -> None:
        assert self._spill is not None
        try:
            self._spill.append(batch)
            self.spilled_total += len(batch)
        except AuditError as exc:
            self.dropped_total += len(batch)
            _log.critical(
                "audit records lost (%d): store and spill file both fail: %s", len(batch), exc
            )

    def _schedule_retry(self) -> None:
        self._next_retry = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, 30.0)

    def _try_replay(self) -> None:
        try:
            self._replay_spill()
            self._retry_delay = self._retry_base
        except Exception as exc:
            _log.warning("audit store still unavailable: %s", exc)
            self._schedule_retry()

    def _replay_spill(self) -> None:
        """Write every spilled record, oldest first, then empty the spill file.

        Raises:
            AuditError: the store still fails (the spill file is kept).
        """
        assert self._spill is not None
        records, replayed = self._spill.read()
        for start in range(0, len(records), self._max_batch):
            chunk = records[start : start + self._max_batch]
            stored = self._stored_ids(chunk)
            todo = [r for r in chunk if r.id not in stored]
            if todo:
                self._write_isolating(todo)
        self._spill.clear(replayed)
        if records:
            _log.info("audit spill replayed: %d records", len(records))
