"""Part 2's HTTP flows on the machine's PostgreSQL (and Redis for the decision cache)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
import test_policies_api as flows
from server_helpers import bearer

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize(
    "flow",
    [
        flows.test_create_list_get_versions_and_evaluate_like_aegis_eval,
        flows.test_a_document_that_does_not_load_gets_every_diagnostic,
        flows.test_invalid_requests_are_400_and_batches_are_bounded,
        flows.test_metrics_current_historical_and_rule_counts,
        flows.test_settings_are_typed_validated_audited_and_admin_only,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_flows_on_postgres(make_env: Any, postgres_schema: str, flow: Any) -> None:
    flow(make_env(database_url=postgres_schema))


def test_AUD2_tampering_through_postgres_is_named_by_verify(
    make_env: Any, postgres_schema: str
) -> None:
    env = make_env(database_url=postgres_schema)
    admin = bearer(env.admin())
    assert flows._create(env, admin).status_code == 201
    for _ in range(5):
        env.client.post("/api/v1/evaluate", json=flows.REQUEST, headers=admin)
    assert env.client.get("/api/v1/audit/verify", headers=admin).json()["ok"] is True
    with env.db.engine.begin() as conn:  # the owner can switch the triggers off (docs/audit.md)
        conn.execute(sa.text("ALTER TABLE aegis_audit_records DISABLE TRIGGER USER"))
        conn.execute(
            sa.text("DELETE FROM aegis_audit_records WHERE chain = 'decisions' AND seq = 3")
        )
    verdict = env.client.get("/api/v1/audit/verify", headers=admin).json()
    assert verdict["ok"] is False
    assert verdict["first_bad"]["chain"] == "decisions"
    assert verdict["first_bad"]["seq"] == 3 and verdict["first_bad"]["problem"] == "deleted"


def test_nul_in_query_values_is_refused_not_a_database_error(
    make_env: Any, postgres_schema: str
) -> None:
    env = make_env(database_url=postgres_schema)
    admin = bearer(env.admin())
    for url in (
        "/api/v1/audit/decisions?principal=a%00b",
        "/api/v1/audit/decisions?rule=%00",
        "/api/v1/policies?cursor=a%00",
        "/api/v1/audit/events?action=%00",
        "/api/v1/users?cursor=%00",
        "/api/v1/audit/events?since=0001-01-01T00:00:00%2B01:00",
    ):
        assert env.client.get(url, headers=admin).status_code == 422, url
    assert env.client.get("/api/v1/users/a%00b", headers=admin).status_code == 404
    assert env.client.get("/api/v1/policies/a%00b", headers=admin).status_code == 404
    assert env.client.get("/api/v1/policies/a%00b/versions", headers=admin).status_code == 404
