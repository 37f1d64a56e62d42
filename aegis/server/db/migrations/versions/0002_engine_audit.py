"""The tables of ``aegis.engine.audit``'s SQL sink (for ``AEGIS_AUDIT_BACKEND=engine``).

The engine exports its table definitions and append-only triggers for exactly this use; both
are idempotent, so a sink that already created them is fine.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from aegis.engine.audit.sql import metadata, schema_ddl

    bind = op.get_bind()
    metadata.create_all(bind, checkfirst=True)
    for statement in schema_ddl(bind.dialect.name):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("audit tables are never dropped by a migration")
