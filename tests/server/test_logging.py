"""Logs: no secrets (LOG-1), no forged lines (LOG-2), the events we promise (LOG-3)."""

from __future__ import annotations

import json
import logging
import statistics
import time
from typing import Any

import pytest
from server_helpers import Env, bearer


def test_LOG1_no_secret_in_any_log_record(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = "canary-password-9b7e2a"
    pair = env.user("logs@example.com", password)
    env.login("logs@example.com", "canary-wrong-3f9d1c")
    rotated = env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})  # reuse
    env.client.post("/api/v1/auth/forgot-password", json={"email": "logs@example.com"})
    reset = env.mailer.last_token("logs@example.com")
    env.client.post(
        "/api/v1/auth/reset-password", json={"token": reset, "new_password": "canary-new-77aa01"}
    )
    env.client.get("/api/v1/users/me", headers=bearer(rotated.json()))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "http_request" in text
    for secret in (
        password,
        "canary-wrong-3f9d1c",
        "canary-new-77aa01",
        pair["refresh_token"],
        pair["access_token"],
        rotated.json()["access_token"],
        reset,
    ):
        assert secret not in text


def test_LOG2_control_characters_cannot_forge_a_line(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aegis.server")
    env.client.get("/api/v1/health/ping", headers={"X-Request-Id": 'abc\r\n{"msg":"admin ok"}'})
    evil = 'bob\r\n{"event":"login_succeeded"}@example.com'
    env.client.post("/api/v1/auth/login", json={"email": evil, "password": "whatever it is"})
    for record in caplog.records:
        if record.name != "aegis.server":
            continue
        message = record.getMessage()
        assert "\n" not in message
        assert "\r" not in message
        json.loads(message)  # exactly one parseable JSON document per record


def test_LOG3_access_denied_and_rate_limits_are_logged(
    make_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env(rate_limit_anonymous="2/minute")
    caplog.set_level(logging.INFO, logger="aegis.server")
    for _ in range(3):
        env.client.get("/api/v1/users/me")
    events = [
        json.loads(r.getMessage())["event"] for r in caplog.records if r.name == "aegis.server"
    ]
    assert "access_denied" in events
    assert "rate_limited" in events
    for record in caplog.records:
        if record.name == "aegis.server":
            assert json.loads(record.getMessage())["at"].endswith("+00:00")


@pytest.mark.slow
def test_REC1_login_timing_does_not_reveal_accounts(make_env: Any) -> None:
    env = make_env(
        password_hash_profile="production",
        rate_limit_auth="100000/minute",
        login_failures_per_pair=99,
        login_failures_per_address=100000,
        login_failures_per_account=99,
    )
    env.signup("timed@example.com")
    known, unknown = [], []
    for i in range(15):
        started = time.perf_counter()
        env.login("timed@example.com", f"wrong password {i}")
        known.append(time.perf_counter() - started)
        started = time.perf_counter()
        env.login(f"ghost{i}@example.com", f"wrong password {i}")
        unknown.append(time.perf_counter() - started)
    # D6: a fixed bound, generous for a shared CI machine (one Argon2 verify is ~50 ms)
    assert abs(statistics.median(known) - statistics.median(unknown)) < 0.025
