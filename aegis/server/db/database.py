"""The server's database handle: a synchronous SQLAlchemy engine driven from worker threads.

Handlers call ``await db.run(fn)``; ``fn(session)`` runs in one transaction on a worker thread,
so the event loop is never blocked by a query. SQLite transactions start with
``BEGIN IMMEDIATE`` so concurrent writers queue on the file lock instead of failing half-way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from anyio import CapacityLimiter
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["AUDIT_PENDING", "Database", "create_engine", "upgrade"]

T = TypeVar("T")
_log = logging.getLogger("aegis.server.audit")
#: ``session.info`` key of the audit records a transaction queues for an external sink.
AUDIT_PENDING = "aegis.audit.pending"
_MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str) -> Engine:
    """Create a SQLAlchemy engine for ``url`` with the server's connection settings.

    SQLite: the parent directory of a file database is created, foreign keys are enforced, WAL
    journaling is enabled and every transaction takes the write lock at ``BEGIN``.
    PostgreSQL: pre-ping, a bounded pool and a connect timeout.
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 5
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        connect_args=connect_args,
    )


def upgrade(url_or_engine: str | Engine) -> None:
    """Bring the schema up to date with the packaged Alembic migrations (``aegis db upgrade``).

    Args:
        url_or_engine: a database URL or an engine made by :func:`create_engine`.
    """
    from alembic import command
    from alembic.config import Config

    engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    if isinstance(url_or_engine, str):
        engine.dispose()


class Database:
    """A database handle shared by the requests of one app.

    Args:
        url: the SQLAlchemy URL.
        max_threads: how many queries may run at once.
    """

    def __init__(self, url: str, *, max_threads: int = 16, audit_sink: Any = None) -> None:
        self.url = url
        self.engine = create_engine(url)
        #: An ``aegis.engine.audit.AuditSink``; when set, audit events go there after commit.
        self.audit_sink = audit_sink
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._limiter = CapacityLimiter(max_threads)

    @property
    def dialect(self) -> str:
        """The backend name (``sqlite``, ``postgresql``)."""
        return self.engine.dialect.name

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in one transaction on the calling thread.

        With an ``audit_sink``, the audit events queued by the transaction are appended to
        the sink once it has committed (never for a transaction that rolled back).
        """
        pending: list[Any] = []
        with self._sessions.begin() as session:
            if self.audit_sink is not None:
                session.info[AUDIT_PENDING] = pending
            result = fn(session)
        if pending:
            try:
                self.audit_sink.append(pending)
            except Exception as exc:  # the change is committed; say loudly that its trail is not
                _log.error("audit sink append failed for %d events: %s", len(pending), exc)
        return result

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in one transaction on a worker thread."""
        return await anyio.to_thread.run_sync(
            functools.partial(self.run_sync, fn), limiter=self._limiter
        )

    def upgrade(self) -> None:
        """Apply the migrations to this database."""
        upgrade(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection (and the audit sink, if any)."""
        if self.audit_sink is not None:
            self.audit_sink.close()
        self.engine.dispose()
