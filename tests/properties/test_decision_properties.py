"""Spec §6 and §8 as properties over generated rules and requests (errors included).

Order independence, deny-wins monotonicity, default deny, and the commutativity of `and` / `or`
with errors — all through the public API, on whole decision objects.
"""

from __future__ import annotations

from typing import Any

from _strategies import exprs, requests, rule_sets, rules
from hypothesis import given, settings
from hypothesis import strategies as st

import aegis
from aegis.lang import ast, format_rule


def engine_of(rule_list: list[ast.Rule], files: int = 1) -> aegis.PolicyEngine:
    texts: dict[str, str] = {f"f{i}.aegis": "" for i in range(files)}
    for i, rule in enumerate(rule_list):
        texts[f"f{i % files}.aegis"] += format_rule(rule) + "\n"
    return aegis.PolicyEngine.from_texts(texts)


def decide(rule_list: list[ast.Rule], request: dict[str, Any]) -> dict[str, Any]:
    return engine_of(rule_list).evaluate(request).to_dict()


@given(rule_sets(), requests(), st.randoms(use_true_random=False), st.integers(1, 3))
@settings(max_examples=150, deadline=None)
def test_order_of_rules_and_files_never_changes_the_decision(
    rule_list: list[ast.Rule], request: dict[str, Any], rnd: Any, files: int
) -> None:
    shuffled = list(rule_list)
    rnd.shuffle(shuffled)
    first = engine_of(rule_list).evaluate(request).to_dict()
    second = engine_of(shuffled, files).evaluate(request).to_dict()
    assert first == second


@given(rule_sets(), rules(st.just("added-rule")), requests())
@settings(max_examples=150, deadline=None)
def test_deny_wins_monotonicity(
    rule_list: list[ast.Rule], extra: ast.Rule, request: dict[str, Any]
) -> None:
    rule_list = [r for r in rule_list if r.name != "added-rule"]
    before = decide(rule_list, request)["decision"]
    after = decide([*rule_list, extra], request)["decision"]
    if extra.effect == "allow" and before == "ALLOW":
        assert after == "ALLOW"  # adding an allow rule never turns ALLOW into DENY
    if extra.effect == "deny" and before == "DENY":
        assert after == "DENY"  # adding a deny rule never turns DENY into ALLOW


@given(requests())
@settings(max_examples=50, deadline=None)
def test_no_rules_means_deny(request: dict[str, Any]) -> None:
    decision = aegis.PolicyEngine.from_texts({}).evaluate(request)
    assert decision.decision == "DENY"
    assert decision.reason == "no allow rule matched"
    assert not decision.allowed


@given(exprs, exprs, st.sampled_from(["allow", "deny"]), requests())
@settings(max_examples=200, deadline=None)
def test_and_or_commute_errors_included(
    a: ast.Expr, b: ast.Expr, effect: str, request: dict[str, Any]
) -> None:
    for chain in (ast.And, ast.Or):
        one = ast.Rule(effect, "r", (chain((a, b)),))  # type: ignore[arg-type]
        two = ast.Rule(effect, "r", (chain((b, a)),))  # type: ignore[arg-type]
        left, right = decide([one], request), decide([two], request)
        left.pop("version"), right.pop("version")
        # the rule's outcome (match / no match / error) is the same; messages may differ
        assert left["decision"] == right["decision"]
        assert left["allow"] == right["allow"] and left["deny"] == right["deny"]
        assert len(left["errors"]) == len(right["errors"])
    conditions_ab = ast.Rule(effect, "r", (a, b))  # type: ignore[arg-type]
    conditions_ba = ast.Rule(effect, "r", (b, a))  # type: ignore[arg-type]
    x, y = decide([conditions_ab], request), decide([conditions_ba], request)
    assert (x["decision"], x["allow"], x["deny"], len(x["errors"])) == (
        y["decision"],
        y["allow"],
        y["deny"],
        len(y["errors"]),
    )


@given(rule_sets(), requests())
@settings(max_examples=100, deadline=None)
def test_decision_is_consistent_with_its_lists(
    rule_list: list[ast.Rule], request: dict[str, Any]
) -> None:
    decision = engine_of(rule_list).evaluate(request)
    assert decision.allowed == (decision.decision == "ALLOW")
    assert decision.allowed == (not decision.deny and bool(decision.allow))
    assert list(decision.allow) == sorted(decision.allow)
    assert list(decision.deny) == sorted(decision.deny)
    assert aegis.Decision.from_dict(decision.to_dict()) == decision


@given(rule_sets(), requests())
@settings(max_examples=100, deadline=None)
def test_AC4_an_evaluation_error_in_a_deny_rule_is_an_explicit_deny(
    rule_list: list[ast.Rule], request: dict[str, Any]
) -> None:
    decision = engine_of(rule_list).evaluate(request)
    assert decision.decision in ("ALLOW", "DENY")
    erring = {e.rule for e in decision.errors}
    deny_rules = {r.name for r in rule_list if r.effect == "deny"}
    if erring & deny_rules:
        assert decision.decision == "DENY"
        assert set(decision.deny) >= erring & deny_rules
