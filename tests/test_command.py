"""The ``aegis`` command: a stable interface for scripts and CI jobs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

DIAGNOSTIC = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): error\[(?P<code>[a-z-]+)\]: "
)


def aegis(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aegis.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    (folder / "nested").mkdir(parents=True)
    (folder / "ops.aegis").write_text('allow "read" { action == "read" }\n', encoding="utf-8")
    (folder / "nested" / "deny.aegis").write_text(
        'deny "no-secrets" { resource.kind == "secret" reason "never" }\n', encoding="utf-8"
    )
    (folder / "notes.txt").write_text("not a policy", encoding="utf-8")
    return folder


def test_check_clean_set_exits_0(policies: Path) -> None:
    done = aegis("check", str(policies))
    assert done.returncode == 0, done.stderr
    assert "2 rules" in done.stderr


def test_check_reports_every_diagnostic_as_file_line_col_code_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aegis"
    bad.write_text('allow "a" { resource.a = 1 }\nallow "b" { resource.b == "\\q" }\n', "utf-8")
    other = tmp_path / "other.aegis"
    other.write_text('deny "a" {}\n', "utf-8")
    done = aegis("check", str(bad), str(other))
    assert done.returncode == 1
    found = [m.groupdict() for line in done.stderr.splitlines() if (m := DIAGNOSTIC.match(line))]
    assert [(Path(f["file"]).name, f["line"], f["col"], f["code"]) for f in found] == [
        ("bad.aegis", "1", "24", "syntax"),
        ("bad.aegis", "2", "28", "invalid-escape"),
    ]
    assert "Traceback" not in done.stderr


def test_check_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin.aegis"
    latin.write_bytes(b'allow "caf\xe9" {}\n')
    done = aegis("check", str(latin), str(tmp_path / "missing.aegis"))
    assert done.returncode == 1
    codes = [m["code"] for line in done.stderr.splitlines() if (m := DIAGNOSTIC.match(line))]
    assert sorted(codes) == ["encoding", "io-error"]


def test_fmt_check_diff_and_in_place(policies: Path) -> None:
    target = policies / "ops.aegis"
    assert aegis("fmt", "--check", str(policies)).returncode == 1
    diff = aegis("fmt", "--diff", str(target))
    assert '+    action == "read"' in diff.stdout
    assert (
        target.read_text("utf-8") == 'allow "read" { action == "read" }\n'
    )  # --diff writes nothing
    assert aegis("fmt", str(policies)).returncode == 0
    assert target.read_text("utf-8") == 'allow "read" {\n    action == "read"\n}\n'
    assert aegis("fmt", "--check", str(policies)).returncode == 0


def test_fmt_refuses_a_file_that_does_not_parse_and_leaves_it_alone(tmp_path: Path) -> None:
    bad = tmp_path / "bad.aegis"
    bad.write_text('allow "a" { resource.a = 1 }\n', "utf-8")
    done = aegis("fmt", str(bad))
    assert done.returncode == 1
    assert DIAGNOSTIC.match(done.stderr)
    assert bad.read_text("utf-8") == 'allow "a" { resource.a = 1 }\n'


def test_eval_prints_one_json_decision(policies: Path) -> None:
    request = {"principal": {"id": "u"}, "action": "read", "resource": {"kind": "doc"}}
    done = aegis("eval", "--policies", str(policies), "--request", "-", stdin=json.dumps(request))
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert list(decision) == ["decision", "allowed", "reason", "allow", "deny", "errors", "version"]
    assert decision["decision"] == "ALLOW"
    assert decision["allow"] == ["read"]
    denied = aegis(
        "eval",
        "--policies",
        str(policies),
        "--request",
        "-",
        stdin=json.dumps({**request, "resource": {"kind": "secret"}}),
    )
    assert denied.returncode == 0
    assert json.loads(denied.stdout)["reason"] == "never"


def test_eval_now_stands_in_for_the_clock(tmp_path: Path) -> None:
    (tmp_path / "t.aegis").write_text('allow "morning" { time.hour < 12 }\n', "utf-8")
    request = json.dumps({"principal": {}, "action": "a", "resource": {}})
    early = aegis(
        "eval",
        "--policies",
        str(tmp_path),
        "--request",
        "-",
        "--now",
        "2026-11-26T08:00:00Z",
        stdin=request,
    )
    late = aegis(
        "eval",
        "--policies",
        str(tmp_path),
        "--request",
        "-",
        "--now",
        "2026-11-26T20:00:00+00:00",
        stdin=request,
    )
    assert json.loads(early.stdout)["decision"] == "ALLOW"
    assert json.loads(late.stdout)["decision"] == "DENY"
    bad = aegis(
        "eval", "--policies", str(tmp_path), "--request", "-", "--now", "yesterday", stdin=request
    )
    assert bad.returncode == 2


@pytest.mark.parametrize(
    "request_text",
    ['{"principal": {}, "action": 42, "resource": {}}', "not json", "[" * 100_000, "", "null"],
)
def test_eval_invalid_request_exits_2_with_one_line(policies: Path, request_text: str) -> None:
    done = aegis("eval", "--policies", str(policies), "--request", "-", stdin=request_text)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_eval_load_error_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.aegis").write_text('allow "a" { = }\ndeny "b" { = }\n', "utf-8")
    request = tmp_path / "r.json"
    request.write_text('{"principal": {}, "action": "a", "resource": {}}', "utf-8")
    done = aegis("eval", "--policies", str(tmp_path), "--request", str(request))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "bad.aegis:1:13" in done.stderr


def test_test_command_reports_failures_and_a_closing_line(tmp_path: Path) -> None:
    (tmp_path / "cases.yaml").write_text(
        'policies: |\n  allow "a" { action == "read" }\n'
        "cases:\n"
        "  - name: passes\n"
        "    request: {principal: {}, action: read, resource: {}}\n"
        "    decision: ALLOW\n"
        "  - name: fails\n"
        "    request: {principal: {}, action: write, resource: {}}\n"
        "    decision: ALLOW\n",
        "utf-8",
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.yaml").write_text("policies: [\n", "utf-8")
    done = aegis("test", str(tmp_path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[-1] == "1 passed, 2 failed"
    assert any(
        "fails" in line and "expected decision ALLOW" in line and "got decision DENY" in line
        for line in lines
    )
    assert any("broken.yaml" in line for line in lines)


@pytest.mark.parametrize(
    "args",
    [("check",), ("eval", "--policies", "x"), ("nope",), ("fmt", "--bogus", "x")],
)
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...]) -> None:
    done = aegis(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


SCHEMA = """\
principal:
  id: string
  roles: [string]
  mfa?: bool
action: [restart_pod, scale_deployment]
resource:
  kind: string
  namespace: string
  labels: {string: string}
  replicas?: int
"""


def test_check_with_a_schema_reports_each_offending_line(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA, "utf-8")
    bad = tmp_path / "bad.aegis"
    bad.write_text(
        'allow "a" {\n'
        '    action == "restart_pdo"\n'  # unknown action
        '    resource.nmespace == "prod"\n'  # unknown attribute
        "    resource.replicas > 3\n"  # unguarded optional
        "    resource.kind < 3\n"  # type error
        "}\n",
        "utf-8",
    )
    done = aegis("check", str(bad), "--schema", str(tmp_path / "schema.yaml"))
    assert done.returncode == 1
    found = [m.groupdict() for line in done.stderr.splitlines() if (m := DIAGNOSTIC.match(line))]
    assert [(f["line"], f["code"]) for f in found] == [
        ("2", "unknown-action"),
        ("3", "unknown-attribute"),
        ("4", "unguarded-optional"),
        ("5", "type-error"),
    ]
    good = tmp_path / "good.aegis"
    good.write_text(
        'allow "b" { has resource.replicas and resource.replicas > 3 action == "restart_pod" }\n',
        "utf-8",
    )
    assert aegis("check", str(good), "--schema", str(tmp_path / "schema.yaml")).returncode == 0


def test_eval_with_a_schema_never_errors_on_a_conforming_request(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(SCHEMA, "utf-8")
    (tmp_path / "p.aegis").write_text(
        'allow "b" { has resource.replicas and resource.replicas > 3 action == "restart_pod" }\n'
        'deny "c" { has principal.mfa and principal.mfa == false }\n',
        "utf-8",
    )
    conforming = {
        "principal": {"id": "a", "roles": []},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "x", "labels": {}},
    }
    done = aegis(
        "eval", "--policies", str(tmp_path / "p.aegis"), "--schema", str(tmp_path / "schema.yaml"),
        "--request", "-", stdin=json.dumps(conforming),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["errors"] == []
    not_conforming = {**conforming, "resource": {"kind": "pod"}}
    refused = aegis(
        "eval", "--policies", str(tmp_path / "p.aegis"), "--schema", str(tmp_path / "schema.yaml"),
        "--request", "-", stdin=json.dumps(not_conforming),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "does not conform" in refused.stderr
