"""Property: the server's decision is the library's, byte for byte in JSON, for any request."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import Env, bearer

from aegis.engine import PolicyEngine

SOURCE = """
allow "sre-restarts" {
    action in ["restart_pod", "scale"]
    "sre" in principal.roles
}

allow "owners" {
    resource.owner == principal.id
}

deny "frozen" {
    resource.namespace == "prod"
    context.freeze == true
    reason "prod is frozen"
}

deny "broken-when-size-is-text" {
    resource.size > 10
}
"""
names = st.sampled_from(["alice", "bob", "mallory"])
requests = st.fixed_dictionaries(
    {
        "principal": st.fixed_dictionaries(
            {"id": names, "roles": st.lists(st.sampled_from(["sre", "dev", "intern"]))}
        ),
        "action": st.sampled_from(["restart_pod", "scale", "read"]),
        "resource": st.fixed_dictionaries(
            {},
            optional={
                "owner": names,
                "namespace": st.sampled_from(["prod", "dev"]),
                "size": st.one_of(st.integers(-5, 20), st.text(max_size=3), st.none()),
            },
        ),
        "context": st.fixed_dictionaries({}, optional={"freeze": st.booleans()}),
    }
)


def test_server_decisions_equal_the_engines(env: Env) -> None:
    admin = bearer(env.admin())
    created = env.client.post(
        "/api/v1/policies", json={"name": "parity", "source": SOURCE}, headers=admin
    )
    assert created.status_code == 201, created.text
    engine = PolicyEngine.from_texts({"parity.aegis": SOURCE})

    @given(request=requests)
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(request: dict[str, Any]) -> None:
        answer = env.client.post("/api/v1/evaluate", json=request, headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json() == engine.evaluate(request).to_dict()

    check()
