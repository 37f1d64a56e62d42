"""AUD-5 / FLT-03 against the real ``aegis executor``: an audit store that cannot be written
stops everything (503, nothing reaches the cluster), and ``kill -9`` between the write-ahead
intent and the outcome leaves an intent that the next start reconciles."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from executor_service_support import (
    GUARDRAILS,
    SEED,
    Server,
    action,
    encode,
    free_port,
    post,
    signed_headers,
    start_server,
)

from aegis.actuators import SimulatedCluster
from aegis.testing import FakeKubernetesAPI

pytestmark = pytest.mark.slow


def scale(server: Server, replicas: int, name: str = "api") -> httpx.Response:
    body = encode(action(name=name, params={"replicas": replicas}))
    return post(server, body, signed_headers("POST", "/v1/actions", body))


def audit_down_count(server: Server) -> float:
    with server.http() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("executor_refused_audit_down_total "):
            return float(line.split()[1])
    raise AssertionError("executor_refused_audit_down_total is missing")


def test_FLT03_a_locked_audit_database_refuses_with_503_and_touches_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    server = start_server(
        tmp_path, "--allow-namespaces", "prod", "--guardrails", str(tmp_path / "guardrails.yaml")
    )
    try:
        assert scale(server, 4).json()["result"]["details"]["replicas_before"] == 3
        lock = sqlite3.connect(server.database.removeprefix("sqlite:///"), timeout=10)
        lock.isolation_level = None
        lock.execute("BEGIN EXCLUSIVE")
        try:
            refused = scale(server, 6)  # waits for SQLite's busy timeout, then fails closed
            with server.http() as http:
                health = http.get("/health")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "executor.audit_unavailable"
        assert health.status_code == 503
        assert audit_down_count(server) >= 1
        # the cluster never saw the refused action: the deployment still has 4 replicas
        after = scale(server, 5)
        assert after.status_code == 200, after.text
        assert after.json()["result"]["details"]["replicas_before"] == 4
    finally:
        server.stop()


def test_FLT03_a_read_only_sqlite_file_refuses_with_503_even_for_root(tmp_path: Path) -> None:
    (tmp_path / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    server = start_server(
        tmp_path, "--allow-namespaces", "prod", "--guardrails", str(tmp_path / "guardrails.yaml")
    )
    db = Path(server.database.removeprefix("sqlite:///"))
    try:
        assert scale(server, 4).status_code == 200
        db.chmod(0o444)
        try:
            refused = scale(server, 6)
            with server.client() as client:
                readable = client.get("/v1/report")  # the nonce cannot be recorded either
        finally:
            db.chmod(0o644)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "executor.audit_unavailable"
        assert readable.status_code == 503
        after = scale(server, 5)
        assert after.status_code == 200, after.text
        assert after.json()["result"]["details"]["replicas_before"] == 4
    finally:
        server.stop()


def test_FLT03_an_unreachable_postgresql_at_start_answers_503(
    tmp_path: Path,
) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/aegis"
    server = start_server(tmp_path, "--allow-namespaces", "prod", database=closed)
    try:
        with server.http() as http:
            health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        response = scale(server, 4)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "executor.audit_unavailable"
        assert "audit database" in server.log() and "--database" in server.log()
    finally:
        server.stop()


def test_FLT03_the_service_recovers_when_the_database_comes_back(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"  # SQLite cannot create a file in a missing directory
    server = start_server(
        tmp_path, "--allow-namespaces", "prod", database=f"sqlite:///{missing / 'executor.db'}"
    )
    try:
        assert scale(server, 4).status_code == 503
        missing.mkdir()
        deadline = time.monotonic() + 20
        response = scale(server, 4)
        while response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
            response = scale(server, 4)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["details"]["replicas_before"] == 3
        with server.http() as http:
            assert http.get("/health").status_code == 200
    finally:
        server.stop()


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{url}"}}}}]
users: [{{name: tester, user: {{}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: tester}}}}]
current-context: fake
""",
        encoding="utf-8",
    )
    return path


def _rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute("SELECT id, status FROM aegis_executor_actions").fetchall()


def test_AUD5_kill_9_between_intent_and_outcome_is_reconciled_at_the_next_start(
    tmp_path: Path,
) -> None:
    db = tmp_path / "executor.db"
    with FakeKubernetesAPI(SimulatedCluster.from_yaml(SEED)) as fake:
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig", fake.url)
        args = ("--allow-namespaces", "prod", "--actuator", "kubernetes")
        server = start_server(
            tmp_path, *args, "--kubeconfig", str(kubeconfig), database=f"sqlite:///{db}"
        )
        # the cluster hangs on the actuator's first read: the intent is written, no outcome yet
        fake.inject_fault(0, method="GET", delay=8.0)
        body = encode(action(type="restart_deployment", params={}))
        sender = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: post(server, body, signed_headers("POST", "/v1/actions", body))
            )
        )
        sender.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _rows(db):
            time.sleep(0.02)
        pending = _rows(db)
        assert [status for _, status in pending] == ["pending"], pending
        server.kill9()
        sender.join(timeout=15)
        assert fake.writes == []  # the restart never reached the cluster
        restarted = start_server(
            tmp_path,
            *args,
            "--kubeconfig",
            str(kubeconfig),
            database=f"sqlite:///{db}",
            name="restarted",
        )
        try:
            action_id = pending[0][0]
            assert f"reconciled 1 intent(s) without an outcome as unknown: {action_id}" in (
                restarted.log()
            )
            with restarted.client() as client:
                record = client.get(f"/v1/actions/{action_id}").json()
                report = client.get("/v1/report").json()
            assert record["status"] == "unknown"
            assert record["result"]["reason"] == "reconciled"
            assert report["totals"] == {"unknown": 1}
        finally:
            restarted.stop()


def _ignore_errors(fn: Any) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server was killed mid-request
        fn()


def test_default_guardrails_cool_down_the_same_action_on_the_same_target_only(
    tmp_path: Path,
) -> None:
    server = start_server(tmp_path, "--allow-namespaces", "prod")  # documented defaults

    def send(**over: Any) -> httpx.Response:
        body = encode(action(**over))
        return post(server, body, signed_headers("POST", "/v1/actions", body))

    try:
        assert send(type="restart_deployment", params={}).status_code == 200
        again = send(type="restart_deployment", params={})
        assert again.status_code == 403 and again.json()["error"]["reason"] == "cooldown"
        assert send(type="restart_deployment", params={}, name="web").status_code == 200
        assert send(type="scale_deployment", params={"replicas": 4}).status_code == 200
        dry = send(type="restart_deployment", params={}, dry_run=True)
        assert dry.status_code == 403  # a dry run is checked against the guardrails too
    finally:
        server.stop()
