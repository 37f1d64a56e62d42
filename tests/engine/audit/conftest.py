"""Fixtures for the audit tests: record factories and a database URL per backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aegis.engine.audit import AuditRecordV1, decision_record, event_record
from aegis.engine.decision import Decision, RuleError

REQUEST = {
    "principal": {"id": "alice", "roles": ["sre"], "email": "alice@example.com"},
    "action": "restart_pod",
    "resource": {"kind": "pod", "namespace": "prod", "name": "api-7d9"},
    "context": {"time": "2026-11-26T10:15:00Z", "source": "detector"},
}


def make_decision(i: int = 0) -> Decision:
    """A real engine Decision; ``i`` varies it so records differ."""
    if i % 3 == 2:
        return Decision(
            decision="DENY",
            allowed=False,
            reason=f"frozen #{i}",
            allow=(),
            deny=("freeze",),
            errors=(RuleError("quota", "`resource.replicas` is missing"),),
            version="ab" * 32,
        )
    return Decision(
        decision="ALLOW",
        allowed=True,
        reason=f"sre may restart #{i}",
        allow=("sre-restart",),
        deny=(),
        errors=(),
        version="ab" * 32,
    )


def make_record(i: int = 0, chain: str = "decisions") -> AuditRecordV1:
    """An unsealed decision record, or an event record for non-decision chains."""
    if chain == "decisions":
        req = {**REQUEST, "resource": {**REQUEST["resource"], "name": f"api-{i}"}}
        return decision_record(make_decision(i), req, chain=chain)
    return event_record("login", {"user": f"u{i}", "outcome": "ok"}, chain=chain)


@pytest.fixture
def records() -> Callable[..., list[AuditRecordV1]]:
    """``records(n, chain="decisions")`` -> n unsealed records."""

    def build(n: int, chain: str = "decisions", start: int = 0) -> list[AuditRecordV1]:
        return [make_record(start + i, chain) for i in range(n)]

    return build


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh audit database: a SQLite file, or an isolated PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("postgres_schema"))
