"""Schemathesis over part 2's operations: no 500, and every answer matches the OpenAPI document.

``tests/server/test_fuzz_api.py`` already asks every operation for "never a 500"; this adds the
schema checks (status code declared, body conforms, content type) for the policy-service
routes, with an active set loaded so evaluations take real paths.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from server_helpers import Env, bearer

PART2 = (
    "/api/v1/policies",
    "/api/v1/evaluate",
    "/api/v1/audit/decisions",
    "/api/v1/metrics/",
    "/api/v1/settings",
    "/api/v1/ping-auth",
    "/api/v1/audit/verify",
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_LOG4_part2_operations_answer_as_documented(make_env: Any) -> None:
    env: Env = make_env(
        rate_limit_anonymous="100000/minute",
        rate_limit_authenticated="100000/minute",
    )
    headers = bearer(env.admin())
    source = (
        'allow "reads" {\n    action == "read"\n}\n\n'
        'deny "interns" {\n    "intern" in principal.roles\n}\n'
    )
    assert (
        env.client.post(
            "/api/v1/policies", json={"name": "base", "source": source}, headers=headers
        ).status_code
        == 201
    )
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", env.app)
    operations = [
        result.ok() for result in schema.get_all_operations() if result.ok().path.startswith(PART2)
    ]
    assert len(operations) >= 17
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call(headers={**dict(case.headers or {}), **headers})
            case.validate_response(response, checks=CHECKS)

        check()
