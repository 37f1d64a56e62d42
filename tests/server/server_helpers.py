"""Helpers of the server tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette 1.x prefers `httpx2` for its TestClient; `httpx` still works (same API).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from aegis.server import Settings
from aegis.server.bootstrap import create_admin
from aegis.server.db import Database

ADMIN_PASSWORD = "admin-password-long-enough-1"
USER_PASSWORD = "correct horse battery staple"


class FakeClock:
    """An injectable clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class RecordingMailer:
    """Keeps every message (the ``Mailer`` protocol)."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, recipient: str, subject: str, body: str) -> None:
        self.sent.append((recipient, subject, body))

    def last_token(self, recipient: str) -> str:
        for to, _, body in reversed(self.sent):
            found = re.findall(r"(?:token=|\n\n)([A-Za-z0-9_-]{40,})\b", body)
            if to == recipient and found:
                return str(found[-1])
        raise AssertionError(f"no token mailed to {recipient}")


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": secrets.token_urlsafe(32),
        "database_url": database_url,
        "password_hash_profile": "fast",
        "hash_workers": 4,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Env:
    """One app under test and its helpers."""

    app: Starlette
    client: TestClient
    settings: Settings
    clock: FakeClock
    mailer: RecordingMailer
    db: Database

    def signup(self, email: str, password: str = USER_PASSWORD, **extra: Any) -> Any:
        return self.client.post(
            "/api/v1/auth/signup", json={"email": email, "password": password, **extra}
        )

    def login(self, email: str, password: str = USER_PASSWORD) -> Any:
        return self.client.post("/api/v1/auth/login", json={"email": email, "password": password})

    def user(self, email: str, password: str = USER_PASSWORD) -> dict[str, Any]:
        """Sign up and log in; returns the token pair."""
        assert self.signup(email, password).status_code == 201
        response = self.login(email, password)
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair

    def admin(self, email: str = "root@example.com") -> dict[str, Any]:
        create_admin(self.settings, email, ADMIN_PASSWORD, db=self.db)
        response = self.login(email, ADMIN_PASSWORD)
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


EnvFactory = Callable[..., Env]
