"""``--policies`` and ``--principals`` on the real service: the policy decides each action."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from executor_service_support import (
    GUARDRAILS,
    OTHER_KEY_ID,
    OTHER_SECRET,
    Server,
    action,
    encode,
    post,
    signed_headers,
    start_server,
)

POLICY = """
allow "remediators" {
    "remediator" in principal.roles
    resource.kind == "deployment"
}
deny "no-big-scale" {
    action == "scale_deployment"
    context.replicas > 8
    reason "scaling beyond 8 replicas needs a human"
}
"""
PRINCIPALS = "ops: {roles: [remediator]}\nci: {roles: [viewer]}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("executor-policies")
    (tmp / "policies").mkdir()
    (tmp / "policies" / "executor.aegis").write_text(POLICY, encoding="utf-8")
    (tmp / "principals.yaml").write_text(PRINCIPALS, encoding="utf-8")
    (tmp / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    srv = start_server(
        tmp,
        "--allow-namespaces",
        "prod",
        "--policies",
        str(tmp / "policies"),
        "--principals",
        str(tmp / "principals.yaml"),
        "--guardrails",
        str(tmp / "guardrails.yaml"),
    )
    yield srv
    srv.stop()


def send(
    server: Server, key_id: str = "ops", secret: str | None = None, **over: object
) -> dict[str, Any]:
    body = encode(action(**over))
    headers = (
        signed_headers("POST", "/v1/actions", body)
        if secret is None
        else signed_headers("POST", "/v1/actions", body, key_id=key_id, secret=secret)
    )
    response = post(server, body, headers)
    return {**response.json(), "http": response.status_code}


def test_the_policy_allows_a_caller_with_the_role(server: Server) -> None:
    assert send(server, params={"replicas": 5})["http"] == 200


def test_a_deny_rule_refuses_with_its_reason(server: Server) -> None:
    answer = send(server, params={"replicas": 9})
    assert answer["http"] == 403
    assert answer["error"]["reason"] == "policy_denied"
    assert "beyond 8 replicas" in answer["error"]["message"]


def test_a_caller_without_the_role_is_refused_by_default_deny(server: Server) -> None:
    answer = send(server, OTHER_KEY_ID, OTHER_SECRET, type="restart_deployment", params={})
    assert answer["http"] == 403 and answer["error"]["reason"] == "policy_denied"


def test_the_resource_kind_reaches_the_policy(server: Server) -> None:
    answer = send(server, type="restart_pod", name="api-0", params={})
    assert answer["http"] == 403 and answer["error"]["reason"] == "policy_denied"
