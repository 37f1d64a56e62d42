"""Persistence of the server: SQLAlchemy 2 tables, a thread-pooled database handle, migrations."""

from __future__ import annotations

from aegis.server.db.database import Database, upgrade
from aegis.server.db.models import (
    AuditEvent,
    Base,
    LoginSource,
    MailOutbox,
    RefreshToken,
    ResetToken,
    RevokedAccessToken,
    Session,
    User,
)

__all__ = [
    "AuditEvent",
    "Base",
    "Database",
    "LoginSource",
    "MailOutbox",
    "RefreshToken",
    "ResetToken",
    "RevokedAccessToken",
    "Session",
    "User",
    "upgrade",
]
