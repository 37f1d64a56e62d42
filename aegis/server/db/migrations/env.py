"""Alembic environment: always run online, on the connection handed over by ``upgrade()``."""

from __future__ import annotations

from alembic import context

from aegis.server.db.database import create_engine

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run by hand with sqlalchemy.url set
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=None)
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=None)
    context.run_migrations()
