"""Schemathesis over the whole API from its own OpenAPI document (LOG-4: never a 500)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from server_helpers import Env, bearer


@pytest.mark.slow
def test_LOG4_no_operation_ever_answers_500(make_env: Any) -> None:
    env: Env = make_env(
        rate_limit_auth="100000/minute",
        rate_limit_anonymous="100000/minute",
        rate_limit_authenticated="100000/minute",
        login_failures_per_address=100000,
    )
    headers = bearer(env.admin())
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", env.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call(headers={**dict(case.headers or {}), **headers})
            assert response.status_code < 500, (case.method, case.path, response.text[:300])
            assert "Traceback" not in response.text

        check()
