"""The executor's durable records: nonces, write-ahead intents and outcomes, refusals.

Tables (SQLAlchemy Core; SQLite or PostgreSQL), created when missing:

- ``aegis_executor_nonces`` — (key id, nonce) primary key: every verified request's nonce,
  so that losing Redis does not reopen a replay (SIG-3).
- ``aegis_executor_actions`` — one row per accepted action: the intent (status ``pending``),
  committed *before* the cluster is touched (AUD-5), then its outcome. ``request_id`` is
  unique (K8S-4) and so is (key id, nonce).
- ``aegis_executor_events`` — refusals and security events (signature failures, replays,
  invalid requests, guardrail and policy refusals), with a reason code.

:class:`Outbox` is a local JSON-lines file where outcomes that could not be written wait to
be replayed (flushed and fsynced on append).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aegis.errors import require
from aegis.remediation.errors import ExecutorStoreError

__all__ = ["ExecutorStore", "Outbox"]


_RECONCILED = {
    "reason": "reconciled",
    "message": "no outcome was recorded; the action may or may not have run",
}


def _create_engine(sa: Any, url: str) -> Any:
    """An engine; a SQLite file gets a connection per transaction that honours the file.

    Pooled SQLite connections keep writing to a file that was made read-only, or to an
    unlinked inode after the file was removed. Without a pool every transaction opens the path
    anew, so either fails (fail closed, 503); and a file with no write permission bit is
    opened ``query_only`` even by root, so making it read-only always stops writes.
    """
    parsed = sa.engine.make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        return sa.create_engine(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def respect_mode(dbapi_connection: Any, _record: Any) -> None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
        if not mode & 0o222:
            dbapi_connection.execute("PRAGMA query_only = ON")

    sa.event.listen(engine, "connect", respect_mode)
    return engine


class ExecutorStore:
    """SQL storage of the executor's audit records.

    Args:
        url_or_engine: a SQLAlchemy URL or ``Engine``.
        create_tables: create missing tables.

    Raises:
        ExecutorStoreError: the database cannot be reached.
    """

    def __init__(self, url_or_engine: Any, *, create_tables: bool = True) -> None:
        sa: Any = require("sqlalchemy", "server")
        self._sa = sa
        self._owns_engine = isinstance(url_or_engine, str)
        self.engine = _create_engine(sa, url_or_engine) if self._owns_engine else url_or_engine
        md = sa.MetaData()
        col, s, f, t = sa.Column, sa.String, sa.Float, sa.Text
        self.nonces = sa.Table(
            "aegis_executor_nonces",
            md,
            col("key_id", s(64), primary_key=True),
            col("nonce", s(64), primary_key=True),
            col("at", f, nullable=False),
        )
        self.actions = sa.Table(
            "aegis_executor_actions",
            md,
            col("id", s(32), primary_key=True),
            col("request_id", s(128), nullable=False, unique=True),
            col("key_id", s(64), nullable=False),
            col("nonce", s(64), nullable=False),
            col("type", s(32), nullable=False),
            col("namespace", s(63), nullable=False),
            col("name", s(253), nullable=False),
            col("params", t, nullable=False),
            col("requested_by", s(256), nullable=False),
            col("reason", t, nullable=False),
            col("dry_run", sa.Boolean, nullable=False),
            col("status", s(16), nullable=False),
            col("decision", t),
            col("result", t),
            col("created_at", f, nullable=False),
            col("completed_at", f),
            sa.UniqueConstraint("key_id", "nonce", name="uq_aegis_executor_actions_key_nonce"),
        )
        self.events = sa.Table(
            "aegis_executor_events",
            md,
            col("id", sa.Integer, primary_key=True, autoincrement=True),
            col("at", f, nullable=False),
            col("kind", s(32), nullable=False),
            col("reason", s(64), nullable=False),
            col("key_id", s(64)),
            col("request_id", s(128)),
            col("detail", t, nullable=False),
        )
        self.metadata = md
        if create_tables:
            self._run(md.create_all)

    def close(self) -> None:
        """Dispose of the engine (when this store created it)."""
        if self._owns_engine:
            self.engine.dispose()

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        try:
            with self.engine.begin() as conn:
                return fn(conn)
        except self._sa.exc.IntegrityError:
            raise
        except self._sa.exc.SQLAlchemyError as exc:
            raise ExecutorStoreError(
                f"the executor audit store failed: {type(exc).__name__}"
            ) from exc

    def record_nonce(self, key_id: str, nonce: str, at: float) -> bool:
        """Record a verified request's nonce; ``False`` if it was already recorded."""
        try:
            self._run(
                lambda c: c.execute(
                    self._sa.insert(self.nonces).values(key_id=key_id, nonce=nonce, at=at)
                )
            )
        except self._sa.exc.IntegrityError:
            return False
        return True

    def write_intent(self, row: dict[str, Any]) -> bool:
        """Insert an intent (status ``pending``); ``False`` if its request id already exists.

        Raises:
            ExecutorStoreError: the row could not be committed (the caller must not act).
        """
        values = {
            **row,
            "params": json.dumps(row["params"], sort_keys=True),
            "decision": json.dumps(row.get("decision"), sort_keys=True),
        }
        try:
            self._run(lambda c: c.execute(self._sa.insert(self.actions).values(**values)))
        except self._sa.exc.IntegrityError:
            return False
        return True

    def write_outcome(self, action_id: str, status: str, result: dict[str, Any], at: float) -> None:
        """Complete an intent with its outcome.

        Raises:
            ExecutorStoreError: the outcome could not be written (put it in the outbox).
        """
        t = self.actions
        self._run(
            lambda c: c.execute(
                self._sa.update(t)
                .where(t.c.id == action_id)
                .values(status=status, result=json.dumps(result, sort_keys=True), completed_at=at)
            )
        )

    def record_event(
        self,
        kind: str,
        reason: str,
        detail: str,
        at: float,
        *,
        key_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Record a refusal or security event."""
        self._run(
            lambda c: c.execute(
                self._sa.insert(self.events).values(
                    kind=kind,
                    reason=reason,
                    detail=detail[:2000],
                    at=at,
                    key_id=key_id[:64] if key_id else None,
                    request_id=request_id[:128] if request_id else None,
                )
            )
        )

    @staticmethod
    def _row(r: Any) -> dict[str, Any]:
        d = dict(r._mapping)
        for key in ("params", "decision", "result"):
            d[key] = json.loads(d[key]) if d.get(key) else None
        return d

    def get(self, action_id: str) -> dict[str, Any] | None:
        """One action record by id."""
        t = self.actions
        row = self._run(lambda c: c.execute(self._sa.select(t).where(t.c.id == action_id)).first())
        return None if row is None else self._row(row)

    def by_request_id(self, request_id: str) -> dict[str, Any] | None:
        """One action record by request id."""
        t = self.actions
        row = self._run(
            lambda c: c.execute(self._sa.select(t).where(t.c.request_id == request_id)).first()
        )
        return None if row is None else self._row(row)

    def list_actions(self, *, limit: int = 100, status: str | None = None) -> list[dict[str, Any]]:
        """Action records, newest first."""
        t, sa = self.actions, self._sa
        query = sa.select(t).order_by(t.c.created_at.desc(), t.c.id).limit(limit)
        if status is not None:
            query = query.where(t.c.status == status)
        return [self._row(r) for r in self._run(lambda c: c.execute(query).all())]

    def mark_pending_unknown(self, at: float) -> list[dict[str, Any]]:
        """Mark every intent without an outcome as ``unknown``; return them (reconciliation)."""
        t, sa = self.actions, self._sa

        def go(conn: Any) -> list[dict[str, Any]]:
            rows = [
                self._row(r)
                for r in conn.execute(sa.select(t).where(t.c.status == "pending")).all()
            ]
            if rows:
                conn.execute(
                    sa.update(t)
                    .where(t.c.id.in_([r["id"] for r in rows]))
                    .values(
                        status="unknown",
                        completed_at=at,
                        result=json.dumps(_RECONCILED),
                    )
                )
            return rows

        return list(self._run(go))

    def report(self) -> dict[str, Any]:
        """Actions by type and status, failure rates, refusals by reason."""
        t, e, sa = self.actions, self.events, self._sa

        def go(conn: Any) -> dict[str, Any]:
            by: dict[str, dict[str, int]] = {}
            for type_, status, n in conn.execute(
                sa.select(t.c.type, t.c.status, sa.func.count()).group_by(t.c.type, t.c.status)
            ).all():
                by.setdefault(type_, {})[status] = int(n)
            refusals = {
                r: int(n)
                for r, n in conn.execute(
                    sa.select(e.c.reason, sa.func.count()).group_by(e.c.reason)
                ).all()
            }
            return {"by_type": by, "refusals": refusals}

        data = self._run(go)
        rates = {}
        for type_, counts in data["by_type"].items():
            done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "unknown"))
            rates[type_] = round(counts.get("failed", 0) / done, 4) if done else 0.0
        totals: dict[str, int] = {}
        for counts in data["by_type"].values():
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        return {
            "actions": data["by_type"],
            "totals": totals,
            "failure_rate": rates,
            "refusals": data["refusals"],
        }


class Outbox:
    """A local durable queue of outcomes that could not be written (AUD-5).

    Args:
        path: the JSON-lines file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Append one outcome and fsync (raises ``OSError`` if even that fails)."""
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def pending(self) -> list[dict[str, Any]]:
        """The outcomes waiting in the outbox."""
        with self._lock:
            if not self.path.exists():
                return []
            return [
                json.loads(x)
                for x in self.path.read_text(encoding="utf-8").splitlines()
                if x.strip()
            ]

    def replay(self, store: ExecutorStore) -> int:
        """Write the waiting outcomes to ``store``; keep those that still fail.

        Returns:
            How many outcomes were written.
        """
        with self._lock:
            if not self.path.exists():
                return 0
            records = [
                json.loads(x)
                for x in self.path.read_text(encoding="utf-8").splitlines()
                if x.strip()
            ]
            left, done = [], 0
            for rec in records:
                try:
                    store.write_outcome(rec["id"], rec["status"], rec["result"], rec["at"])
                    done += 1
                except ExecutorStoreError:
                    left.append(rec)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_text(
                "".join(json.dumps(r, sort_keys=True) + "\n" for r in left), encoding="utf-8"
            )
            os.replace(tmp, self.path)
            return done


def now() -> float:
    """Unix time (the default clock)."""
    return time.time()
