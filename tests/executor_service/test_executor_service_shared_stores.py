"""The real ``aegis executor`` on PostgreSQL and Redis (the production shape), when available."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
import redis
from executor_service_support import (
    GUARDRAILS,
    Server,
    TcpProxy,
    action,
    encode,
    post,
    signed_headers,
    start_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.mark.postgres
def test_SIG3_a_nonce_redis_forgot_is_still_a_replay_on_postgresql(
    tmp_path: Path, postgres_schema: str, redis_url: str
) -> None:
    server = start_server(
        tmp_path, "--allow-namespaces", "prod", "--redis", redis_url, database=postgres_schema
    )
    client = redis.Redis.from_url(redis_url)
    try:
        body = encode(action(type="restart_deployment", params={}))
        headers = signed_headers("POST", "/v1/actions", body)
        first = post(server, body, headers)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "succeeded"
        key = f"aegis:nonce:{headers['Aegis-Key-Id']}:{headers['Aegis-Nonce']}"
        assert client.delete(key) == 1  # as if Redis had been flushed or had evicted it
        replay = post(server, body, headers)
        assert replay.status_code == 409
        assert replay.json()["error"]["code"] == "actuator.replay"
        with server.http() as http:
            assert http.get("/health").json()["status"] == "ok"
    finally:
        client.close()
        server.stop()


def test_FLT02_redis_down_during_a_call_is_503_and_touches_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    target = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy(str(target.get("host", "127.0.0.1")), int(target.get("port", 6379)))
    db = target.get("db", 0)
    (tmp_path / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    server = start_server(
        tmp_path,
        "--allow-namespaces",
        "prod",
        "--guardrails",
        str(tmp_path / "guardrails.yaml"),
        "--redis",
        f"redis://127.0.0.1:{proxy.port}/{db}",
    )
    try:
        first = scale(server, 4)
        assert first.status_code == 200, first.text
        proxy.cut()
        refused = scale(server, 6)
        assert refused.status_code == 503, refused.text
        assert "Traceback" not in refused.text
        with server.http() as http:
            metrics = http.get("/metrics").text
        assert "aegis_executor_store_unavailable_total 1.0" in metrics
    finally:
        server.stop()
    # nothing reached the cluster: the audit trail holds exactly the first action
    with sqlite3.connect(server.database.removeprefix("sqlite:///")) as conn:
        statuses = conn.execute("SELECT status FROM aegis_executor_actions").fetchall()
    assert statuses == [("succeeded",)]


def scale(server: Server, replicas: int) -> httpx.Response:
    body = encode(action(params={"replicas": replicas}))
    return post(server, body, signed_headers("POST", "/v1/actions", body))
