"""Spec §8: the compiled, indexed evaluator gives the same whole decision object as the
reference interpreter — on generated sets of up to 1,000 rules and generated requests,
errors and invalid requests included."""

from __future__ import annotations

from typing import Any

from _strategies import index_requests, large_rule_sets, requests, rule_sets
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine import InvalidRequestError
from aegis.engine._combine import combine
from aegis.engine._compiler import CompiledPolicySet
from aegis.engine._reference import evaluate_rule
from aegis.engine.request import parse_request
from aegis.lang import PolicySet, ast


def _set(rules: list[ast.Rule]) -> PolicySet:
    ordered = tuple(sorted(rules, key=lambda r: r.name))
    return PolicySet((), ordered, "v" * 64)


def _reference(policy_set: PolicySet, request: Any) -> Any:
    try:
        parsed = parse_request(request)
    except InvalidRequestError as exc:
        return ("invalid", str(exc))
    return combine([evaluate_rule(r, parsed) for r in policy_set.rules], policy_set.version)


def _compiled(compiled: CompiledPolicySet, request: Any) -> Any:
    try:
        return compiled.evaluate(request)
    except InvalidRequestError as exc:
        return ("invalid", str(exc))


@given(large_rule_sets(), st.lists(index_requests(), min_size=1, max_size=25))
@settings(max_examples=60, deadline=None)
def test_compiled_equals_reference_on_large_sets(
    rules: list[ast.Rule], stream: list[dict[str, Any]]
) -> None:
    policy_set = _set(rules)
    compiled = CompiledPolicySet(policy_set)
    for request in stream:
        assert _compiled(compiled, request) == _reference(policy_set, request)


@given(rule_sets(max_size=8), st.lists(requests() | index_requests(), min_size=1, max_size=10))
@settings(max_examples=300, deadline=None)
def test_compiled_equals_reference_on_small_sets(
    rules: list[ast.Rule], stream: list[dict[str, Any]]
) -> None:
    policy_set = _set(rules)
    compiled = CompiledPolicySet(policy_set)
    for request in stream:
        assert _compiled(compiled, request) == _reference(policy_set, request)


ODD_REQUESTS = [
    {"principal": {}, "action": "a", "resource": {}, "context": {"time": True}},
    {"principal": {}, "action": "a", "resource": {}, "context": {"time": 1.5}},
    {"principal": {}, "action": "a", "resource": {}, "context": None},
    {"principal": {"x": float("nan")}, "action": "a", "resource": {}},
    {"principal": {1: "x"}, "action": "a", "resource": {}},
    {"principal": {"x": {1, 2}}, "action": "a", "resource": {}},
    {"principal": {"roles": ("sre",)}, "action": "a", "resource": {"replicas": 3.0}},
    {"principal": [], "action": "a", "resource": {}},
    {"principal": {}, "action": "a", "resource": {}, "extra": 1},
    {"principal": {}, "resource": {}},
    "not a request",
]


@given(rule_sets(max_size=6), st.sampled_from(ODD_REQUESTS))
@settings(max_examples=100, deadline=None)
def test_compiled_equals_reference_on_odd_requests(rules: list[ast.Rule], request: Any) -> None:
    policy_set = _set(rules)
    assert _compiled(CompiledPolicySet(policy_set), request) == _reference(policy_set, request)


@given(large_rule_sets(max_rules=60), st.lists(index_requests(), min_size=1, max_size=15))
@settings(max_examples=150, deadline=None)
def test_compiled_equals_reference_when_every_set_is_sharded(
    rules: list[ast.Rule], stream: list[dict[str, Any]]
) -> None:
    from aegis.engine import _index

    policy_set = _set(rules)
    saved = _index.SHARD_ABOVE
    _index.SHARD_ABOVE = 3  # shard (recursively) even small sets, to exercise every path
    try:
        compiled = CompiledPolicySet(policy_set)
    finally:
        _index.SHARD_ABOVE = saved
    for request in stream:
        assert _compiled(compiled, request) == _reference(policy_set, request)
