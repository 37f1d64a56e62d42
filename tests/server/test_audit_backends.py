"""The event trail through ``aegis.engine.audit``'s SQL sink (``AEGIS_AUDIT_BACKEND=engine``)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import Env, bearer

from aegis.engine.audit.sql import audit_records, verify_database
from aegis.server.db.models import AuditEvent


def _flows(env: Env) -> dict[str, Any]:
    admin = env.admin()
    pair = env.user("sink@example.com")
    env.login("sink@example.com", "a wrong password")
    env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    env.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    return admin


def _check(env: Env) -> None:
    admin = _flows(env)
    events = env.client.get("/api/v1/audit/events?limit=500", headers=bearer(admin)).json()
    actions = [e["action"] for e in events["items"]]
    for expected in ("signup", "login_succeeded", "login_failed", "refresh_reuse_detected"):
        assert expected in actions
    assert [e["seq"] for e in events["items"]] == list(range(1, len(actions) + 1))
    failed = env.client.get(
        "/api/v1/audit/events?outcome=failure&action=login_failed", headers=bearer(admin)
    ).json()["items"]
    assert [e["action"] for e in failed] == ["login_failed"]
    assert failed[0]["details"] == {"email": "sink@example.com"}
    page = env.client.get("/api/v1/audit/events?limit=2", headers=bearer(admin)).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] == "2"
    verdict = env.client.get("/api/v1/audit/verify", headers=bearer(admin)).json()
    assert (verdict["ok"], verdict["first_bad_seq"]) == (True, None)  # + part 2's `chains`
    with env.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar_one() == 0
        kept = conn.execute(
            sa.select(sa.func.count()).where(audit_records.c.chain == "events")
        ).scalar_one()
    assert kept == len(actions)
    assert verify_database(env.settings.database_url)["events"].ok


def test_AUD2_events_go_to_the_engine_sink_on_sqlite(make_env: Any) -> None:
    _check(make_env(audit_backend="engine"))


@pytest.mark.postgres
def test_AUD2_events_go_to_the_engine_sink_on_postgres(make_env: Any, postgres_schema: str) -> None:
    _check(make_env(audit_backend="engine", database_url=postgres_schema))


def test_rolled_back_changes_leave_no_event(make_env: Any) -> None:
    env = make_env(audit_backend="engine")
    env.signup("twice@example.com")
    with env.db.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(audit_records)).scalar_one()
    # a reset that fails inside its transaction (admin password too short) writes nothing
    env.admin("boss@example.com")
    env.client.post("/api/v1/auth/forgot-password", json={"email": "boss@example.com"})
    token = env.mailer.last_token("boss@example.com")
    with env.db.engine.connect() as conn:
        mid = conn.execute(sa.select(sa.func.count()).select_from(audit_records)).scalar_one()
    short = env.client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "twelve chars"}
    )
    assert short.status_code == 422
    with env.db.engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(audit_records)).scalar_one()
    assert mid > before
    assert after == mid
