"""Fixtures of the server tests: an app per test on a fresh SQLite file (or PostgreSQL/Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    Env,
    EnvFactory,
    FakeClock,
    RecordingMailer,
    TestClient,
    make_settings,
)

from aegis.server import create_app
from aegis.server.db import Database, upgrade


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[EnvFactory]:
    """Build apps on a fresh SQLite file; ``make_env(database_url=..., **settings)``."""
    made: list[Env] = []

    def factory(database_url: str | None = None, **overrides: Any) -> Env:
        url = database_url or f"sqlite:///{tmp_path / f'aegis-{len(made)}.db'}"
        settings = make_settings(url, **overrides)
        db = Database(url)
        upgrade(db.engine)
        clock, mailer = FakeClock(), RecordingMailer()
        app = create_app(settings, clock=clock, mailer=mailer, database=db)
        client = TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000))
        client.__enter__()
        env = Env(app, client, settings, clock, mailer, db)
        made.append(env)
        return env

    yield factory
    for env in made:
        env.client.__exit__(None, None, None)
        env.db.dispose()


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    """An app on SQLite with the fast hasher and a fake clock."""
    return make_env()
