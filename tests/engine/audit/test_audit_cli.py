"""``aegis audit verify`` and open_sink (the ``--audit URL`` of ``aegis eval``)."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from aegis import _plugins
from aegis.engine.audit import (
    AuditRecordV1,
    AuditSink,
    HeadAnchor,
    JsonlAuditSink,
    MemoryAuditSink,
    open_sink,
    verify_url,
)
from aegis.engine.audit._cli import register, run_verify
from aegis.engine.audit.sql import TABLE_NAME, SqlAuditSink
from aegis.engine.errors import AuditError

Records = Callable[..., list[AuditRecordV1]]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aegis")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_verify(parse(*argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_verify_db_ok_lists_every_chain(sql_url: str, records: Records) -> None:
    with open_sink(sql_url) as sink:
        sink.append(records(3) + records(2, chain="events"))
    code, out, err = call("audit", "verify", "--db", sql_url)
    assert (code, err) == (0, "")
    assert "ok: chain `decisions`: 3 records verified" in out
    assert "ok: chain `events`: 2 records verified" in out


def test_verify_db_names_the_first_bad_record_and_exits_1(sql_url: str, records: Records) -> None:
    with open_sink(sql_url) as sink:
        out_recs = sink.append(records(5))
    admin = sa.create_engine(sql_url)
    with admin.begin() as conn:
        if admin.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {TABLE_NAME} DISABLE TRIGGER ALL"))
        else:
            conn.execute(sa.text("DROP TRIGGER aegis_audit_no_update"))
        conn.execute(sa.text(f"UPDATE {TABLE_NAME} SET body = replace(body, 'api-2', 'api-9')"))
    admin.dispose()
    code, out, _ = call("audit", "verify", "--db", sql_url)
    assert code == 1
    assert "FAILED: chain `decisions`: first bad record seq 3" in out
    assert out_recs[2].id in out
    assert "changed" in out


def test_verify_jsonl_and_anchor(tmp_path: Path, records: Records) -> None:
    path, anchor = tmp_path / "a.jsonl", tmp_path / "anchor.jsonl"
    with open_sink(f"jsonl:{path}", anchor_path=anchor, anchor_interval=0) as sink:
        sink.append(records(4))
    assert call("audit", "verify", "--jsonl", str(path), "--anchor", str(anchor))[0] == 0
    content = path.read_text().splitlines(keepends=True)
    path.write_text("".join(content[:2]))  # tail truncated: the head file notices
    code, out, _ = call("audit", "verify", "--jsonl", str(path))
    assert (code, "truncated" in out) == (1, True)
    (tmp_path / "a.jsonl.head").unlink()  # an informed intruder removes it too
    assert call("audit", "verify", "--jsonl", str(path))[0] == 0
    code, out, _ = call("audit", "verify", "--jsonl", str(path), "--anchor", str(anchor))
    assert code == 1
    assert "truncated" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--db", "nonsense"), "unknown audit URL `nonsense`"),
        (("--db", "mysql://u@localhost/x"), "not supported"),
        (("--db", "sqlite:////nonexistent/dir/a.db"), "no audit database file"),
        (("--jsonl", "/nonexistent/a.jsonl"), "cannot read audit file"),
        (("--jsonl", "/etc/hostname", "--anchor", "/nonexistent"), "cannot read audit anchor"),
    ],
)
def test_unreadable_store_is_one_line_and_exit_2(argv: tuple[str, ...], message: str) -> None:
    code, out, err = call("audit", "verify", *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_verify_requires_one_store() -> None:
    with pytest.raises(SystemExit):
        parse("audit", "verify")
    with pytest.raises(SystemExit):
        parse("audit", "verify", "--db", "x", "--jsonl", "y")


def test_aegis_command_runs_audit_verify(tmp_path: Path, records: Records) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlAuditSink(path) as sink:
        sink.append(records(3))
    aegis = Path(sys.executable).with_name("aegis")
    ok = subprocess.run(
        [str(aegis), "audit", "verify", "--jsonl", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (ok.returncode, ok.stderr) == (0, "")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([lines[1], lines[0], lines[2]]))
    bad = subprocess.run(
        [str(aegis), "audit", "verify", "--jsonl", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "first bad record seq 1" in bad.stdout
    assert "reordered" in bad.stdout


def test_open_sink_maps_urls(tmp_path: Path, records: Records) -> None:
    for url, kind in (
        (f"jsonl:{tmp_path / 'x.jsonl'}", JsonlAuditSink),
        ("memory:", MemoryAuditSink),
        (f"sqlite:///{tmp_path / 'x.db'}", SqlAuditSink),
    ):
        sink = open_sink(url)
        assert isinstance(sink, kind)
        assert isinstance(sink, AuditSink)
        assert sink.append(records(1))[0].seq == 1
        sink.close()
    assert verify_url(f"jsonl:{tmp_path / 'x.jsonl'}")["decisions"].ok
    assert verify_url(f"sqlite:///{tmp_path / 'x.db'}")["decisions"].ok
    with pytest.raises(AuditError, match="names no file"):
        open_sink("jsonl:")
    with pytest.raises(AuditError, match="unknown audit URL"):
        open_sink("ftp:x")


def test_entry_points_build_each_sink(tmp_path: Path, records: Records) -> None:
    assert {"jsonl", "memory", "sql"} <= set(_plugins.available("aegis.audit_sinks"))
    configs = {
        "jsonl": {"path": str(tmp_path / "e.jsonl")},
        "memory": {},
        "sql": {"url": f"sqlite:///{tmp_path / 'e.db'}", "anchor_path": str(tmp_path / "an")},
    }
    for name, config in configs.items():
        sink = _plugins.create("aegis.audit_sinks", name, config)
        assert isinstance(sink, AuditSink)
        sink.append(records(2))
        sink.close()
    assert HeadAnchor(tmp_path / "an").latest()["decisions"].seq == 2
    with pytest.raises(Exception, match="invalid configuration"):
        _plugins.create("aegis.audit_sinks", "sql", {"url": "x", "bogus": 1})


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("store", ["jsonl", "sqlite"])
def test_aegis_eval_audit_then_verify_then_tamper(tmp_path: Path, store: str) -> None:
    aegis = str(Path(sys.executable).with_name("aegis"))
    target = (
        f"jsonl:{tmp_path / 'a.jsonl'}" if store == "jsonl" else f"sqlite:///{tmp_path / 'a.db'}"
    )
    requests = sorted((EXAMPLES / "requests").glob("*.json"))[:3]
    for req in requests:
        done = subprocess.run(
            [
                aegis,
                "eval",
                "--policies",
                str(EXAMPLES / "policies"),
                "--request",
                str(req),
                "--audit",
                target,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    flag = ["--jsonl", str(tmp_path / "a.jsonl")] if store == "jsonl" else ["--db", target]
    ok = subprocess.run(
        [aegis, "audit", "verify", *flag], capture_output=True, text=True, check=False, timeout=60
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(requests)} records verified" in ok.stdout
    if store == "jsonl":
        path = tmp_path / "a.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text(lines[0] + lines[2] + lines[1])
    else:
        admin = sa.create_engine(target)
        with admin.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER aegis_audit_no_delete"))
            conn.execute(sa.text(f"DELETE FROM {TABLE_NAME} WHERE seq = 2"))
        admin.dispose()
    bad = subprocess.run(
        [aegis, "audit", "verify", *flag], capture_output=True, text=True, check=False, timeout=60
    )
    assert bad.returncode == 1
    assert "first bad record seq 2" in bad.stdout


def test_LOG1_urls_in_errors_never_show_a_password() -> None:
    for url in (
        "ftp://user:s3cretpw@host/x",
        "mysql://user:s3cretpw@host/db",
        "postgresql+psycopg://user:s3cretpw@127.0.0.1:1/db",
    ):
        code, out, err = call("audit", "verify", "--db", url)
        assert code == 2
        assert "s3cretpw" not in err + out


def test_verify_json_output_for_scripts(tmp_path: Path, records: Records) -> None:
    import json

    path = tmp_path / "a.jsonl"
    with JsonlAuditSink(path) as sink:
        sink.append(records(3))
    code, out, _ = call("audit", "verify", "--jsonl", str(path), "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    content = path.read_text().splitlines(keepends=True)
    path.write_text(content[0] + content[2])
    code, out, _ = call("audit", "verify", "--jsonl", str(path), "--json")
    result = json.loads(out)
    assert code == 1
    assert (result["ok"], result["first_bad_seq"], result["problem"]) == (False, 2, "deleted")
    assert result["head"] == {"seq": 1, "hash": json.loads(content[0])["hash"]}
