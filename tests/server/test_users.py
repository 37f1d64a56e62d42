"""Users and roles (AC-2, SES-5) and the audit trail (AUD-1, AUD-2, LOG-3)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import Env, bearer

from aegis.server.audit import verify_chain
from aegis.server.db.models import AuditEvent

USERS = "/api/v1/users"


def _invite(env: Env, admin: dict[str, Any], email: str, roles: list[str]) -> dict[str, Any]:
    """Create a user as admin, set their password from the mailed link, log in."""
    created = env.client.post(USERS, json={"email": email, "roles": roles}, headers=bearer(admin))
    assert created.status_code == 201, created.text
    token = env.mailer.last_token(email)
    reset = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "invited user phrase"}
    )
    assert reset.status_code == 204
    pair = env.login(email, "invited user phrase")
    assert pair.status_code == 200
    return dict(pair.json())


def test_me_read_and_update_name_only(env: Env) -> None:
    pair = env.user("me@example.com")
    updated = env.client.patch("/api/v1/users/me", json={"name": "Me"}, headers=bearer(pair))
    assert updated.status_code == 200
    assert updated.json()["name"] == "Me"
    for field, value in [
        ("roles", ["admin"]),
        ("is_active", False),
        ("id", "x"),
        ("email", "a@b.c"),
    ]:
        refused = env.client.patch("/api/v1/users/me", json={field: value}, headers=bearer(pair))
        assert refused.status_code == 422, field
    assert env.client.get("/api/v1/users/me", headers=bearer(pair)).json()["roles"] == ["user"]


def test_AC2_users_cannot_read_each_other(env: Env) -> None:
    a = env.user("a@example.com")
    b_id = env.signup("b@example.com").json()["id"]
    assert env.client.get(f"{USERS}/{b_id}", headers=bearer(a)).status_code == 403
    assert (
        env.client.patch(f"{USERS}/{b_id}", json={"name": "x"}, headers=bearer(a)).status_code
        == 403
    )
    assert env.client.get(USERS, headers=bearer(a)).status_code == 403


def test_password_change_ends_other_sessions(env: Env) -> None:
    here = env.user("pw@example.com")
    there = env.login("pw@example.com").json()
    response = env.client.post(
        "/api/v1/users/me/password",
        json={
            "current_password": "correct horse battery staple",
            "new_password": "new pass phrase",
        },
        headers=bearer(here),
    )
    assert response.status_code == 204
    assert env.client.get("/api/v1/users/me", headers=bearer(here)).status_code == 200
    assert env.client.get("/api/v1/users/me", headers=bearer(there)).status_code == 401
    assert env.login("pw@example.com", "new pass phrase").status_code == 200


def test_admin_creates_lists_and_reads_users(env: Env) -> None:
    admin = env.admin()
    created = env.client.post(
        USERS, json={"email": "ops@example.com", "roles": ["auditor", "sre"]}, headers=bearer(admin)
    )
    assert created.status_code == 201
    user = created.json()
    assert user["roles"] == ["auditor", "sre"]
    assert created.headers["location"] == f"{USERS}/{user['id']}"
    assert env.client.get(f"{USERS}/{user['id']}", headers=bearer(admin)).json() == user
    conflict = env.client.post(USERS, json={"email": "OPS@example.com"}, headers=bearer(admin))
    assert conflict.status_code == 409
    with_password = env.client.post(
        USERS, json={"email": "p@example.com", "password": "x" * 20}, headers=bearer(admin)
    )
    assert with_password.status_code == 422  # REC-5: admins never set passwords
    for i in range(5):
        env.signup(f"bulk{i}@example.com")
    first = env.client.get(f"{USERS}?limit=3", headers=bearer(admin)).json()
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    rest = env.client.get(
        f"{USERS}?limit=50&cursor={first['next_cursor']}", headers=bearer(admin)
    ).json()
    assert rest["next_cursor"] is None
    ids = [u["id"] for u in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 7
    assert env.client.get(f"{USERS}?sort=email", headers=bearer(admin)).status_code == 422
    assert env.client.get(f"{USERS}/nope", headers=bearer(admin)).status_code == 404


def test_SES5_disabling_or_demoting_ends_sessions_at_once(env: Env) -> None:
    admin = env.admin()
    victim = env.user("victim@example.com")
    victim_id = env.client.get("/api/v1/users/me", headers=bearer(victim)).json()["id"]
    disabled = env.client.patch(
        f"{USERS}/{victim_id}", json={"is_active": False}, headers=bearer(admin)
    )
    assert disabled.status_code == 200
    assert env.client.get("/api/v1/users/me", headers=bearer(victim)).status_code == 401
    refreshed = env.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert env.login("victim@example.com").status_code == 401


def test_SES5_role_change_takes_effect_on_next_request(env: Env) -> None:
    admin = env.admin()
    second = _invite(env, admin, "second@example.com", ["admin"])
    second_id = env.client.get("/api/v1/users/me", headers=bearer(second)).json()["id"]
    assert env.client.get(USERS, headers=bearer(second)).status_code == 200
    env.client.patch(f"{USERS}/{second_id}", json={"roles": ["user"]}, headers=bearer(admin))
    assert env.client.get(USERS, headers=bearer(second)).status_code == 401  # sessions ended
    again = env.login("second@example.com", "invited user phrase").json()
    assert env.client.get(USERS, headers=bearer(again)).status_code == 403


def test_last_admin_cannot_be_removed(env: Env) -> None:
    admin = env.admin()
    me = env.client.get("/api/v1/users/me", headers=bearer(admin)).json()["id"]
    for body in ({"roles": ["user"]}, {"is_active": False}):
        response = env.client.patch(f"{USERS}/{me}", json=body, headers=bearer(admin))
        assert response.status_code == 409
    assert env.client.delete(f"{USERS}/{me}", headers=bearer(admin)).status_code == 409


def test_admin_deletes_a_user(env: Env) -> None:
    admin = env.admin()
    victim = env.user("gone@example.com")
    victim_id = env.client.get("/api/v1/users/me", headers=bearer(victim)).json()["id"]
    assert env.client.delete(f"{USERS}/{victim_id}", headers=bearer(admin)).status_code == 204
    assert env.client.get(f"{USERS}/{victim_id}", headers=bearer(admin)).status_code == 404
    assert env.client.get("/api/v1/users/me", headers=bearer(victim)).status_code == 401


def test_auditor_reads_but_never_writes(env: Env) -> None:
    admin = env.admin()
    auditor = _invite(env, admin, "audit@example.com", ["auditor"])
    assert env.client.get(USERS, headers=bearer(auditor)).status_code == 200
    assert env.client.get("/api/v1/audit/events", headers=bearer(auditor)).status_code == 200
    denied = env.client.post(USERS, json={"email": "x@example.com"}, headers=bearer(auditor))
    assert denied.status_code == 403


def test_LOG3_every_auth_and_admin_event_is_audited(env: Env) -> None:
    admin = env.admin()
    pair = env.user("trail@example.com")
    env.login("trail@example.com", "wrong password here")
    env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    uid = env.client.get("/api/v1/users/me", headers=bearer(admin)).json()["id"]
    env.client.patch(f"{USERS}/{uid}", json={"name": "Root"}, headers=bearer(admin))
    events = env.client.get("/api/v1/audit/events?limit=500", headers=bearer(admin)).json()
    actions = [e["action"] for e in events["items"]]
    for expected in (
        "admin_bootstrapped",
        "signup",
        "login_succeeded",
        "login_failed",
        "token_refreshed",
        "user_updated",
    ):
        assert expected in actions
    for event in events["items"]:
        assert event["at"].endswith("Z")
        assert len(event["hash"]) == 64
    filtered = env.client.get(
        "/api/v1/audit/events?action=login_failed", headers=bearer(admin)
    ).json()
    assert [e["action"] for e in filtered["items"]] == ["login_failed"]
    verdict = env.client.get("/api/v1/audit/verify", headers=bearer(admin)).json()
    assert (verdict["ok"], verdict["first_bad_seq"]) == (True, None)  # + part 2's `chains`


@pytest.mark.parametrize(
    "query",
    ["since=yesterday", "limit=-1", "cursor=1;DROP TABLE users", "action=x&action=y", "bogus=1"],
)
def test_AUD6_audit_query_parameters_are_validated(env: Env, query: str) -> None:
    admin = env.admin()
    response = env.client.get(f"/api/v1/audit/events?{query}", headers=bearer(admin))
    assert response.status_code == 422


def test_AUD6_injection_in_filters_is_literal(env: Env) -> None:
    admin = env.admin()
    response = env.client.get("/api/v1/audit/events?action=x'%20OR%20'1'='1", headers=bearer(admin))
    assert response.status_code == 200
    assert response.json()["items"] == []


def test_AUD1_audit_rows_cannot_be_changed(env: Env) -> None:
    env.admin()
    with pytest.raises(sa.exc.DBAPIError), env.db.engine.begin() as conn:
        conn.execute(sa.update(AuditEvent).values(outcome="forged"))
    with pytest.raises(sa.exc.DBAPIError), env.db.engine.begin() as conn:
        conn.execute(sa.delete(AuditEvent))
    assert env.db.run_sync(verify_chain) is None


def test_AUD2_chain_detects_an_edit(env: Env) -> None:
    env.user("chain@example.com")
    with env.db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == 2).values(outcome="forged"))
    assert env.db.run_sync(verify_chain) == 2


def test_PW4_admin_reset_needs_fifteen_characters_and_keeps_the_token(env: Env) -> None:
    env.admin("boss@example.com")
    env.client.post("/api/v1/auth/forgot-password", json={"email": "boss@example.com"})
    token = env.mailer.last_token("boss@example.com")
    short = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "twelve chars"}
    )
    assert short.status_code == 422
    long_enough = env.client.post(
        "/api/v1/auth/reset-password",
        json={"token": token, "new_password": "fifteen or more characters"},
    )
    assert long_enough.status_code == 204


def test_SES5_logout_everywhere(env: Env) -> None:
    here = env.user("everywhere@example.com")
    there = env.login("everywhere@example.com").json()
    assert env.client.delete("/api/v1/users/me/sessions", headers=bearer(here)).status_code == 204
    for pair in (here, there):
        assert env.client.get("/api/v1/users/me", headers=bearer(pair)).status_code == 401
        refreshed = env.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert refreshed.status_code == 401


def test_SES5_admin_terminates_a_users_sessions(env: Env) -> None:
    admin = env.admin()
    victim = env.user("terminated@example.com")
    victim_id = env.client.get("/api/v1/users/me", headers=bearer(victim)).json()["id"]
    response = env.client.delete(f"{USERS}/{victim_id}/sessions", headers=bearer(admin))
    assert response.status_code == 204
    assert env.client.get("/api/v1/users/me", headers=bearer(victim)).status_code == 401
    assert env.login("terminated@example.com").status_code == 200  # the account still works
    assert env.client.delete(f"{USERS}/nope/sessions", headers=bearer(admin)).status_code == 404


def test_REC5_admin_triggers_a_reset_but_never_sees_the_password(env: Env) -> None:
    admin = env.admin()
    user_id = env.signup("forgetful@example.com").json()["id"]
    response = env.client.post(f"{USERS}/{user_id}/reset-password", headers=bearer(admin))
    assert response.status_code == 202
    assert response.content == b""
    token = env.mailer.last_token("forgetful@example.com")
    done = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "remembered now"}
    )
    assert done.status_code == 204
    assert env.login("forgetful@example.com", "remembered now").status_code == 200


def test_REC5_no_route_takes_a_password_for_someone_else(env: Env) -> None:
    for endpoint in env.app.state.aegis.endpoints:
        model = endpoint.request_model
        if model is None or "{id}" not in endpoint.path:
            continue
        assert not any("password" in name for name in model.model_fields), endpoint.path
