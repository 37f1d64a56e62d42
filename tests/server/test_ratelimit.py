"""Rate limits and login throttling: BF-1 .. BF-3, RL-1 .. RL-3."""

from __future__ import annotations

import time
from typing import Any

import pytest
from server_helpers import USER_PASSWORD, Env, bearer, make_settings

from aegis.server.ratelimit import ClientAddress

LOGIN = "/api/v1/auth/login"


def _login(env: Env, email: str, password: str, address: str | None = None) -> Any:
    headers = {"X-Forwarded-For": address} if address else {}
    return env.client.post(LOGIN, json={"email": email, "password": password}, headers=headers)


def test_BF1_password_guessing_meets_429_well_before_100(env: Env) -> None:
    env.signup("target@example.com")
    codes = [_login(env, "target@example.com", f"guess number {i}").status_code for i in range(100)]
    first = codes.index(429)
    assert first <= 20, codes
    assert set(codes[:first]) == {401}
    refused = _login(env, "target@example.com", "guess again")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


def test_BF1_throttle_resets_after_the_window(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.signup("window@example.com")
    for i in range(10):
        assert _login(env, "window@example.com", f"bad {i} guess").status_code == 401
    assert _login(env, "window@example.com", USER_PASSWORD).status_code == 429
    # The throttle counts in the limiter's time (Redis TTLs, or time.time() in process), not
    # the app clock: move that time past the one-hour window.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3601)
    assert _login(env, "window@example.com", USER_PASSWORD).status_code == 200


def test_BF1_settings_refuse_a_ceiling_of_100_per_hour() -> None:
    with pytest.raises(ValueError, match="100 or more"):
        make_settings("sqlite://", login_failure_window=60, login_failures_per_account=10)


def test_BF1_lockout_of_one_address_does_not_block_another(make_env: Any) -> None:
    env = make_env(trusted_proxies=("127.0.0.1/32",), rate_limit_auth="1000/minute")
    env.signup("shared@example.com")
    for i in range(12):
        _login(env, "shared@example.com", f"attacker guess {i}", "203.0.113.7")
    assert _login(env, "shared@example.com", USER_PASSWORD, "203.0.113.7").status_code == 429
    assert _login(env, "shared@example.com", USER_PASSWORD, "198.51.100.2").status_code == 200


def test_BF1_account_ceiling_spares_known_addresses(make_env: Any) -> None:
    env = make_env(
        trusted_proxies=("127.0.0.1/32",),
        rate_limit_auth="1000/minute",
        login_failures_per_account=20,
    )
    env.signup("vip@example.com")
    assert _login(env, "vip@example.com", USER_PASSWORD, "192.0.2.10").status_code == 200
    # a distributed attack: many addresses, a few guesses each
    codes = []
    for i in range(40):
        codes.append(_login(env, "vip@example.com", f"spray {i}", f"198.51.100.{i}").status_code)
    assert codes.count(401) == 20
    assert codes[-1] == 429
    # the owner, from an address that worked before, still gets in
    assert _login(env, "vip@example.com", USER_PASSWORD, "192.0.2.10").status_code == 200
    # a new address does not
    assert _login(env, "vip@example.com", USER_PASSWORD, "192.0.2.99").status_code == 429


def test_BF1_unknown_accounts_are_throttled_alike(env: Env) -> None:
    codes = [_login(env, "ghost@example.com", f"guess {i}").status_code for i in range(12)]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/signup", {"email": "s{i}@example.com", "password": "x"}),
        ("/api/v1/auth/forgot-password", {"email": "f@example.com"}),
        ("/api/v1/auth/reset-password", {"token": "t{i}", "new_password": "x"}),
        ("/api/v1/auth/refresh", {"refresh_token": "r{i}"}),
    ],
)
def test_BF2_auth_endpoints_are_limited_per_address(
    env: Env, path: str, body: dict[str, str]
) -> None:
    codes = []
    for i in range(70):
        payload = {k: v.format(i=i) for k, v in body.items()}
        codes.append(env.client.post(path, json=payload).status_code)
        if codes[-1] == 429:
            break
    assert codes[-1] == 429, codes


def test_BF3_forwarded_for_from_untrusted_peer_is_ignored(env: Env) -> None:
    env.signup("xff@example.com")
    codes = [
        _login(env, "xff@example.com", f"guess {i}", f"10.0.0.{i}").status_code for i in range(15)
    ]
    assert 429 in codes


def test_BF3_client_address_rules() -> None:
    resolve = ClientAddress(["10.0.0.0/8"])
    assert resolve("203.0.113.1", "1.2.3.4") == "203.0.113.1"  # untrusted peer
    assert resolve("10.0.0.5", "1.2.3.4") == "1.2.3.4"
    assert resolve("10.0.0.5", "9.9.9.9, 1.2.3.4, 10.0.0.7") == "1.2.3.4"
    assert resolve("10.0.0.5", "not-an-ip") == "10.0.0.5"
    assert resolve(None, None) == "unknown"


def test_RL2_headers_on_every_answer_and_retry_after_on_429(make_env: Any) -> None:
    env = make_env(rate_limit_anonymous="5/minute")
    for _ in range(5):
        ok = env.client.get("/api/v1/health/ping")
        assert ok.status_code == 200
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(ok.headers)
    refused = env.client.get("/api/v1/health/ping")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate.limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-remaining"] == "0"


def test_authenticated_callers_are_counted_per_user(make_env: Any) -> None:
    env = make_env(rate_limit_anonymous="3/minute", rate_limit_authenticated="600/minute")
    pair = env.user("script@example.com")
    for _ in range(300):  # a script making a few hundred calls a minute is left alone
        assert env.client.get("/api/v1/users/me", headers=bearer(pair)).status_code == 200


def test_RL3_redis_down_falls_back_in_process_and_counts(make_env: Any) -> None:
    env = make_env(redis_url="redis://127.0.0.1:1/0", rate_limit_anonymous="4/minute")
    codes = [env.client.get("/api/v1/health/ping").status_code for _ in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
    metrics = env.client.get("/metrics")
    assert metrics.status_code == 429 or "ratelimit_fail_open_total" in metrics.text
    registry = env.app.state.aegis.metrics.registry
    assert registry.get_sample_value("ratelimit_fail_open_total") >= 6
    health = env.client.get("/api/v1/health/ping")
    assert health.status_code == 429


def test_BF1_address_brake_spares_accounts_known_there(make_env: Any) -> None:
    env = make_env(rate_limit_auth="1000/minute", login_failures_per_address=15)
    env.signup("regular@example.com")
    assert env.login("regular@example.com").status_code == 200
    env.signup("newcomer@example.com")
    # someone at the same address sprays many accounts
    for i in range(20):
        env.login(f"sprayed{i}@example.com", "spray password")
    assert env.login("regular@example.com").status_code == 200  # worked here before
    assert env.login("newcomer@example.com").status_code == 429  # never logged in from here


def test_FLT05_RL4_silent_redis_times_out_and_trips_the_breaker(make_env: Any) -> None:
    import socket
    import threading

    # a "Redis" that accepts connections and never answers (blackhole)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        env = make_env(redis_url=f"redis://127.0.0.1:{port}/0")
        started = time.perf_counter()
        codes = [env.client.get("/api/v1/health/ping").status_code for _ in range(10)]
        elapsed = time.perf_counter() - started
        assert codes == [200] * 10
        # one timed-out call (≤ 200 ms op timeout), then the breaker skips Redis
        assert elapsed < 3.0, elapsed
        registry = env.app.state.aegis.metrics.registry
        assert registry.get_sample_value("ratelimit_fail_open_total") >= 10
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()
