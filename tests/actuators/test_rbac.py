"""K8S-3: lint the executor's RBAC manifests in deploy/kubernetes/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy" / "kubernetes"
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "aegis-executor", "namespace": "aegis"}
# remediation.md §1.5, exactly: (apiGroup, resource) -> verbs
EXPECTED = {
    ("", "pods"): {"get", "list", "delete"},
    ("", "pods/eviction"): {"create"},
    ("apps", "deployments"): {"get", "list", "patch"},
    ("apps", "deployments/scale"): {"get", "patch"},
    ("apps", "replicasets"): {"get", "list"},
    ("autoscaling", "horizontalpodautoscalers"): {"get", "list"},
}
FORBIDDEN_VERBS = {"*", "bind", "escalate", "impersonate", "deletecollection", "update"}


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(DEPLOY.glob("*.y*ml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def _rbac() -> list[dict[str, Any]]:
    return [
        d for d in _documents() if d.get("apiVersion", "").startswith("rbac.authorization.k8s.io")
    ]


def test_K8S3_no_cluster_scoped_rbac() -> None:
    kinds = {d["kind"] for d in _rbac()}
    assert kinds == {"Role", "RoleBinding"}


def lint_rules(rules: list[dict[str, Any]]) -> list[str]:
    """Problems in one Role's rules (wildcards, forbidden verbs, secrets, extra grants)."""
    problems: list[str] = []
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if not set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}:
            problems.append(f"unexpected fields {sorted(rule)}")
        for field in ("apiGroups", "resources", "verbs"):
            if any("*" in v for v in rule.get(field, [])):
                problems.append(f"wildcard in {field}")
        if FORBIDDEN_VERBS & set(rule["verbs"]):
            problems.append(f"forbidden verbs {sorted(FORBIDDEN_VERBS & set(rule['verbs']))}")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if resource in {
                    "secrets",
                    "configmaps",
                    "serviceaccounts",
                    "serviceaccounts/token",
                }:
                    problems.append(f"access to {resource}")
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    if grants != EXPECTED:
        problems.append(f"grants differ from remediation.md §1.5: {grants}")
    return problems


def test_K8S3_roles_grant_exactly_the_documented_verbs() -> None:
    roles = [d for d in _rbac() if d["kind"] == "Role"]
    assert roles
    for role in roles:
        assert lint_rules(role["rules"]) == [], role["metadata"]["namespace"]


def test_K8S3_each_role_is_bound_in_its_namespace_to_the_executor_only() -> None:
    roles = {d["metadata"]["namespace"] for d in _rbac() if d["kind"] == "Role"}
    bindings = [d for d in _rbac() if d["kind"] == "RoleBinding"]
    assert {b["metadata"]["namespace"] for b in bindings} == roles
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "aegis-executor",
        }
        assert binding["subjects"] == [SERVICE_ACCOUNT]


def test_K8S3_service_account_exists() -> None:
    accounts = [d for d in _documents() if d["kind"] == "ServiceAccount"]
    assert [(a["metadata"]["name"], a["metadata"]["namespace"]) for a in accounts] == [
        ("aegis-executor", "aegis")
    ]


@pytest.mark.parametrize(
    ("bad_rule", "problem"),
    [
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}, "access to secrets"),
        ({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, "wildcard in apiGroups"),
        (
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]},
            "wildcard in verbs",
        ),
        (
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles"],
                "verbs": ["escalate"],
            },
            "forbidden verbs",
        ),
        ({"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get"]}, "grants differ"),
    ],
)
def test_K8S3_the_lint_catches_bad_rules(bad_rule: dict[str, Any], problem: str) -> None:
    rules = [*next(d for d in _rbac() if d["kind"] == "Role")["rules"], bad_rule]
    assert any(p.startswith(problem) for p in lint_rules(rules))
