"""Shared fixtures: the real PostgreSQL and Redis of the machine, when configured.

``AEGIS_TEST_DATABASE_URL`` and ``AEGIS_TEST_REDIS_URL`` name them. Without them the tests that
need them skip with a clear reason; with ``AEGIS_REQUIRE_SERVICES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest

_REQUIRE = os.environ.get("AEGIS_REQUIRE_SERVICES") == "1"

# Compiled-set snapshots (aegis.engine._snapshot) of this run go to a private directory of
# its own, never to the user's ~/.cache; subprocesses (`aegis serve` …) inherit it.
_SNAPSHOTS = tempfile.mkdtemp(prefix="aegis-compiled-")
os.environ["AEGIS_COMPILED_CACHE"] = _SNAPSHOTS
atexit.register(shutil.rmtree, _SNAPSHOTS, True)


def _unavailable(reason: str) -> None:
    if _REQUIRE:
        pytest.fail(f"{reason} (AEGIS_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A SQLAlchemy URL of the real PostgreSQL test database (psycopg 3 driver)."""
    url = os.environ.get("AEGIS_TEST_DATABASE_URL")
    if not url:
        _unavailable("needs PostgreSQL: set AEGIS_TEST_DATABASE_URL")
        raise AssertionError("unreachable")
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        _unavailable(f"PostgreSQL at AEGIS_TEST_DATABASE_URL is unreachable: {exc}")
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards; yields a URL using it.

    The URL sets ``search_path`` to the new schema, so tests never see each other's tables.
    """
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{name}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the real Redis server."""
    url = os.environ.get("AEGIS_TEST_REDIS_URL")
    if not url:
        _unavailable("needs Redis: set AEGIS_TEST_REDIS_URL")
        raise AssertionError("unreachable")
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:
        _unavailable(f"Redis at AEGIS_TEST_REDIS_URL is unreachable: {exc}")
    return url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to one test, so tests sharing one Redis never collide."""
    return f"aegis-test:{uuid.uuid4().hex[:12]}:"
