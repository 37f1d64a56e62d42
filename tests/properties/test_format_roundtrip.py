"""Spec §8: parsing the canonical formatting of a rule gives the same rule; formatting is
idempotent."""

from __future__ import annotations

from _strategies import exprs, rule_sets, rules
from hypothesis import given, settings

from aegis.lang import ast, format_expr, format_policy, format_rule, parse_policy


@given(rules())
@settings(max_examples=300)
def test_rule_round_trip(rule: ast.Rule) -> None:
    text = format_rule(rule)
    (parsed,) = parse_policy(text).rules
    assert parsed == rule
    assert format_rule(parsed) == text


@given(exprs)
@settings(max_examples=300)
def test_expression_round_trip(expr: ast.Expr) -> None:
    text = f'allow "r" {{\n    {format_expr(expr)}\n}}\n'
    (parsed,) = parse_policy(text).rules
    assert parsed.conditions == (expr,)


@given(rule_sets())
@settings(max_examples=100)
def test_file_formatting_is_idempotent(rule_list: list[ast.Rule]) -> None:
    policy = ast.PolicyFile("f.aegis", None, tuple(rule_list))
    once = format_policy(policy)
    parsed = parse_policy(once, "f.aegis")
    assert parsed.rules == tuple(rule_list)
    assert format_policy(parsed) == once
