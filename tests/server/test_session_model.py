"""A Hypothesis state machine over sessions: login, refresh, replay, logout, use (SES-2..5)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from server_helpers import USER_PASSWORD, FakeClock, RecordingMailer, TestClient, make_settings

from aegis.server import create_app
from aegis.server.db import Database, upgrade
from aegis.server.db.models import RefreshToken
from aegis.server.db.models import Session as SessionRow


@dataclass
class Family:
    refresh: str
    access: str
    spent: list[str] = field(default_factory=list)
    alive: bool = True


class Sessions(RuleBasedStateMachine):
    """The model: each login is a family; a family dies on replay or logout, never otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp())
        url = f"sqlite:///{self.dir / 'model.db'}"
        self.db = Database(url)
        upgrade(self.db.engine)
        config = make_settings(
            url,
            rate_limit_auth="100000/minute",
            rate_limit_anonymous="100000/minute",
            rate_limit_authenticated="100000/minute",
        )
        app = create_app(config, clock=FakeClock(), mailer=RecordingMailer(), database=self.db)
        self.client = TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 1))
        self.client.__enter__()
        self.families: list[Family] = []

    @initialize()
    def account(self) -> None:
        response = self.client.post(
            "/api/v1/auth/signup", json={"email": "model@example.com", "password": USER_PASSWORD}
        )
        assert response.status_code == 201

    @rule()
    def login(self) -> None:
        response = self.client.post(
            "/api/v1/auth/login", json={"email": "model@example.com", "password": USER_PASSWORD}
        )
        assert response.status_code == 200
        pair = response.json()
        self.families.append(Family(pair["refresh_token"], pair["access_token"]))

    @precondition(lambda self: self.families)
    @rule(data=st.data())
    def refresh(self, data: st.DataObject) -> None:
        family = data.draw(st.sampled_from(self.families))
        response = self.client.post("/api/v1/auth/refresh", json={"refresh_token": family.refresh})
        if family.alive:
            assert response.status_code == 200
            pair = response.json()
            family.spent.append(family.refresh)
            family.refresh, family.access = pair["refresh_token"], pair["access_token"]
        else:
            assert response.status_code == 401

    @precondition(lambda self: any(f.spent for f in self.families))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        family = data.draw(st.sampled_from([f for f in self.families if f.spent]))
        old = data.draw(st.sampled_from(family.spent))
        response = self.client.post("/api/v1/auth/refresh", json={"refresh_token": old})
        assert response.status_code == 401
        family.alive = False

    @precondition(lambda self: self.families)
    @rule(data=st.data())
    def logout(self, data: st.DataObject) -> None:
        family = data.draw(st.sampled_from(self.families))
        response = self.client.post("/api/v1/auth/logout", json={"refresh_token": family.refresh})
        assert response.status_code == 204
        family.alive = False

    @precondition(lambda self: self.families)
    @rule(data=st.data())
    def use(self, data: st.DataObject) -> None:
        family = data.draw(st.sampled_from(self.families))
        response = self.client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {family.access}"}
        )
        assert response.status_code == (200 if family.alive else 401)

    @invariant()
    def at_most_one_live_token_per_family(self) -> None:
        live = sa.select(RefreshToken.family_id, sa.func.count()).where(
            RefreshToken.used_at.is_(None), RefreshToken.revoked_at.is_(None)
        )
        with self.db.engine.connect() as conn:
            counts = dict(conn.execute(live.group_by(RefreshToken.family_id)).all())
            revoked = set(
                conn.execute(
                    sa.select(SessionRow.id).where(SessionRow.revoked_at.is_not(None))
                ).scalars()
            )
        assert all(n <= 1 for n in counts.values())
        assert not revoked & set(counts)

    def teardown(self) -> None:
        self.client.__exit__(None, None, None)
        self.db.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


Sessions.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
test_SES3_session_state_machine = Sessions.TestCase
