"""The real ``aegis executor`` on PostgreSQL and Redis (the production shape), when available."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from executor_service_support import action, encode, post, signed_headers, start_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


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
