"""SQL sink on SQLite and PostgreSQL: append-only triggers, tampering, concurrency (AUD-1/2/3)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from aegis.engine.audit import AuditRecordV1, HeadAnchor, event_record
from aegis.engine.audit.sql import (
    HEADS_TABLE_NAME,
    TABLE_NAME,
    SqlAuditSink,
    app_role_grants,
    audit_records,
    schema_ddl,
    verify_database,
)
from aegis.engine.errors import AuditError, AuditIntegrityError

Records = Callable[..., list[AuditRecordV1]]


@pytest.fixture
def sink(sql_url: str) -> Iterator[SqlAuditSink]:
    s = SqlAuditSink(sql_url)
    yield s
    s.close()


@pytest.fixture
def admin(sql_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the same database: the intruder's (superuser) connection."""
    engine = sa.create_engine(sql_url)
    yield engine
    engine.dispose()


def drop_triggers(admin: sa.Engine) -> None:
    """What an intruder with database access does first."""
    with admin.begin() as conn:
        if admin.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {TABLE_NAME} DISABLE TRIGGER ALL"))
        else:
            conn.execute(sa.text("DROP TRIGGER aegis_audit_no_update"))
            conn.execute(sa.text("DROP TRIGGER aegis_audit_no_delete"))


def run(admin: sa.Engine, sql: str, **params: object) -> None:
    with admin.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_append_seals_gapless_and_verifies(sink: SqlAuditSink, records: Records) -> None:
    out = sink.append(records(3))
    out += sink.append(records(2, start=3))
    assert [r.seq for r in out] == [1, 2, 3, 4, 5]
    assert out[1].prev_hash == out[0].hash
    assert sink.head("decisions").seq == 5
    assert sink.records("decisions") == out
    result = sink.verify()["decisions"]
    assert result.ok
    assert result.checked == 5


def test_several_chains_in_one_database(sink: SqlAuditSink, records: Records) -> None:
    sink.append(records(2) + records(3, chain="events") + records(1))
    assert [r.seq for r in sink.records("decisions")] == [1, 2, 3]
    assert [r.seq for r in sink.records("events")] == [1, 2, 3]
    results = sink.verify()
    assert set(results) == {"decisions", "events"}
    assert all(r.ok for r in results.values())


def test_create_schema_is_idempotent(sql_url: str, records: Records) -> None:
    with SqlAuditSink(sql_url) as first:
        first.append(records(1))
    with SqlAuditSink(sql_url) as second:
        second.create_schema()
        assert second.append(records(1))[0].seq == 2


def test_AUD1_triggers_refuse_update_and_delete(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(3))
    for sql in (
        f"UPDATE {TABLE_NAME} SET decision = 'ALLOW' WHERE seq = 2",
        f"DELETE FROM {TABLE_NAME} WHERE seq = 3",
        f"DELETE FROM {TABLE_NAME}",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            run(admin, sql)
    assert len(sink.records("decisions")) == 3
    assert sink.verify()["decisions"].ok


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_AUD1_truncate_is_refused_on_postgresql(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(2))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        run(admin, f"TRUNCATE {TABLE_NAME}")
    assert len(sink.records("decisions")) == 2


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
def test_AUD1_app_role_can_only_select_and_insert(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(2))
    role = f"aegis_app_{uuid.uuid4().hex[:10]}"
    schema = admin.url.query["options"].split("=")[-1]  # type: ignore[union-attr]
    run(admin, f'CREATE ROLE "{role}" NOLOGIN')
    try:
        run(admin, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        sink.grant_app_role(role)
        attempts = [
            f"UPDATE {TABLE_NAME} SET decision = 'ALLOW'",
            f"DELETE FROM {TABLE_NAME}",
            f"TRUNCATE {TABLE_NAME}",
            f"ALTER TABLE {TABLE_NAME} DISABLE TRIGGER ALL",
            "SET session_replication_role = replica",
        ]
        for sql in attempts:
            with admin.connect() as conn:
                conn.execute(sa.text(f'SET ROLE "{role}"'))
                with pytest.raises(sa.exc.DatabaseError):
                    conn.execute(sa.text(sql))
                conn.rollback()
        with admin.connect() as conn:  # the app role can still append and read
            conn.execute(sa.text(f'SET ROLE "{role}"'))
            count = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE_NAME}")).scalar()
            conn.rollback()
        assert count == 2
        app = SqlAuditSink(admin.url, create_schema=True)
        app.close()
    finally:
        run(admin, f'DROP OWNED BY "{role}"')
        run(admin, f'DROP ROLE "{role}"')
    assert sink.verify()["decisions"].ok
    with pytest.raises(AuditError, match="invalid role"):
        app_role_grants('x"; DROP TABLE y; --')


@pytest.mark.parametrize("edit", ["body", "decision", "time", "harmless", "hash", "prev_hash"])
def test_AUD2_changed_row_is_named_after_triggers_dropped(
    sink: SqlAuditSink, admin: sa.Engine, records: Records, edit: str
) -> None:
    sink.append(records(6))
    drop_triggers(admin)
    sets = {
        "body": "body = replace(body, 'api-3', 'api-X')",
        "decision": "decision = 'XXX'",
        "time": "time = '2020-01-01 00:00:00'",
        "harmless": "body = replace(body, '{\"allow\":', '{ \"allow\":')",  # same JSON value
        "hash": "hash = prev_hash",
        "prev_hash": "prev_hash = hash",
    }
    run(admin, f"UPDATE {TABLE_NAME} SET {sets[edit]} WHERE seq = 4")
    result = verify_database(sink.url)["decisions"]
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "changed", 4)


def test_AUD2_changed_and_rehashed_row_is_named(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    out = sink.append(records(5))
    drop_triggers(admin)
    forged = out[2]._clone(reason="nothing to see").sealed(3, out[1].hash or "")
    run(
        admin,
        f"UPDATE {TABLE_NAME} SET body = :b, hash = :h WHERE seq = 3",
        b=forged.body_json(),
        h=forged.hash,
    )
    result = verify_database(sink.url)["decisions"]
    assert (result.problem, result.first_bad_seq) == ("changed", 3)


def test_AUD2_deleted_row_is_named(sink: SqlAuditSink, admin: sa.Engine, records: Records) -> None:
    sink.append(records(6))
    drop_triggers(admin)
    run(admin, f"DELETE FROM {TABLE_NAME} WHERE seq = 3")
    result = verify_database(sink.url)["decisions"]
    assert (result.problem, result.first_bad_seq) == ("deleted", 3)


def test_AUD2_inserted_row_is_named(sink: SqlAuditSink, admin: sa.Engine, records: Records) -> None:
    out = sink.append(records(4))
    drop_triggers(admin)
    # the intruder shifts seq 3.. up by one to make room, then inserts a fitted record
    run(admin, f"UPDATE {TABLE_NAME} SET seq = seq + 100 WHERE seq >= 3")
    run(admin, f"UPDATE {TABLE_NAME} SET seq = seq - 99 WHERE seq >= 100")
    forged = event_record("decision", {"forged": True}, chain="decisions").sealed(
        3, out[1].hash or ""
    )
    with admin.begin() as conn:
        row = dict(
            conn.execute(sa.select(audit_records).where(audit_records.c.seq == 4)).mappings().one()
        )
        row.update(
            id=forged.id,
            seq=3,
            kind=forged.kind,
            decision=None,
            policy_version=None,
            prev_hash=forged.prev_hash,
            hash=forged.hash,
            body=forged.body_json(),
        )
        conn.execute(sa.insert(audit_records), [row])
    result = verify_database(sink.url)["decisions"]
    assert not result.ok
    assert result.first_bad_seq in (3, 4)
    assert result.problem in ("inserted", "reordered", "changed")


def test_AUD2_inserted_row_with_free_seq_is_named(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    out = sink.append(records(3))
    drop_triggers(admin)
    # a consistent forged row (columns agree with its body) at the free seq 0
    forged = out[1]._clone(id=str(uuid.uuid4()), reason="forged").sealed(0, out[0].hash or "")
    with admin.begin() as conn:
        row = dict(
            conn.execute(sa.select(audit_records).where(audit_records.c.seq == 2)).mappings().one()
        )
        row.update(
            id=forged.id,
            seq=0,
            body=forged.body_json(),
            hash=forged.hash,
            prev_hash=forged.prev_hash,
        )
        conn.execute(sa.insert(audit_records), [row])
    result = verify_database(sink.url)["decisions"]
    assert (result.problem, result.first_bad_seq, result.bad_id) == ("inserted", 1, forged.id)
    # a sloppy copy (columns disagree with the body) is caught as well, at the same place
    run(admin, f"DELETE FROM {TABLE_NAME} WHERE seq = 0")
    with admin.begin() as conn:
        row.update(id=str(uuid.uuid4()), body=out[1].body_json(), hash=out[1].hash)
        conn.execute(sa.insert(audit_records), [row])
    sloppy = verify_database(sink.url)["decisions"]
    assert (sloppy.ok, sloppy.first_bad_seq) == (False, 1)
    assert "seq=0" in (sloppy.where or "")


def test_AUD2_swapped_rows_are_named(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(6))
    drop_triggers(admin)
    with admin.begin() as conn:
        rows = {
            r.seq: r
            for r in conn.execute(
                sa.select(audit_records).where(audit_records.c.seq.in_([2, 5]))
            ).mappings()
        }
        for seq, other in ((2, 5), (5, 2)):
            src = rows[other]
            conn.execute(
                sa.update(audit_records)
                .where(audit_records.c.seq == seq)
                .values(
                    id=f"tmp-{seq}" if seq == 2 else src["id"],
                    body=src["body"],
                    hash=src["hash"],
                    prev_hash=src["prev_hash"],
                    time=src["time"],
                    decision=src["decision"],
                    kind=src["kind"],
                )
            )
        conn.execute(
            sa.update(audit_records).where(audit_records.c.seq == 2).values(id=rows[5]["id"])
        )
    result = verify_database(sink.url)["decisions"]
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert result.problem == "reordered"


def test_AUD3_truncated_tail_is_detected_with_the_anchor(
    sql_url: str, admin: sa.Engine, records: Records, tmp_path: Path
) -> None:
    anchor = HeadAnchor(tmp_path / "anchor.jsonl")
    with SqlAuditSink(sql_url, anchor=anchor, anchor_interval=0) as s:
        s.append(records(5))
    drop_triggers(admin)
    run(admin, f"DELETE FROM {TABLE_NAME} WHERE seq >= 4")
    naive = verify_database(sql_url)["decisions"]  # the in-store head catches a naive cut
    assert (naive.ok, naive.problem, naive.first_bad_seq) == (False, "truncated", 4)
    with admin.begin() as conn:  # an intruder who knows the format rewrites the head too
        last = conn.execute(sa.text(f"SELECT hash FROM {TABLE_NAME} WHERE seq = 3")).scalar()
        conn.execute(sa.text(f"UPDATE {HEADS_TABLE_NAME} SET seq = 3, hash = :h"), {"h": last})
    assert verify_database(sql_url)["decisions"].ok  # the store alone cannot tell any more
    result = verify_database(sql_url, anchors=anchor.latest())["decisions"]
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "truncated", 4)
    run(admin, f"DELETE FROM {TABLE_NAME}")
    run(admin, f"DELETE FROM {HEADS_TABLE_NAME}")
    gone = verify_database(sql_url, anchors=anchor.latest())["decisions"]
    assert (gone.ok, gone.problem) == (False, "truncated")


def test_AUD2_50_concurrent_writers_stay_gapless(sql_url: str, records: Records) -> None:
    # several sinks (as several processes would) and several threads per sink
    sinks = [SqlAuditSink(sql_url) for _ in range(3)]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            s = sinks[k % len(sinks)]
            for i in range(8):
                s.append(records(1 + i % 2, start=k * 100 + i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in sinks:
        s.close()
    assert not errors
    results = verify_database(sql_url)
    assert results["decisions"].ok
    assert results["decisions"].checked == 50 * 12
    assert results["decisions"].head.seq == 600


def test_records_of_a_failed_batch_are_not_partially_written(
    sink: SqlAuditSink, records: Records
) -> None:
    good = records(2)
    dup = sink.append(records(1))[0].unsealed()  # same id again: UNIQUE(id) refuses
    with pytest.raises(AuditError, match="audit write"):
        sink.append([*good, dup])
    assert sink.head("decisions").seq == 1
    assert sink.append(good)[0].seq == 2


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="invalid audit database URL"):
        SqlAuditSink("not a url")
    with pytest.raises(AuditError, match="not supported"):
        SqlAuditSink("mysql://x@localhost/db")
    with pytest.raises(AuditError, match="in-memory SQLite"):
        SqlAuditSink("sqlite://")
    (tmp_path / "empty.db").touch()
    with pytest.raises(AuditError, match="no audit table"):
        verify_database(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(AuditError, match="not supported"):
        schema_ddl("oracle")


def test_sink_after_close_refuses(sql_url: str, records: Records) -> None:
    s = SqlAuditSink(sql_url)
    s.close()
    s.close()
    with pytest.raises(AuditError, match="closed"):
        s.append(records(1))


def test_AUD2_deleted_last_row_is_caught_by_the_stored_head(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(4))
    drop_triggers(admin)
    run(admin, f"DELETE FROM {TABLE_NAME} WHERE seq = 4")
    result = verify_database(sink.url)["decisions"]
    assert (result.ok, result.problem, result.first_bad_seq) == (False, "truncated", 4)


class GatedSink(SqlAuditSink):
    """Blocks the first write until released, so the test controls what is batched."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _write(self, records: Sequence[AuditRecordV1]) -> list[AuditRecordV1]:
        self.gate.wait(10)
        return super()._write(records)


def test_one_refused_record_fails_only_its_own_caller(sql_url: str, records: Records) -> None:
    sink = GatedSink(sql_url)
    dup = sink.append(records(1))[0].unsealed()  # its id is taken: the store refuses it again
    sink.gate.clear()
    outcomes: dict[int, object] = {}

    def call(k: int) -> None:
        try:
            outcomes[k] = sink.append([dup] if k == 3 else records(1, start=10 + k))[0].seq
        except AuditError as exc:
            outcomes[k] = exc

    threads = [threading.Thread(target=call, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    while len(sink._pending) < 5:  # the first leader holds the gate; five callers queue
        threading.Event().wait(0.005)
    sink.gate.set()
    for t in threads:
        t.join(10)
    sink.close()
    assert isinstance(outcomes[3], AuditError)
    assert "refused" in str(outcomes[3])
    assert sorted(v for k, v in outcomes.items() if k != 3) == [2, 3, 4, 5, 6]
    assert verify_database(sql_url)["decisions"].ok


def test_invalid_record_is_refused_before_it_joins_a_batch(
    sink: SqlAuditSink, records: Records
) -> None:
    bad = records(1)[0]._clone(kind="k" * 65)
    with pytest.raises(AuditError, match="too long"):
        sink.append([bad])
    with pytest.raises(AuditError, match="ISO-8601"):
        sink.append([records(1)[0]._clone(time="yesterday")])
    assert sink.append(records(1))[0].seq == 1


def test_async_refused_record_goes_to_the_rejected_file(tmp_path: Path, records: Records) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    spill = tmp_path / "spill.jsonl"
    first = SqlAuditSink(url).append(records(1))[0]
    sink = SqlAuditSink(url, mode="async", spill_path=spill)
    good = records(3, start=1)
    sink.append([good[0], first.unsealed(), good[1], good[2]])
    sink.close()
    assert sink.rejected_total == 1
    rejected = (tmp_path / "spill.jsonl.rejected").read_text().splitlines()
    assert [AuditRecordV1.from_json(x).id for x in rejected] == [first.id]
    with SqlAuditSink(url) as reader:
        assert [r.id for r in reader.records("decisions")] == [first.id] + [r.id for r in good]


def test_AUD2_row_moved_to_another_chain_is_named_in_both(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(5))
    drop_triggers(admin)
    run(admin, f"UPDATE {TABLE_NAME} SET chain = 'elsewhere' WHERE seq = 3")
    results = verify_database(sink.url)
    assert (results["decisions"].problem, results["decisions"].first_bad_seq) == ("deleted", 3)
    assert (results["elsewhere"].ok, results["elsewhere"].problem) == (False, "changed")


def test_AUD2_appending_after_the_tail_was_cut_is_refused(
    sink: SqlAuditSink, admin: sa.Engine, records: Records
) -> None:
    sink.append(records(4))
    drop_triggers(admin)
    run(admin, f"DELETE FROM {TABLE_NAME} WHERE seq = 4")
    with pytest.raises(AuditIntegrityError, match="tail was cut or rewritten"):
        sink.append(records(1, start=4))  # would otherwise re-use seq 4 and bury the evidence
    result = verify_database(sink.url)["decisions"]
    assert (result.problem, result.first_bad_seq) == ("truncated", 4)
