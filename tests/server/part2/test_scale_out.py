"""Two ``aegis serve`` processes on one PostgreSQL and one Redis behave as one service."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SECRET = "scale-out-test-secret-" + "x" * 32
ADMIN = ("ops@example.com", "scale-out admin password 1")
REQUEST = {
    "principal": {"id": "alice", "roles": ["sre"]},
    "action": "restart_pod",
    "resource": {"kind": "pod"},
}


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def replicas(postgres_schema: str, redis_url: str, redis_prefix: str) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "AEGIS_JWT_SECRET": SECRET,
        "AEGIS_DATABASE_URL": postgres_schema,
        "AEGIS_REDIS_URL": redis_url,
        "AEGIS_REDIS_PREFIX": redis_prefix,
        "AEGIS_PASSWORD_HASH_PROFILE": "fast",
    }
    cli = [sys.executable, "-m", "aegis.cli"]
    subprocess.run(
        [*cli, "admin", "create", "--email", ADMIN[0], "--password-stdin"],
        input=ADMIN[1] + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    procs, urls = [], []
    for _ in range(2):
        port = _port()
        procs.append(
            subprocess.Popen(
                [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/api/v1/health/ping", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "a replica did not start"
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _decision(url: str, headers: dict[str, str]) -> Any:
    response = httpx.post(f"{url}/api/v1/evaluate", json=REQUEST, headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_policy_change_through_one_replica_is_in_force_on_the_other_within_1s(
    replicas: list[str],
) -> None:
    a, b = replicas
    login = httpx.post(f"{a}/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert _decision(b, headers)["decision"] == "DENY"  # B has loaded the empty set
    source = (
        'allow "sre-may-restart" {\n    action == "restart_pod"\n    "sre" in principal.roles\n}\n'
    )
    created = httpx.post(
        f"{a}/api/v1/policies", json={"name": "ops", "source": source}, headers=headers
    )
    assert created.status_code == 201, created.text
    changed_at = time.monotonic()
    while _decision(b, headers)["decision"] != "ALLOW":
        assert time.monotonic() - changed_at < 1.0, "B still decides with the old set"
        time.sleep(0.02)
    # the decision cache is shared: A answers B's request from Redis
    before = httpx.get(f"{a}/api/v1/metrics/current", headers=headers).json()["cache"]["hits"]
    assert _decision(a, headers)["decision"] == "ALLOW"
    after = httpx.get(f"{a}/api/v1/metrics/current", headers=headers).json()["cache"]["hits"]
    assert after == before + 1
    # and back: disabling through B is in force on A within a second
    httpx.put(
        f"{b}/api/v1/policies/{created.json()['id']}", json={"enabled": False}, headers=headers
    )
    changed_at = time.monotonic()
    while _decision(a, headers)["decision"] != "DENY":
        assert time.monotonic() - changed_at < 1.0, "A still decides with the old set"
        time.sleep(0.02)
    # per-minute roll-ups on PostgreSQL: the replicas add up
    history = httpx.get(f"{b}/api/v1/metrics/historical", headers=headers).json()
    assert sum(p["total"] for p in history["points"]) >= 2
    # both replicas wrote to one chain that verifies
    verdict = httpx.get(f"{b}/api/v1/audit/verify", headers=headers).json()
    assert verdict["ok"] is True and verdict["chains"]["decisions"]["checked"] >= 4
