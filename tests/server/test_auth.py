"""Authentication flows: signup, login, refresh rotation and reuse, logout, recovery (REC, SES)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_helpers import USER_PASSWORD, Env, bearer

from aegis.server.db.models import (
    AuditEvent,
    RefreshToken,
    ResetToken,
    RevokedAccessToken,
    User,
)


def _actions(env: Env) -> list[str]:
    with env.db.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(AuditEvent.action).order_by(AuditEvent.seq))]


def test_AC2_signup_gives_role_user_and_refuses_role_fields(env: Env) -> None:
    refused = env.signup("eve@example.com", roles=["admin"])
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "request.invalid"
    created = env.signup("eve@example.com")
    assert created.status_code == 201
    body = created.json()
    assert body["roles"] == ["user"]
    assert set(body) >= {"id", "email", "name", "roles", "created_at"}
    assert "password_hash" not in body


def test_signup_user_can_log_in_at_once(env: Env) -> None:
    pair = env.user("new@example.com")
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["expires_in"] == 900


def test_REC1_signup_with_taken_email_looks_like_success(env: Env) -> None:
    first = env.signup("taken@example.com")
    second = env.signup("taken@example.com")
    assert first.status_code == second.status_code == 201
    one, two = first.json(), second.json()
    assert set(one) == set(two)
    assert one["id"] != two["id"]
    assert {k: v for k, v in one.items() if k != "id"} == {
        k: v for k, v in two.items() if k != "id"
    }
    assert first.headers.keys() == second.headers.keys()
    # the owner is told instead, and the account is unchanged
    assert any("already has one" in body for _, _, body in env.mailer.sent)
    assert env.login("taken@example.com").status_code == 200


def test_REC1_login_unknown_user_and_wrong_password_are_identical(env: Env) -> None:
    env.signup("bob@example.com")
    wrong = env.login("bob@example.com", "not the password at all")
    unknown = env.login("nobody@example.com", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert wrong.json()["error"]["code"] == "auth.invalid_credentials"


@pytest.mark.parametrize("mode", ["closed", "invite"])
def test_signup_modes_refuse_self_signup(make_env: Any, mode: str) -> None:
    env = make_env(signup_mode=mode)
    response = env.signup("x@example.com")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "auth.signup_closed"


def test_SES2_refresh_rotates_and_consumes(env: Env) -> None:
    pair = env.user("r@example.com")
    response = env.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert response.status_code == 200
    new = response.json()
    assert new["refresh_token"] != pair["refresh_token"]
    assert env.client.get("/api/v1/users/me", headers=bearer(new)).status_code == 200


def test_SES3_reuse_revokes_family(env: Env) -> None:
    pair = env.user("reuse@example.com")
    r1 = pair["refresh_token"]
    r2 = env.client.post("/api/v1/auth/refresh", json={"refresh_token": r1}).json()
    replay = env.client.post("/api/v1/auth/refresh", json={"refresh_token": r1})
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "auth.invalid_grant"
    after = env.client.post("/api/v1/auth/refresh", json={"refresh_token": r2["refresh_token"]})
    assert after.status_code == 401
    # the access token of the revoked family is dead too
    assert env.client.get("/api/v1/users/me", headers=bearer(r2)).status_code == 401
    assert "refresh_reuse_detected" in _actions(env)
    # the audit row carries a fingerprint, never the token
    with env.db.engine.connect() as conn:
        details = conn.execute(
            sa.select(AuditEvent.details).where(AuditEvent.action == "refresh_reuse_detected")
        ).scalar_one()
    assert r1 not in str(details)


def test_SES1_refresh_tokens_stored_hashed(env: Env) -> None:
    pair = env.user("hash@example.com")
    digest = hashlib.sha256(pair["refresh_token"].encode()).hexdigest()
    with env.db.engine.connect() as conn:
        stored = list(conn.execute(sa.select(RefreshToken.token_hash)).scalars())
    assert digest in stored
    assert pair["refresh_token"] not in stored


def test_SES1_idle_and_absolute_lifetimes(env: Env) -> None:
    pair = env.user("idle@example.com")
    env.clock.advance(7 * 86400 + 1)
    idle = env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert idle.status_code == 401
    fresh = env.login("idle@example.com").json()
    token = fresh["refresh_token"]
    for _ in range(6):  # keep it active for 30 days
        env.clock.advance(5 * 86400)
        rotated = env.client.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert rotated.status_code == 200
        token = rotated.json()["refresh_token"]
    env.clock.advance(5 * 86400)
    expired = env.client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert expired.status_code == 401


def test_SES4_twenty_simultaneous_refreshes_give_one_pair(env: Env) -> None:
    pair = env.user("race@example.com")

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
    with env.db.engine.connect() as conn:
        issued = conn.execute(sa.select(sa.func.count()).select_from(RefreshToken)).scalar_one()
    assert issued == 2  # the login's token and exactly one successor


def test_SES5_logout_ends_refresh_and_access_tokens(env: Env) -> None:
    pair = env.user("out@example.com")
    other = env.login("out@example.com").json()
    response = env.client.post(
        "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}, headers=bearer(pair)
    )
    assert response.status_code == 204
    assert env.client.get("/api/v1/users/me", headers=bearer(pair)).status_code == 401
    with env.db.engine.connect() as conn:
        denied = list(conn.execute(sa.select(RevokedAccessToken.jti)).scalars())
    assert len(denied) == 1  # the access token's jti is denylisted until it expires
    refreshed = env.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 401
    # another device's session is untouched
    assert env.client.get("/api/v1/users/me", headers=bearer(other)).status_code == 200
    assert "logout" in _actions(env)


def test_SES5_logout_with_unknown_token_reveals_nothing(env: Env) -> None:
    response = env.client.post("/api/v1/auth/logout", json={"refresh_token": "nope"})
    assert response.status_code == 204


def _forgot(env: Env, email: str, **headers: str) -> httpx.Response:
    return env.client.post("/api/v1/auth/forgot-password", json={"email": email}, headers=headers)


def test_REC1_forgot_password_same_answer_for_unknown_email(env: Env) -> None:
    env.signup("known@example.com")
    known = _forgot(env, "known@example.com")
    unknown = _forgot(env, "unknown@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert known.headers.keys() == unknown.headers.keys()


def test_REC2_reset_token_single_use_hashed_and_expiring(env: Env) -> None:
    env.signup("reset@example.com")
    _forgot(env, "reset@example.com")
    token = env.mailer.last_token("reset@example.com")
    with env.db.engine.connect() as conn:
        stored = list(conn.execute(sa.select(ResetToken.token_hash)).scalars())
    assert token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    new = "a brand new passphrase"
    first = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": new}
    )
    assert first.status_code == 204
    second = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": new + "!"}
    )
    assert second.status_code == 400
    # expiry: a token older than 15 minutes is refused
    _forgot(env, "reset@example.com")
    late = env.mailer.last_token("reset@example.com")
    env.clock.advance(16 * 60)
    expired = env.client.post(
        "/api/v1/auth/reset-password", json={"token": late, "new_password": new + "?"}
    )
    assert expired.status_code == 400


def test_REC2_new_reset_token_voids_older_one(env: Env) -> None:
    env.signup("twice@example.com")
    _forgot(env, "twice@example.com")
    old = env.mailer.last_token("twice@example.com")
    _forgot(env, "twice@example.com")
    response = env.client.post(
        "/api/v1/auth/reset-password", json={"token": old, "new_password": "another fine phrase"}
    )
    assert response.status_code == 400


def test_REC3_reset_ends_every_session_without_auto_login(env: Env) -> None:
    a = env.user("devices@example.com")
    b = env.login("devices@example.com").json()
    _forgot(env, "devices@example.com")
    token = env.mailer.last_token("devices@example.com")
    response = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "fresh secret words"}
    )
    assert response.status_code == 204
    assert response.content == b""
    for pair in (a, b):
        refreshed = env.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 401
        assert env.client.get("/api/v1/users/me", headers=bearer(pair)).status_code == 401
    assert env.login("devices@example.com", "fresh secret words").status_code == 200
    assert env.login("devices@example.com", USER_PASSWORD).status_code == 401
    assert "password_reset_completed" in _actions(env)
    assert any("was reset" in body for _, _, body in env.mailer.sent)


def test_REC4_reset_link_uses_configured_base_url(make_env: Any) -> None:
    env = make_env(public_base_url="https://aegis.example.org")
    env.signup("link@example.com")
    _forgot(env, "link@example.com", Host="evil.example", **{"X-Forwarded-Host": "evil.example"})
    body = next(b for to, _, b in env.mailer.sent if to == "link@example.com" and "token=" in b)
    assert "https://aegis.example.org/reset-password?token=" in body
    assert "evil.example" not in body


def test_FLT19_mailer_failure_does_not_change_the_answer(make_env: Any) -> None:
    env = make_env()
    env.signup("mail@example.com")

    async def broken(recipient: str, subject: str, body: str) -> None:
        raise OSError("smtp down")

    ok = _forgot(env, "mail@example.com")
    env.app.state.aegis.mailer.send = broken
    failing = _forgot(env, "mail@example.com")
    assert ok.status_code == failing.status_code == 202
    assert ok.content == failing.content


def test_LOG1_no_secret_reaches_the_database(env: Env) -> None:
    password = "canary-password-5d1f0c"
    pair = env.user("canary@example.com", password)
    env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    dump = "\n".join(env.db.engine.raw_connection().driver_connection.iterdump())  # type: ignore[union-attr]
    for secret in (password, pair["refresh_token"], pair["access_token"]):
        assert secret not in dump


def test_user_rows_hold_no_plaintext(env: Env) -> None:
    env.signup("plain@example.com", "plaintext canary 42")
    with env.db.engine.connect() as conn:
        stored = conn.execute(sa.select(User.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")


def test_REC2_ten_concurrent_consumes_give_one_reset(env: Env) -> None:
    env.signup("consume@example.com")
    _forgot(env, "consume@example.com")
    token = env.mailer.last_token("consume@example.com")

    async def race() -> list[int]:
        transport = httpx.ASGITransport(app=env.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/auth/reset-password",
                        json={"token": token, "new_password": f"new passphrase {i}"},
                    )
                    for i in range(10)
                )
            )
        return [r.status_code for r in responses]

    codes = env.client.portal.call(race)
    assert codes.count(204) == 1, codes
    assert codes.count(400) == 9, codes


def test_invite_mode_signup_needs_the_invitation(make_env: Any) -> None:
    env = make_env(signup_mode="invite")
    admin = env.admin()
    plain = env.signup("stranger@example.com")
    assert plain.status_code == 403
    created = env.client.post(
        "/api/v1/users",
        json={"email": "guest@example.com", "roles": ["auditor"]},
        headers=bearer(admin),
    )
    assert created.status_code == 201
    token = env.mailer.last_token("guest@example.com")
    wrong_address = env.signup("stranger@example.com", invite_token=token)
    assert wrong_address.status_code == 400
    assert wrong_address.json()["error"]["code"] == "auth.invalid_invite"
    accepted = env.signup("guest@example.com", name="Guest", invite_token=token)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["roles"] == ["auditor"]
    assert accepted.json()["id"] == created.json()["id"]
    assert env.login("guest@example.com").status_code == 200
    again = env.signup("guest@example.com", invite_token=token)
    assert again.status_code == 400
