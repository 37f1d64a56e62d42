"""SQL audit sink (SQLAlchemy 2 Core) for SQLite and PostgreSQL.

Layout: one table, :data:`audit_records`, holding every chain. ``(chain, seq)`` is the
primary key (gapless per chain), ``body`` is the exact canonical JSON that was hashed
(the record without ``hash``), and the other columns repeat parts of it for queries; the
verifier checks that they agree with the body. Writers are serialised per chain
(PostgreSQL ``pg_advisory_xact_lock``; SQLite ``BEGIN IMMEDIATE``), and triggers refuse
UPDATE, DELETE and TRUNCATE (AUD-1). The DDL is exported (:data:`metadata`,
:func:`schema_ddl`, :func:`app_role_grants`) so the server's Alembic migrations can reuse it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aegis.engine.audit._batching import BatchingSink, Mode, RecordRejected
from aegis.engine.audit._chain import ChainHead, Entry, VerifyResult, seal, verify
from aegis.engine.audit._files import HeadAnchor
from aegis.engine.audit._record import (
    AuditRecordV1,
    check_chain_name,
    group_by_chain,
    redact_url,
)
from aegis.engine.errors import AuditError, AuditIntegrityError
from aegis.errors import MissingDependencyError

try:
    import sqlalchemy as sa
    from sqlalchemy import event
except ImportError as _exc:  # pragma: no cover - the server/postgres extras install it
    raise MissingDependencyError("sqlalchemy", "server") from _exc

__all__ = [
    "HEADS_TABLE_NAME",
    "TABLE_NAME",
    "SqlAuditSink",
    "SqlSinkConfig",
    "app_role_grants",
    "audit_heads",
    "audit_records",
    "factory",
    "metadata",
    "schema_ddl",
    "verify_database",
]

TABLE_NAME = "aegis_audit_records"
_TRIGGER_FN = "aegis_audit_refuse_change"
_SCHEMA_LOCK = 0x0AE915A0D17  # advisory lock key serialising create_schema() on PostgreSQL

metadata = sa.MetaData()
"""Holds :data:`audit_records`; reuse it from Alembic (``target_metadata``)."""

audit_records = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("chain", sa.String(128), nullable=False),
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        nullable=False,
        autoincrement=False,
    ),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("policy_version", sa.String(128), nullable=True),
    sa.Column("decision", sa.String(16), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint("chain", "seq", name=f"pk_{TABLE_NAME}"),
    sa.UniqueConstraint("id", name=f"uq_{TABLE_NAME}_id"),
    sa.Index(f"ix_{TABLE_NAME}_time", "time"),
)
"""The audit table: one row per record, every chain."""

HEADS_TABLE_NAME = "aegis_audit_heads"

audit_heads = sa.Table(
    HEADS_TABLE_NAME,
    metadata,
    sa.Column("chain", sa.String(128), nullable=False),
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("chain", name=f"pk_{HEADS_TABLE_NAME}"),
)
"""Each chain's head, updated in the same transaction as the append.

Not append-only (it is updated): it catches a naive deletion of the last rows, not an
intruder who also rewrites it — only an external anchor (AUD-3) resists that.
"""

_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def schema_ddl(dialect: str) -> list[str]:
    """Statements that make :data:`audit_records` append-only (run after creating it).

    Idempotent. PostgreSQL (14+): a row trigger refusing UPDATE and DELETE and a statement
    trigger refusing TRUNCATE (which skips DELETE triggers). SQLite: BEFORE UPDATE and
    BEFORE DELETE triggers with ``RAISE(ABORT)`` (SQLite has no TRUNCATE statement; its
    truncate optimisation is disabled by the DELETE trigger).

    Args:
        dialect: ``"postgresql"`` or ``"sqlite"``.

    Raises:
        AuditError: another dialect.
    """
    if dialect == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {_TRIGGER_FN}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  RAISE EXCEPTION 'aegis audit records are append-only (% refused)', TG_OP\n"
            "    USING ERRCODE = 'insufficient_privilege';\n"
            "END\n"
            "$$",
            f"CREATE OR REPLACE TRIGGER aegis_audit_no_update_delete BEFORE UPDATE OR DELETE "
            f"ON {TABLE_NAME} FOR EACH ROW EXECUTE FUNCTION {_TRIGGER_FN}()",
            f"CREATE OR REPLACE TRIGGER aegis_audit_no_truncate BEFORE TRUNCATE "
            f"ON {TABLE_NAME} FOR EACH STATEMENT EXECUTE FUNCTION {_TRIGGER_FN}()",
        ]
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS aegis_audit_no_update BEFORE UPDATE ON {TABLE_NAME} "
            "BEGIN SELECT RAISE(ABORT, 'aegis audit records are append-only (UPDATE refused)'); "
            "END",
            f"CREATE TRIGGER IF NOT EXISTS aegis_audit_no_delete BEFORE DELETE ON {TABLE_NAME} "
            "BEGIN SELECT RAISE(ABORT, 'aegis audit records are append-only (DELETE refused)'); "
            "END",
        ]
    raise AuditError(f"audit tables are not supported on `{dialect}`")


_TRIGGERS = {
    "postgresql": {"aegis_audit_no_update_delete", "aegis_audit_no_truncate"},
    "sqlite": {"aegis_audit_no_update", "aegis_audit_no_delete"},
}


def app_role_grants(role: str) -> list[str]:
    """PostgreSQL statements leaving ``role`` (the application's) only SELECT and INSERT.

    Run them as the table owner (the migration role). The owner can still disable
    triggers, so the application must never connect as the owner (AUD-1).

    Raises:
        AuditError: ``role`` is not a plain SQL identifier.
    """
    if not _ROLE.match(role):
        raise AuditError(f"invalid role name `{role}`")
    return [
        f"REVOKE ALL ON TABLE {TABLE_NAME} FROM PUBLIC",
        f'REVOKE ALL ON TABLE {TABLE_NAME} FROM "{role}"',
        f'GRANT SELECT, INSERT ON TABLE {TABLE_NAME} TO "{role}"',
        f"REVOKE ALL ON TABLE {HEADS_TABLE_NAME} FROM PUBLIC",
        f'GRANT SELECT, INSERT, UPDATE ON TABLE {HEADS_TABLE_NAME} TO "{role}"',
    ]


def _lock_key(chain: str) -> int:
    return int.from_bytes(
        hashlib.sha256(b"aegis-audit:" + chain.encode()).digest()[:8], "big", signed=True
    )


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".rstrip(": ")


def _safe_url(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _make_engine(
    url: str | sa.URL, *, sqlite_synchronous: str = "FULL", busy_timeout: float = 30.0
) -> sa.Engine:
    """An engine configured for the audit table (SQLite: WAL, ``BEGIN IMMEDIATE`` writes).

    Raises:
        AuditError: the URL is malformed, or names another database than SQLite/PostgreSQL.
    """
    try:
        u = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise AuditError(f"invalid audit database URL `{redact_url(str(url))}`") from exc
    backend = u.get_backend_name()
    if u.drivername == "postgresql":  # the `postgres` extra installs psycopg 3, not psycopg2
        u = u.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and u.database in (None, "", ":memory:"):
        raise AuditError("in-memory SQLite cannot hold an audit chain (use `memory:`)")
    if backend == "sqlite":
        if sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise AuditError(f"invalid SQLite synchronous setting `{sqlite_synchronous}`")
        try:
            engine = sa.create_engine(u, connect_args={"timeout": busy_timeout})
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise AuditError(f"cannot use audit database `{_safe_url(u)}`: {exc}") from exc

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            read = conn.get_execution_options().get("aegis_audit_read", False)
            conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        try:
            return sa.create_engine(
                u,
                pool_size=2,
                max_overflow=4,
                connect_args={"connect_timeout": 5},
            )
        except ImportError as exc:
            raise MissingDependencyError(u.get_driver_name(), "postgres") from exc
        except sa.exc.ArgumentError as exc:
            raise AuditError(f"cannot use audit database `{_safe_url(u)}`: {exc}") from exc
    raise AuditError(f"audit database `{backend}` is not supported (use sqlite or postgresql)")


def _default_spill(url: sa.URL) -> Path:
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(f"{url.database}.audit-spill.jsonl")
    base = Path(os.environ.get("AEGIS_AUDIT_SPILL_DIR") or Path.home() / ".local/state/aegis")
    digest = hashlib.sha256(_safe_url(url).encode()).hexdigest()[:16]
    return base / f"audit-spill-{digest}.jsonl"


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


_COLUMNS = (
    "chain",
    "seq",
    "id",
    "time",
    "kind",
    "policy_version",
    "decision",
    "prev_hash",
    "hash",
    "body",
)


@functools.lru_cache(maxsize=64)
def _insert_sql(paramstyle: str, rows: int = 1) -> str:
    marks = ", ".join(["?" if paramstyle == "qmark" else "%s"] * len(_COLUMNS))
    values = ", ".join([f"({marks})"] * rows)
    # constants only: no user input reaches this text
    return f"INSERT INTO {TABLE_NAME} ({', '.join(_COLUMNS)}) VALUES {values}"  # noqa: S608


def _check(rec: AuditRecordV1) -> datetime:
    """Refuse what the table cannot hold; returns the record's time."""
    check_chain_name(rec.chain)
    if len(rec.kind) > 64 or len(rec.id) > 64 or len(rec.policy_version or "") > 128:
        raise AuditError("audit record `kind`, `id` or `policy_version` is too long")
    if rec.decision is not None and len(rec.decision) > 16:
        raise AuditError("audit record `decision` is too long")
    try:
        moment = datetime.fromisoformat(rec.time)
    except ValueError as exc:
        raise AuditError(f"audit record time `{rec.time}` is not ISO-8601") from exc
    if moment.tzinfo is None:
        raise AuditError(f"audit record time `{rec.time}` has no UTC offset")
    return moment


def _row_for(rec: AuditRecordV1, dialect: str) -> tuple[Any, ...]:
    try:
        moment = _check(rec)
    except AuditError as exc:
        raise RecordRejected(str(exc)) from exc
    when: Any = moment
    if dialect == "sqlite":  # SQLAlchemy's SQLite DateTime storage format, naive UTC
        t = rec.time
        if len(t) == 27 and t[10] == "T" and t[-1] == "Z":  # our own utc_timestamp() form
            when = f"{t[:10]} {t[11:26]}"
        else:
            when = _naive_utc(moment).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (
        rec.chain,
        rec.seq,
        rec.id,
        when,
        rec.kind,
        rec.policy_version,
        rec.decision,
        rec.prev_hash,
        rec.hash,
        rec.body_json(),
    )


def _entry(row: Any) -> Entry:
    where = f"row chain={row.chain!r} seq={row.seq}"
    try:
        rec = AuditRecordV1.from_json(row.body).with_hash(row.hash)
    except AuditError as exc:
        return Entry(None, f"{where}: body is not a record ({exc})", where)
    if row.body != rec.body_json():  # any byte edit counts, even a harmless one
        return Entry(rec, f"{where}: body is not the canonical text that was hashed", where)
    for name in ("chain", "id", "kind", "policy_version", "decision", "prev_hash"):
        if getattr(rec, name) != getattr(row, name):
            return Entry(rec, f"{where}: column `{name}` disagrees with the hashed record", where)
    try:
        same_time = _naive_utc(datetime.fromisoformat(rec.time)) == _naive_utc(row.time)
    except (TypeError, ValueError):
        same_time = False
    if not same_time:
        return Entry(rec, f"{where}: column `time` disagrees with the hashed record", where)
    return Entry(rec, None, where)


class SqlAuditSink(BatchingSink):
    """Audit sink on a SQLite file or a PostgreSQL database (SQLAlchemy 2 Core).

    Each ``append`` batch is one transaction: for each chain in the batch (sorted by name),
    take the chain's writer lock, read its head, seal the records after it and insert them.
    With group commit (``sync`` mode) concurrent callers share that transaction.

    Args:
        url: SQLAlchemy URL (``sqlite:///audit.db``, ``postgresql+psycopg://...``).
        mode: ``"sync"`` (default) or ``"async"``.
        create_schema: create the table and triggers if missing (default ``True``); with
            ``False`` (an app role without DDL rights) the schema must already exist.
        spill_path: async spill file; default ``<sqlite file>.audit-spill.jsonl``, or
            ``$AEGIS_AUDIT_SPILL_DIR`` (default ``~/.local/state/aegis``) for PostgreSQL.
        sqlite_synchronous: SQLite ``PRAGMA synchronous`` (``FULL`` default: durable on
            power loss; ``NORMAL`` in WAL mode survives process crashes only).
        busy_timeout: SQLite: seconds to wait for another writer's lock before failing.
        **options: see :class:`aegis.engine.audit._batching.BatchingSink`.

    Raises:
        AuditError: bad URL, unsupported database, or the schema cannot be created/checked.

    Usage::

        sink = SqlAuditSink("sqlite:///audit.db")
        sink.append([decision_record(decision, request)])
        sink.close()
    """

    def __init__(
        self,
        url: str | sa.URL,
        *,
        mode: Mode = "sync",
        create_schema: bool = True,
        spill_path: str | os.PathLike[str] | None = None,
        sqlite_synchronous: str = "FULL",
        busy_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        self._engine = _make_engine(
            url, sqlite_synchronous=sqlite_synchronous, busy_timeout=busy_timeout
        )
        self.url = self._engine.url
        self.dialect = self._engine.dialect.name
        self._insert = _insert_sql(self._engine.dialect.paramstyle)
        mark = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        self._head_upsert = (
            f"INSERT INTO {HEADS_TABLE_NAME} (chain, seq, hash) "  # noqa: S608 - constants
            f"VALUES ({mark}, {mark}, {mark}) "
            "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
        )
        self._head_sql = (
            f"SELECT seq, hash FROM {TABLE_NAME} WHERE chain = {mark} "  # noqa: S608 - constants
            f"ORDER BY seq DESC LIMIT 1"
        )
        # the last record and the recorded head in one round trip (constants only)
        last = f"FROM {TABLE_NAME} WHERE chain = {mark} ORDER BY seq DESC LIMIT 1"
        recorded = f"FROM {HEADS_TABLE_NAME} WHERE chain = {mark}"
        self._heads_sql = (
            f"SELECT (SELECT seq {last}), (SELECT hash {last}), "
            f"(SELECT seq {recorded}), (SELECT hash {recorded})"
        )
        if mode == "async" and spill_path is None:
            spill_path = _default_spill(self.url)
        try:
            super().__init__(
                mode=mode, spill_path=None if spill_path is None else Path(spill_path), **options
            )
            if create_schema:
                self.create_schema()
            self._start()
        except BaseException:
            self._engine.dispose()
            raise

    # -- schema ---------------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the table and the append-only triggers if missing (idempotent).

        A role that may not run DDL can call it when the schema exists: nothing is created
        then, but missing triggers are an error.

        Raises:
            AuditError: the database fails, or the triggers are missing and cannot be made.
        """
        try:
            with self._engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                inspector = sa.inspect(conn)
                if (
                    inspector.has_table(TABLE_NAME)
                    and inspector.has_table(HEADS_TABLE_NAME)
                    and self._has_triggers(conn)
                ):
                    return
                metadata.create_all(conn, checkfirst=True)
                for stmt in schema_ddl(self.dialect):
                    conn.execute(sa.text(stmt))
        except sa.exc.SQLAlchemyError as exc:
            raise AuditError(
                f"cannot create the audit schema in `{_safe_url(self.url)}`: {_describe(exc)}"
            ) from exc

    def _has_triggers(self, conn: sa.Connection) -> bool:
        if self.dialect == "postgresql":
            query = sa.text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                "AND NOT tgisinternal AND tgenabled <> 'D'"
            )
            names = {r[0] for r in conn.execute(query, {"t": TABLE_NAME})}
        else:
            query = sa.text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"
            )
            names = {r[0] for r in conn.execute(query, {"t": TABLE_NAME})}
        return _TRIGGERS[self.dialect] <= names

    def grant_app_role(self, role: str) -> None:
        """PostgreSQL: leave ``role`` only SELECT and INSERT on the table (run as its owner).

        Raises:
            AuditError: not PostgreSQL, a bad role name, or the database refuses.
        """
        if self.dialect != "postgresql":
            raise AuditError("role grants apply to PostgreSQL only")
        try:
            with self._engine.begin() as conn:
                for stmt in app_role_grants(role):
                    conn.execute(sa.text(stmt))
        except sa.exc.SQLAlchemyError as exc:
            raise AuditError(f"cannot grant audit rights to `{role}`: {_describe(exc)}") from exc

    # -- writing --------------------------------------------------------------------------

    def _head(self, conn: sa.Connection, chain: str) -> ChainHead:
        # driver-level SQL: compiling a Core select per batch is measurable on the hot path
        last = conn.exec_driver_sql(self._head_sql, (chain,)).first()
        return ChainHead(int(last[0]), str(last[1])) if last else ChainHead()

    def _checked_head(self, conn: sa.Connection, chain: str) -> ChainHead:
        """The chain's last record, refusing a chain cut or rewritten behind our back.

        Raises:
            AuditIntegrityError: the recorded head is not the last record (someone deleted
                or replaced the tail); appending would bury the evidence.
        """
        row = conn.exec_driver_sql(self._heads_sql, (chain,) * 4).first()
        assert row is not None
        last = ChainHead(int(row[0]), str(row[1])) if row[0] is not None else ChainHead()
        if row[2] is not None and (int(row[2]), str(row[3])) != (last.seq, last.hash):
            raise AuditIntegrityError(
                f"audit chain `{chain}` ends at seq {last.seq} but its recorded head is seq "
                f"{row[2]}: the tail was cut or rewritten; refusing to append (run `aegis "
                f"audit verify`)"
            )
        return last

    def _validate(self, record: AuditRecordV1) -> None:
        _check(record)

    def _write(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        try:
            try:
                return self._transaction(records)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # a pooled connection died (database restarted): one retry on a fresh one
                return self._transaction(records)
        except sa.exc.IntegrityError as exc:  # a repeated id: retrying cannot help
            raise RecordRejected(
                f"audit write to `{_safe_url(self.url)}` refused: {_describe(exc)}"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise AuditError(
                f"audit write to `{_safe_url(self.url)}` failed: {_describe(exc)}"
            ) from exc

    def _transaction(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        # Driver-level statements throughout: compiling Core constructs per batch costs as
        # much as the database work on this hot path.
        out: list[AuditRecordV1 | None] = [None] * len(records)
        groups = group_by_chain(records)
        postgres = self.dialect == "postgresql"
        with self._engine.begin() as conn:
            rows: list[tuple[Any, ...]] = []
            for chain in sorted(groups):  # INVARIANT: sorted, so two writers never deadlock
                check_chain_name(chain)
                if postgres:
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_lock_key(chain),))
                head = self._checked_head(conn, chain)
                idx = groups[chain]
                sealed, _ = seal([records[i] for i in idx], head)
                for i, rec in zip(idx, sealed, strict=True):
                    out[i] = rec
                    rows.append(_row_for(rec, self.dialect))
            if postgres:  # one multi-row INSERT: one round trip for the whole batch
                flat = tuple(v for row in rows for v in row)
                conn.exec_driver_sql(_insert_sql("format", len(rows)), flat)
            else:  # sqlite3's executemany runs in-process
                conn.exec_driver_sql(self._insert, rows)
            heads = list({r.chain: (r.chain, r.seq, r.hash) for r in out if r is not None}.values())
            conn.exec_driver_sql(self._head_upsert, heads[0] if len(heads) == 1 else heads)
        return [r for r in out if r is not None]

    def _stored_ids(self, records: Sequence[AuditRecordV1]) -> set[str]:
        ids = [r.id for r in records]
        found: set[str] = set()
        try:
            with self._engine.connect() as conn:
                conn.execution_options(aegis_audit_read=True)
                for start in range(0, len(ids), 500):
                    part = ids[start : start + 500]
                    q = sa.select(audit_records.c.id).where(audit_records.c.id.in_(part))
                    found.update(r[0] for r in conn.execute(q))
        except sa.exc.SQLAlchemyError as exc:
            raise AuditError(f"audit read failed: {_describe(exc)}") from exc
        return found

    def _close_backend(self) -> None:
        self._engine.dispose()

    # -- reading --------------------------------------------------------------------------

    def head(self, chain: str) -> ChainHead:
        """The last record's seq and hash in ``chain`` (``ChainHead()`` when empty).

        Raises:
            AuditError: the database fails.
        """
        try:
            with self._engine.connect() as conn:
                conn.execution_options(aegis_audit_read=True)
                return self._head(conn, chain)
        except sa.exc.SQLAlchemyError as exc:
            raise AuditError(f"audit read failed: {_describe(exc)}") from exc

    def records(self, chain: str) -> list[AuditRecordV1]:
        """Every record of ``chain`` in seq order, parsed from the hashed bodies.

        Raises:
            AuditError: the database fails or a body does not parse.
        """
        with _reader(self._engine) as conn, contextlib.closing(_chain_entries(conn, chain)) as it:
            return [e.record for e in it if e.record is not None]

    def verify(self, anchors: Mapping[str, ChainHead] | None = None) -> dict[str, VerifyResult]:
        """Verify every chain in the database (see :func:`verify_database`)."""
        return _verify_engine(self._engine, anchors)


@contextlib.contextmanager
def _reader(engine: sa.Engine) -> Iterator[sa.Connection]:
    try:
        with engine.connect() as conn:
            conn.execution_options(aegis_audit_read=True)
            yield conn
    except sa.exc.SQLAlchemyError as exc:
        raise AuditError(
            f"cannot read audit database `{_safe_url(engine.url)}`: {_describe(exc)}"
        ) from exc


def _chain_entries(conn: sa.Connection, chain: str) -> Generator[Entry, None, None]:
    t = audit_records
    query = sa.select(t).where(t.c.chain == chain).order_by(t.c.seq)
    result = conn.execution_options(yield_per=1000).execute(query)
    try:
        for row in result:
            yield _entry(row)
    finally:
        result.close()  # verify() may stop early: release the server-side cursor


def _verify_engine(
    engine: sa.Engine, anchors: Mapping[str, ChainHead] | None
) -> dict[str, VerifyResult]:
    results: dict[str, VerifyResult] = {}
    external = dict(anchors or {})
    with _reader(engine) as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(TABLE_NAME):
            raise AuditError(
                f"database `{_safe_url(engine.url)}` has no audit table `{TABLE_NAME}`"
            )
        stored: dict[str, ChainHead] = {}
        if inspector.has_table(HEADS_TABLE_NAME):
            h = audit_heads
            stored = {
                str(r[0]): ChainHead(int(r[1]), str(r[2]))
                for r in conn.execute(sa.select(h.c.chain, h.c.seq, h.c.hash))
            }
        t = audit_records
        chains = [r[0] for r in conn.execute(sa.select(t.c.chain).distinct().order_by(t.c.chain))]
        for chain in sorted(set(chains) | set(external) | set(stored)):
            heads = [a for a in (external.get(chain), stored.get(chain)) if a is not None]
            with contextlib.closing(_chain_entries(conn, chain)) as entries:
                results[chain] = verify(entries, chain=chain, anchor=heads)
    return results


def verify_database(
    url: str | sa.URL, *, anchors: Mapping[str, ChainHead] | None = None
) -> dict[str, VerifyResult]:
    """Verify every audit chain kept in a database.

    Args:
        url: SQLAlchemy URL of the database.
        anchors: heads published to an independent anchor, by chain; an anchored chain
            missing from the database is reported as truncated.

    Returns:
        One :class:`VerifyResult` per chain, by chain name.

    Raises:
        AuditError: bad URL, unreachable database, or no audit table.
    """
    engine = _make_engine(url)
    database = engine.url.database
    in_file = engine.dialect.name == "sqlite" and database and database != ":memory:"
    if in_file and not Path(str(database)).is_file():  # connecting would create it, empty
        engine.dispose()
        raise AuditError(f"no audit database file `{database}`")
    try:
        return _verify_engine(engine, anchors)
    finally:
        engine.dispose()


class SqlSinkConfig(BaseModel):
    """Configuration of the ``sql`` entry point."""

    model_config = ConfigDict(extra="forbid")
    url: str
    mode: Mode = "sync"
    create_schema: bool = True
    spill_path: Path | None = None
    sqlite_synchronous: str = "FULL"
    anchor_path: Path | None = None
    anchor_interval: float = 60.0


class _Factory:
    config_model = SqlSinkConfig

    def create(self, config: SqlSinkConfig) -> SqlAuditSink:
        return SqlAuditSink(
            config.url,
            mode=config.mode,
            create_schema=config.create_schema,
            spill_path=config.spill_path,
            sqlite_synchronous=config.sqlite_synchronous,
            anchor=HeadAnchor(config.anchor_path) if config.anchor_path else None,
            anchor_interval=config.anchor_interval,
        )


factory = _Factory()
"""Entry point ``aegis.audit_sinks:sql``."""
