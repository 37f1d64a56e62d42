"""The flows against the machine's real PostgreSQL and Redis (skipped without them)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import Env, bearer

from aegis.server.audit import verify_chain
from aegis.server.db.models import AuditEvent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def pg_env(make_env: Any, postgres_schema: str, redis_url: str, redis_prefix: str) -> Env:
    env: Env = make_env(
        database_url=postgres_schema, redis_url=redis_url, redis_prefix=redis_prefix
    )
    return env


def test_flows_on_postgres_and_redis(pg_env: Env) -> None:
    env = pg_env
    admin = env.admin()
    pair = env.user("pg@example.com")
    assert env.client.get("/api/v1/users/me", headers=bearer(pair)).status_code == 200
    rotated = env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    replay = env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert replay.status_code == 401
    successor = env.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert successor.status_code == 401  # SES-3 on PostgreSQL
    fresh = env.login("pg@example.com").json()
    assert (
        env.client.post(
            "/api/v1/auth/logout",
            json={"refresh_token": fresh["refresh_token"]},
            headers=bearer(fresh),
        ).status_code
        == 204
    )
    assert env.client.get("/api/v1/users/me", headers=bearer(fresh)).status_code == 401
    env.client.post("/api/v1/auth/forgot-password", json={"email": "pg@example.com"})
    token = env.mailer.last_token("pg@example.com")
    assert (
        env.client.post(
            "/api/v1/auth/reset-password", json={"token": token, "new_password": "postgres phrase"}
        ).status_code
        == 204
    )
    assert env.login("pg@example.com", "postgres phrase").status_code == 200
    health = env.client.get("/api/v1/health").json()
    assert health["status"] == "ok"
    assert health["checks"]["redis"]["status"] == "ok"
    events = env.client.get("/api/v1/audit/events?limit=500", headers=bearer(admin)).json()
    assert "refresh_reuse_detected" in [e["action"] for e in events["items"]]
    assert env.db.run_sync(verify_chain) is None


def test_SES4_twenty_simultaneous_refreshes_on_postgres(pg_env: Env) -> None:
    env = pg_env
    pair = env.user("race-pg@example.com")

    async def race() -> list[int]:
        transport = httpx.ASGITransport(app=env.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
                    )
                    for _ in range(20)
                )
            )
        return [r.status_code for r in responses]

    codes = env.client.portal.call(race)
    assert codes.count(200) == 1, codes
    assert codes.count(401) == 19, codes


def test_AUD2_concurrent_writers_keep_the_chain_gapless(pg_env: Env) -> None:
    env = pg_env

    async def burst() -> None:
        transport = httpx.ASGITransport(app=env.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/auth/login",
                        json={"email": f"nobody{i}@example.com", "password": "wrong guess"},
                    )
                    for i in range(15)
                )
            )

    env.client.portal.call(burst)
    with env.db.engine.connect() as conn:
        seqs = list(conn.execute(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 15
    assert env.db.run_sync(verify_chain) is None


def test_AUD1_postgres_refuses_update_delete_truncate(pg_env: Env) -> None:
    env = pg_env
    env.user("immutable@example.com")
    for statement in (
        "UPDATE audit_events SET outcome = 'forged'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(sa.exc.DBAPIError), env.db.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert env.db.run_sync(verify_chain) is None


def test_RL1_limits_are_shared_between_replicas(
    make_env: Any, postgres_schema: str, redis_url: str, redis_prefix: str
) -> None:
    common = {
        "database_url": postgres_schema,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "rate_limit_anonymous": "10/minute",
    }
    one = make_env(**common)
    two = make_env(**common)
    codes = []
    for i in range(12):
        replica = one if i % 2 == 0 else two
        codes.append(replica.client.get("/api/v1/health/ping").status_code)
    assert codes.count(200) == 10, codes
    assert codes[-2:] == [429, 429]
    assert one.app.state.aegis.metrics.registry.get_sample_value("ratelimit_fail_open_total") == 0


def test_BF1_login_throttle_shared_through_redis(
    make_env: Any, postgres_schema: str, redis_url: str, redis_prefix: str
) -> None:
    common = {"database_url": postgres_schema, "redis_url": redis_url, "redis_prefix": redis_prefix}
    one = make_env(**common)
    two = make_env(**common)
    one.signup("shared-throttle@example.com")
    codes = []
    for i in range(12):
        replica = one if i % 2 == 0 else two
        codes.append(replica.login("shared-throttle@example.com", f"guess {i} wrong").status_code)
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
