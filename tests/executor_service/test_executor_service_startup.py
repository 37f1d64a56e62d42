"""CFG-1 / FLT-20: ``aegis executor`` refuses to start on a bad configuration — exit 2, one log
line naming the setting, never the secret."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from executor_service_support import SECRET, SEED, base_env, command, free_port

SHORT = "short-secret-31-bytes-long-xxxxx"[:31]


def run(tmp_path: Path, *args: str, keys: str | None) -> subprocess.CompletedProcess[str]:
    seed = tmp_path / "cluster.yaml"
    seed.write_text(SEED, encoding="utf-8")
    argv = command(
        "--port",
        str(free_port()),
        "--database",
        f"sqlite:///{tmp_path / 'executor.db'}",
        "--actuator",
        "simulated",
        "--cluster",
        str(seed),
        *args,
    )
    return subprocess.run(
        argv, env=base_env(keys), capture_output=True, text=True, timeout=60, check=False
    )


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    errors = [line["message"] for line in lines if line["level"] == "error"]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("refusing to start: ")
    assert "Traceback" not in proc.stderr
    return str(errors[0])


@pytest.mark.parametrize(
    ("keys", "setting"),
    [
        (None, "AEGIS_EXECUTOR_KEYS is not set"),
        ("", "AEGIS_EXECUTOR_KEYS is not set"),
        (f"ops:{SHORT}", "AEGIS_EXECUTOR_KEYS: executor key `ops` is shorter than 32 bytes"),
        (f"ops:{SECRET},ci:{SHORT}", "AEGIS_EXECUTOR_KEYS: executor key `ci` is shorter"),
        (SECRET, "AEGIS_EXECUTOR_KEYS: executor keys must be `kid:secret` pairs"),
    ],
    ids=["unset", "empty", "short", "one-short", "no-key-id"],
)
def test_CFG1_no_keys_or_a_short_key_refuses_to_start(
    tmp_path: Path, keys: str | None, setting: str
) -> None:
    message = refusal(run(tmp_path, "--allow-namespaces", "prod", keys=keys))
    assert setting in message
    assert SHORT not in message and SECRET not in message


@pytest.mark.parametrize("value", [None, "", ",,"], ids=["missing", "empty", "commas"])
def test_CFG1_an_empty_allowlist_refuses_to_start(tmp_path: Path, value: str | None) -> None:
    args = [] if value is None else ["--allow-namespaces", value]
    message = refusal(run(tmp_path, *args, keys=f"ops:{SECRET}"))
    assert "--allow-namespaces" in message


def test_CFG1_an_invalid_namespace_in_the_allowlist_refuses_to_start(tmp_path: Path) -> None:
    message = refusal(run(tmp_path, "--allow-namespaces", "prod,Prod", keys=f"ops:{SECRET}"))
    assert "--allow-namespaces" in message


def test_a_policy_set_that_does_not_load_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "bad.aegis").write_text('allow "x" {', encoding="utf-8")
    message = refusal(
        run(
            tmp_path,
            "--allow-namespaces",
            "prod",
            "--policies",
            str(tmp_path / "p"),
            keys=f"ops:{SECRET}",
        )
    )
    assert "--policies" in message


def test_a_missing_cluster_file_refuses_to_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        command(
            "--port",
            str(free_port()),
            "--allow-namespaces",
            "prod",
            "--cluster",
            str(tmp_path / "nope.yaml"),
        ),
        env=base_env(f"ops:{SECRET}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert "--cluster" in refusal(proc)
