"""Durability modes: kill -9 in sync mode, async spill and in-order replay, backpressure."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aegis.engine.audit import AuditRecordV1, open_sink, verify_jsonl
from aegis.engine.audit.sql import SqlAuditSink, verify_database
from aegis.engine.errors import AuditError

Records = Callable[..., list[AuditRecordV1]]

CHILD = textwrap.dedent(
    """
    import sys, threading
    from aegis.engine.audit import event_record, open_sink

    sink = open_sink(sys.argv[1], "sync")
    out = threading.Lock()

    def writer(k):
        i = 0
        while True:
            rec = sink.append([event_record("decision", {"k": k, "i": i}, chain="decisions")])[0]
            with out:
                sys.stdout.write(f"ACK {rec.id}\\n")
                sys.stdout.flush()
            i += 1

    for k in range(4):
        threading.Thread(target=writer, args=(k,), daemon=True).start()
    threading.Event().wait()
    """
)


def kill_after_acks(url: str, wanted: int) -> list[str]:
    """Run a writer process, SIGKILL it right after ``wanted`` acknowledged appends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    try:
        while len(acked) < wanted and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                continue
            line = proc.stdout.readline()
            if line.startswith("ACK "):
                acked.append(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= wanted
    return acked


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "jsonl"])
def test_sync_mode_loses_nothing_acknowledged_on_kill_9(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    elif backend == "jsonl":
        url = f"jsonl:{tmp_path / 'audit.jsonl'}"
    else:
        url = str(request.getfixturevalue("postgres_schema"))
    acked = kill_after_acks(url, 40)
    if backend == "jsonl":
        path = tmp_path / "audit.jsonl"
        with open_sink(url) as sink:  # reopening cuts a torn tail, if the kill left one
            stored = {r.id for r in sink.records()}  # type: ignore[attr-defined]
        result = verify_jsonl(path)
    else:
        with SqlAuditSink(url) as sink:
            stored = {r.id for r in sink.records("decisions")}
        result = verify_database(url)["decisions"]
    assert set(acked) <= stored
    assert result.ok
    assert result.checked == len(stored)


# -- async mode ------------------------------------------------------------------------


def ids(recs: list[AuditRecordV1]) -> list[str]:
    return [r.id for r in recs]


def test_async_sqlite_locked_spills_then_replays_in_order(tmp_path: Path, records: Records) -> None:
    db = tmp_path / "audit.db"
    spill = tmp_path / "spill.jsonl"
    sink = SqlAuditSink(
        f"sqlite:///{db}", mode="async", spill_path=spill, busy_timeout=0.05, retry_interval=0.05
    )
    first, during, after = records(5), records(20, start=5), records(5, start=25)
    sink.append(first)
    deadline = time.monotonic() + 10
    while sink.head("decisions").seq < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the database is now unavailable to writers
    try:
        for i in range(0, 20, 4):
            sink.append(during[i : i + 4])
        deadline = time.monotonic() + 10
        while sink.spilled_total < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.spilled_total == 20
        assert sink.status()["spill_pending"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    sink.append(after)
    sink.close()
    with SqlAuditSink(f"sqlite:///{db}") as reader:
        stored = reader.records("decisions")
    assert ids(stored) == ids(first + during + after)
    assert [r.seq for r in stored] == list(range(1, 31))
    assert verify_database(f"sqlite:///{db}")["decisions"].ok
    assert not spill.exists() or spill.stat().st_size == 0


class FaultProxy:
    """A TCP proxy to PostgreSQL that can be taken down and brought back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            if self._server is not None:
                # shutdown wakes the thread blocked in accept() (close alone does not)
                with contextlib.suppress(OSError):
                    self._server.shutdown(socket.SHUT_RDWR)
                self._server.close()
                self._server = None
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied_postgres(postgres_schema: str) -> Iterator[tuple[str, FaultProxy]]:
    url = sa.make_url(postgres_schema)
    proxy = FaultProxy((url.host or "127.0.0.1", url.port or 5432))
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    proxy.down()


def test_async_postgresql_down_spills_then_replays_in_order(
    proxied_postgres: tuple[str, FaultProxy], tmp_path: Path, records: Records
) -> None:
    url, proxy = proxied_postgres
    spill = tmp_path / "spill.jsonl"
    sink = SqlAuditSink(url, mode="async", spill_path=spill, retry_interval=0.05)
    first, during, after = records(3), records(12, start=3), records(3, start=15)
    sink.append(first)
    deadline = time.monotonic() + 10
    while sink.status()["queued"] and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    proxy.down()
    for i in range(0, 12, 3):
        sink.append(during[i : i + 3])
    deadline = time.monotonic() + 20
    while sink.spilled_total < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.spilled_total >= 12
    proxy.up()
    sink.append(after)
    sink.close()
    with SqlAuditSink(url) as reader:
        stored = reader.records("decisions")
    assert ids(stored) == ids(first + during + after)
    assert verify_database(url)["decisions"].ok


@pytest.mark.parametrize("next_mode", ["sync", "async"])
def test_async_close_while_down_keeps_the_spill_for_the_next_sink(
    proxied_postgres: tuple[str, FaultProxy], tmp_path: Path, records: Records, next_mode: str
) -> None:
    url, proxy = proxied_postgres
    spill = tmp_path / "spill.jsonl"
    SqlAuditSink(url).close()  # schema exists
    proxy.down()
    sink = SqlAuditSink(
        url, mode="async", spill_path=spill, retry_interval=0.05, create_schema=False
    )
    pending = records(7)
    sink.append(pending)
    sink.close()  # clean shutdown with the database down: nothing lost, all in the spill
    assert len(spill.read_text().splitlines()) == 7
    proxy.up()
    later = records(2, start=7)
    with SqlAuditSink(url, mode=next_mode, spill_path=spill) as again:  # type: ignore[arg-type]
        again.append(later)
    with SqlAuditSink(url) as reader:
        assert ids(reader.records("decisions")) == ids(pending + later)


def test_async_backpressure_fails_after_put_timeout(tmp_path: Path, records: Records) -> None:
    db = tmp_path / "audit.db"
    sink = SqlAuditSink(
        f"sqlite:///{db}",
        mode="async",
        spill_path=tmp_path / "s.jsonl",
        queue_size=1,
        put_timeout=0.05,
        busy_timeout=30,
    )
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    accepted: list[AuditRecordV1] = []

    def fill() -> None:
        for rec in records(10):
            accepted.extend(sink.append([rec]))

    try:
        with pytest.raises(AuditError, match="queue is full"):
            fill()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert 1 <= len(accepted) <= 3
    sink.close()
    with SqlAuditSink(f"sqlite:///{db}") as reader:
        assert ids(reader.records("decisions")) == ids(accepted)


def test_async_needs_a_spill_path_and_a_known_mode(tmp_path: Path) -> None:
    from aegis.engine.audit import MemoryAuditSink

    with pytest.raises(AuditError, match="spill_path"):
        MemoryAuditSink("async")
    with pytest.raises(AuditError, match="durability mode"):
        MemoryAuditSink("eventually")  # type: ignore[arg-type]


def test_async_sink_not_closed_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    code = textwrap.dedent(
        f"""
        from aegis.engine.audit import event_record, open_sink
        sink = open_sink("jsonl:{path}", "async")
        for i in range(200):
            sink.append([event_record("decision", {{"i": i}}, chain="decisions")])
        # no close(): a clean exit must still flush
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    result = verify_jsonl(path)
    assert (result.ok, result.checked) == (True, 200)


def test_sync_append_after_a_database_restart_reconnects(
    proxied_postgres: tuple[str, FaultProxy], records: Records
) -> None:
    url, proxy = proxied_postgres
    with SqlAuditSink(url) as sink:
        sink.append(records(2))
        proxy.down()  # every pooled connection dies, as in a restart
        with pytest.raises(AuditError, match="audit write"):
            sink.append(records(1, start=2))
        proxy.up()
        assert sink.append(records(1, start=3))[0].seq == 3
        proxy.down()
        proxy.up()  # back before the next append: the dead pooled connection is retried
        assert sink.append(records(1, start=4))[0].seq == 4
    assert verify_database(url)["decisions"].ok
