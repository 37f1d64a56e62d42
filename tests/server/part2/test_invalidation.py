"""How a change reaches the other replicas: Redis pub/sub, else the revision check."""

from __future__ import annotations

import time
from typing import Any

import pytest
from server_helpers import bearer

from aegis.server import policy_service

REQUEST = {"principal": {"id": "a", "roles": []}, "action": "read", "resource": {}}
SOURCE = 'allow "reads" {\n    action == "read"\n}\n'


def _wait_for(check: Any, seconds: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.redis
def test_pubsub_alone_carries_a_change_to_another_replica(
    make_env: Any, postgres_schema: str, redis_url: str, redis_prefix: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(policy_service, "CHECK_INTERVAL", 3600.0)  # no timer: only pub/sub
    shared = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    a = make_env(database_url=postgres_schema, **shared)
    b = make_env(database_url=postgres_schema, jwt_secret=a.settings.jwt_secret, **shared)
    admin = bearer(a.admin())

    def decided() -> str:
        response = b.client.post("/api/v1/evaluate", json=REQUEST, headers=admin)
        return str(response.json()["decision"])

    assert decided() == "DENY"
    time.sleep(0.2)  # B's subscriber is listening
    created = a.client.post(
        "/api/v1/policies", json={"name": "reads", "source": SOURCE}, headers=admin
    )
    assert created.status_code == 201
    assert _wait_for(lambda: decided() == "ALLOW", 1.0) < 1.0


def test_without_redis_the_revision_check_carries_it_within_a_second(
    make_env: Any, tmp_path: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = make_env(database_url=url)
    b = make_env(database_url=url, jwt_secret=a.settings.jwt_secret)
    admin = bearer(a.admin())

    def decided() -> str:
        response = b.client.post("/api/v1/evaluate", json=REQUEST, headers=admin)
        return str(response.json()["decision"])

    assert decided() == "DENY"
    created = a.client.post(
        "/api/v1/policies", json={"name": "reads", "source": SOURCE}, headers=admin
    )
    assert created.status_code == 201
    assert _wait_for(lambda: decided() == "ALLOW", 1.0) < 1.0


def test_a_dead_redis_neither_stops_decisions_nor_changes(make_env: Any, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    dead = {"redis_url": "redis://127.0.0.1:1/0"}  # nothing listens there
    a = make_env(database_url=url, **dead)
    b = make_env(database_url=url, jwt_secret=a.settings.jwt_secret, **dead)
    admin = bearer(a.admin())

    def decided() -> str:
        response = b.client.post("/api/v1/evaluate", json=REQUEST, headers=admin)
        assert response.status_code == 200, response.text
        return str(response.json()["decision"])

    assert decided() == "DENY"
    created = a.client.post(
        "/api/v1/policies", json={"name": "reads", "source": SOURCE}, headers=admin
    )
    assert created.status_code == 201
    assert _wait_for(lambda: decided() == "ALLOW", 1.5) < 1.5
