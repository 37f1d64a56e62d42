"""The packaged Alembic migrations build the schema the models describe, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aegis.server.db import Base, Database, upgrade


def _check(url: str) -> None:
    upgrade(url)
    upgrade(url)  # idempotent: a second run changes nothing
    db = Database(url)
    try:
        inspector = sa.inspect(db.engine)
        tables = set(inspector.get_table_names())
        for table in Base.metadata.sorted_tables:
            assert table.name in tables
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            assert columns == {c.name for c in table.columns}, table.name
        assert "aegis_audit_records" in tables  # the engine sink's tables (migration 0002)
        with db.engine.connect() as conn:
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        assert current == _head()
    finally:
        db.dispose()


def _head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import aegis.server.db as package

    config = Config()
    config.set_main_option("script_location", str(Path(package.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'fresh' / 'aegis.db'}")


@pytest.mark.postgres
def test_migrations_match_the_models_on_postgres(postgres_schema: str) -> None:
    _check(postgres_schema)


def test_migrations_ship_inside_the_package() -> None:
    import aegis.server.db as package

    versions = Path(package.__file__).parent / "migrations" / "versions"
    names = sorted(p.name for p in versions.glob("0*.py"))
    assert names[:2] == ["0001_initial.py", "0002_engine_audit.py"]
    assert (versions.parent / "env.py").is_file()


def test_sqlite_directory_is_created(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    upgrade("sqlite:///var/aegis.db")
    assert (tmp_path / "var" / "aegis.db").is_file()
