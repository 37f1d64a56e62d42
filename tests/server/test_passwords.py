"""Password storage and policy: PW-1 .. PW-5."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import Env, bearer

from aegis.server.auth.passwords import (
    FAST_PARAMETERS,
    PRODUCTION_PARAMETERS,
    PasswordHasher,
    check_password_policy,
)
from aegis.server.db.models import User
from aegis.server.errors import ApiError

PHC = re.compile(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$")


def _stored(env: Env, email: str) -> str:
    with env.db.engine.connect() as conn:
        return str(
            conn.execute(sa.select(User.password_hash).where(User.email == email)).scalar_one()
        )


def test_PW1_production_parameters_in_the_database(make_env: Any) -> None:
    env = make_env(password_hash_profile="production")
    env.signup("prod@example.com")
    env.signup("prod2@example.com")
    first, second = _stored(env, "prod@example.com"), _stored(env, "prod2@example.com")
    match = PHC.match(first)
    assert match is not None
    m, t, p = (int(match[i]) for i in (1, 2, 3))
    assert m >= 19456
    assert t >= 2
    assert p >= 1
    assert len(match[4]) >= 21  # 16-byte salt, base64 without padding
    assert first != second  # same password, different salts
    assert env.login("prod@example.com").status_code == 200


def test_PW1_production_profile_is_the_default() -> None:
    assert PasswordHasher().parameters == PRODUCTION_PARAMETERS


hasher = PasswordHasher("fast")
_stored_hash = hasher.hash_sync("Secret password")


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_PW2_a_longer_password_never_verifies(password: str) -> None:
    stored = hasher.hash_sync(password)
    ok, _ = asyncio.run(hasher.verify(password + "x", stored))
    assert not ok


@pytest.mark.parametrize(
    "attempt", ["secret password", "Secret password ", " Secret password", "SECRET PASSWORD"]
)
def test_PW2_no_trim_no_case_folding(attempt: str) -> None:
    ok, _ = asyncio.run(hasher.verify(attempt, _stored_hash))
    assert not ok


def test_PW2_long_passwords_sharing_72_bytes_do_not_cross_verify() -> None:
    a, b = "a" * 72 + "tail-one", "a" * 72 + "tail-two"
    ok, _ = asyncio.run(hasher.verify(b, hasher.hash_sync(a)))
    assert not ok


def test_PW2_unicode_is_not_normalised() -> None:
    composed, decomposed = "caf\u00e9 au lait!", "cafe\u0301 au lait!"
    ok, _ = asyncio.run(hasher.verify(decomposed, hasher.hash_sync(composed)))
    assert not ok


def test_PW3_weak_hash_is_upgraded_on_login(make_env: Any) -> None:
    env = make_env(password_hash_profile="production")
    env.signup("weak@example.com")
    weak = PasswordHasher("fast").hash_sync("correct horse battery staple")
    with env.db.engine.begin() as conn:
        conn.execute(sa.update(User).values(password_hash=weak))
    assert f"m={FAST_PARAMETERS.memory_kib}," in _stored(env, "weak@example.com")
    assert env.login("weak@example.com").status_code == 200
    upgraded = _stored(env, "weak@example.com")
    assert "m=19456,t=2,p=1" in upgraded
    assert env.login("weak@example.com").status_code == 200


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("short12", 422),
        ("password123", 422),
        ("Password123", 422),
        ("qwertyuiop", 422),
        ("12345678", 422),
        ("x" * 1025, 422),
        ("é" * 513, 422),  # 1026 bytes
        ("eight ch", 201),
        ("y" * 64, 201),
        ("z" * 1024, 201),
    ],
)
def test_PW4_password_policy(env: Env, password: str, status: int) -> None:
    response = env.signup(f"p{len(password)}{status}@example.com", password)
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["error"]["code"] == "password.rejected"


def test_PW4_huge_password_is_refused_without_hashing(env: Env) -> None:
    calls: list[str] = []
    ctx = env.app.state.aegis
    original = ctx.hasher.hash

    async def spy(password: str) -> str:
        calls.append(password)
        return str(await original(password))

    ctx.hasher.hash = spy
    started = time.perf_counter()
    response = env.signup("huge@example.com", "p" * 4000)
    assert time.perf_counter() - started < 5
    assert response.status_code == 422
    assert calls == []


def test_PW4_change_needs_the_current_password(env: Env) -> None:
    pair = env.user("change@example.com")
    missing = env.client.post(
        "/api/v1/users/me/password",
        json={"new_password": "another good phrase"},
        headers=bearer(pair),
    )
    assert missing.status_code == 422
    wrong = env.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "wrong guess here", "new_password": "another good phrase"},
        headers=bearer(pair),
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["message"] == "the current password is incorrect"


def test_PW4_admins_need_fifteen_characters(env: Env) -> None:
    pair = env.admin()
    response = env.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "admin-password-long-enough-1", "new_password": "only 12 char"},
        headers=bearer(pair),
    )
    assert response.status_code == 422


def test_PW4_check_policy_directly() -> None:
    with pytest.raises(ApiError):
        check_password_policy("letmein1")
    check_password_policy("a perfectly fine passphrase")


@pytest.mark.slow
def test_PW5_logins_do_not_starve_other_requests(make_env: Any) -> None:
    env = make_env(
        password_hash_profile="production", hash_workers=2, rate_limit_auth="1000/minute"
    )
    env.signup("busy@example.com")

    async def scenario() -> list[float]:
        transport = httpx.ASGITransport(app=env.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            latencies: list[float] = []

            async def pings() -> None:
                for _ in range(20):
                    started = time.perf_counter()
                    response = await client.get("/api/v1/health/ping")
                    assert response.status_code == 200
                    latencies.append(time.perf_counter() - started)
                    await asyncio.sleep(0.01)

            logins = [
                client.post(
                    "/api/v1/auth/login",
                    json={"email": "busy@example.com", "password": "correct horse battery staple"},
                )
                for _ in range(20)
            ]
            await asyncio.gather(pings(), *logins)
            return latencies

    latencies = sorted(env.client.portal.call(scenario))
    # generous bound against a blocked loop: one Argon2 hash alone takes ~50 ms
    assert latencies[-2] < 1.0, latencies
