"""The reference interpreter (spec §5–§6), from hand-built ASTs and from policy text."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine._combine import Outcome
from aegis.engine._reference import evaluate_expr, evaluate_rule
from aegis.engine._values import MISSING, EvalError, Result
from aegis.engine.request import Request, parse_request
from aegis.lang import ast, parse_policy

NOW = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)  # Thursday; 08:30 in Berlin

REQUEST: dict[str, Any] = {
    "principal": {"id": "alice", "roles": ["sre", "dev"], "active": True, "level": 3},
    "action": "restart_pod",
    "resource": {
        "kind": "pod",
        "namespace": "production",
        "name": "v1*",
        "replicas": 3,
        "ratio": 0.1,
        "owner": None,
        "labels": {"app.kubernetes.io/name": "api", "team": "payments"},
        "tags": [1, "two", True, None, [1], {"k": 1}],
        "flag": "yes",
    },
    "context": {"source": "detector"},
}


def _request(data: dict[str, Any] | None = None) -> Request:
    return parse_request(REQUEST if data is None else data, now=NOW)


def _rule(body: str, *, zone: str | None = None, effect: str = "allow") -> ast.Rule:
    header = f'timezone "{zone}"\n' if zone else ""
    policy = parse_policy(f'{header}{effect} "r" {{\n{body}\n}}')
    (rule,) = policy.rules
    return rule


def _eval(expr_text: str, data: dict[str, Any] | None = None, zone: str = "UTC") -> Result:
    rule = _rule(expr_text, zone=zone)
    (condition,) = rule.conditions
    return evaluate_expr(condition, _request(data), zone)


def _messages(result: Result) -> str:
    assert isinstance(result, EvalError), result
    return result.message


# ----------------------------------------------------------------------------- hand-built


def _path(root: str, *keys: str) -> ast.Path:
    return ast.Path(root, tuple(keys))


def test_hand_built_ast_compare_and_membership() -> None:
    request = _request()
    replicas = _path("resource", "replicas")
    expr = ast.And(
        (
            ast.Compare(">=", replicas, ast.NumberLit(Decimal("3.0"))),
            ast.Membership(ast.StringLit("sre"), _path("principal", "roles")),
            ast.Membership(
                replicas, ast.RangeLit(ast.NumberLit(Decimal(1)), ast.NumberLit(Decimal(3)))
            ),
            ast.Like(_path("resource", "namespace"), ast.StringLit("prod*")),
            ast.Has(_path("resource", "owner")),
            ast.Not(ast.Has(_path("resource", "missing"))),
        )
    )
    assert evaluate_expr(expr, request, "UTC") is True


def test_hand_built_rule_outcomes() -> None:
    request = _request()
    match = ast.Rule("allow", "m", (ast.BoolLit(True),))
    empty = ast.Rule("deny", "e", ())
    no_match = ast.Rule("allow", "n", (ast.Compare("==", _path("action"), ast.StringLit("x")),))
    error = ast.Rule("deny", "x", (_path("resource", "nope"),), reason="why")
    assert evaluate_rule(match, request).outcome is Outcome.MATCH
    assert evaluate_rule(empty, request).outcome is Outcome.MATCH  # an empty rule matches
    assert evaluate_rule(no_match, request).outcome is Outcome.NO_MATCH
    result = evaluate_rule(error, request)
    assert result.outcome is Outcome.ERROR
    assert result.message == "`resource.nope` is missing"
    assert result.reason == "why"
    assert result.effect == "deny"


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("principal.id", "alice"),
        ("action", "restart_pod"),
        ('resource.labels["app.kubernetes.io/name"]', "api"),
        ("resource.labels.team", "payments"),
        ('resource["kind"]', "pod"),
        ("context.source", "detector"),
        ("resource.owner", None),
    ],
)
def test_paths_read_into_objects(path: str, expected: object) -> None:
    assert _eval(f"{path} == {path}") is True
    rule = _rule(f"{path} == {path}")
    condition = rule.conditions[0]
    assert isinstance(condition, ast.Compare)
    assert evaluate_expr(condition.left, _request(), "UTC") == expected


@pytest.mark.parametrize(
    "path",
    [
        "action.x",  # action is a string
        "resource.kind.x",  # through a string
        "resource.tags.x",  # through a list
        "resource.owner.x",  # through null
        "resource.nope",
        "resource.nope.deeper",
        "resource.labels.app",  # a dotted key is one key, not a nested path
        "context.time",  # no context.time in this request
        "time.second",  # time has exactly nine attributes
        "time.hour.x",
    ],
)
def test_paths_through_missing_keys_or_non_objects_are_missing(path: str) -> None:
    rule = _rule(f"has {path}")
    condition = rule.conditions[0]
    assert isinstance(condition, ast.Has)
    assert evaluate_expr(condition.path, _request(), "UTC") is MISSING
    assert evaluate_expr(condition, _request(), "UTC") is False


def test_has_is_true_for_null_and_for_roots() -> None:
    assert _eval("has resource.owner") is True
    assert _eval("has principal") is True
    assert _eval("has time") is True
    assert _eval("has time.epoch") is True
    assert _eval("has context", {**REQUEST, "context": {}}) is True


def test_time_is_seen_in_the_rules_zone() -> None:
    assert _eval("time.hour == 7", zone="UTC") is True
    assert _eval("time.hour == 8", zone="Europe/Berlin") is True
    assert _eval('time.clock == "08:30"', zone="Europe/Berlin") is True
    assert _eval('time.weekday == "thu"', zone="Europe/Berlin") is True
    assert _eval('time.date == "2026-11-26"', zone="Europe/Berlin") is True
    assert _eval("time.epoch == 1795678200") is True
    assert _eval('time.weekday == "wed"', zone="Pacific/Honolulu") is True  # UTC-10


def test_time_object_equals_an_object_with_exactly_its_attributes() -> None:
    request = _request()
    view = request.time_view("UTC")
    assert evaluate_expr(_path("time"), request, "UTC") == view
    assert set(view) == {
        "year", "month", "day", "hour", "minute", "weekday", "date", "clock", "epoch",
    }  # fmt: skip


# ----------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("resource.replicas == 3.0", True),
        ("resource.replicas != 3", False),
        ("resource.ratio == 0.1", True),  # a request's 0.1 is the literal 0.1
        ("principal.active == true", True),
        ("principal.level == true", False),  # booleans are not numbers
        ("resource.owner == false", False),
        ('resource.replicas == "3"', False),
        ("resource.tags == resource.tags", True),
        ("resource.labels == resource.labels", True),
        ("resource.labels != resource.tags", True),
        ("resource.replicas < 3.5", True),
        ("resource.replicas <= 3", True),
        ("resource.replicas > 3", False),
        ("resource.replicas >= 3.0", True),
        ('resource.kind < "pods"', True),
        ('"Zed" < "m"', True),
        ("1 == 1.0", True),
        ("-0.0 == 0", True),
    ],
)
def test_compare(expr: str, expected: bool) -> None:
    assert _eval(expr) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("resource.nope == 1", "`resource.nope` is missing"),
        ("1 != resource.nope", "`resource.nope` is missing"),
        ("resource.replicas > resource.nope", "`resource.nope` is missing"),
        ("resource.kind < 1", "cannot order a string and a number in `resource.kind < 1`"),
        ("true < false", "cannot order a boolean and a boolean in `true < false`"),
        ("resource.owner >= 0", "cannot order a null and a number in `resource.owner >= 0`"),
        ("resource.tags < resource.tags", "cannot order a list and a list"),
        ("resource.a == resource.b", "`resource.a` is missing; `resource.b` is missing"),
    ],
)
def test_compare_errors(expr: str, message: str) -> None:
    assert message in _messages(_eval(expr))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('action in ["restart_pod", "x"]', True),
        ('action not in ["restart_pod"]', False),
        ("resource.replicas in [1, 3.0]", True),
        ("principal.active in [1]", False),  # true is not 1
        ("principal.level in [true]", False),
        ('resource.owner in [false, 0, ""]', False),
        ("resource.replicas in 3..5", True),
        ("resource.replicas in 1..3", True),  # inclusive at both ends
        ("resource.replicas in 4..9", False),
        ("resource.replicas in 5..1", False),  # an empty range
        ("resource.ratio in 0.1..0.1", True),
        ("resource.replicas not in 1..2", True),
        ('"sre" in principal.roles', True),
        ('"ops" in principal.roles', False),
        ("1.0 in resource.tags", True),
        ("true in resource.tags", True),
        ("resource.owner in resource.tags", True),  # null is an element
        ('"team" in resource.labels', True),  # an object: one of its keys
        ('"payments" in resource.labels', False),  # a value is not a key
        ("1 in resource.labels", False),  # a non-string is simply not a key
        ("principal.active in resource.labels", False),
        ('"team" not in resource.labels', False),
    ],
)
def test_membership(expr: str, expected: bool) -> None:
    assert _eval(expr) is expected


def test_membership_with_structured_elements() -> None:
    data = {**REQUEST, "resource": {"tags": [[1, 2], {"a": [True]}], "x": [1, 2.0]}}
    assert _eval("resource.x in resource.tags", data) is True
    data["resource"] = {"tags": [[1, 2]], "x": [2, 1]}
    assert _eval("resource.x in resource.tags", data) is False


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('resource.nope in ["a"]', "`resource.nope` is missing"),
        ("resource.nope in 1..2", "`resource.nope` is missing"),
        ("resource.kind in 1..2", "`resource.kind` is a string, not a number"),
        ("principal.active in 0..1", "`principal.active` is a boolean, not a number"),
        ('"x" in resource.nope', "`resource.nope` is missing"),
        ("resource.nope in principal.roles", "`resource.nope` is missing"),
        ('"x" in resource.kind', "`resource.kind` is a string, not a list or an object"),
        ('"x" not in resource.owner', "`resource.owner` is a null, not a list or an object"),
        ('"x" in resource.replicas', "`resource.replicas` is a number, not a list or an object"),
    ],
)
def test_membership_errors(expr: str, message: str) -> None:
    assert message in _messages(_eval(expr))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('resource.namespace like "prod*"', True),
        ('resource.namespace like "*duct*"', True),
        ('resource.namespace like "prod"', False),
        ('resource.name like "v1\\\\*"', True),  # source "v1\\*" is the glob v1\*
        ('resource.kind like "v1\\\\*"', False),
        ('action like "*_*"', True),
    ],
)
def test_like(expr: str, expected: bool) -> None:
    assert _eval(expr) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('resource.nope like "*"', "`resource.nope` is missing"),
        ('resource.replicas like "*"', "`resource.replicas` is a number, not a string"),
        ('resource.owner like "*"', "`resource.owner` is a null, not a string"),
    ],
)
def test_like_errors(expr: str, message: str) -> None:
    assert message in _messages(_eval(expr))


# ----------------------------------------------------------------------------- logic


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("true", True),
        ("false", False),
        ("principal.active", True),
        ("not principal.active", False),
        ("not not principal.active", True),
        ("(principal.active)", True),
        ("principal.active and resource.replicas == 3", True),
        ("resource.nope == 1 and false", False),  # error and false is false
        ("false and resource.nope == 1", False),
        ("resource.nope == 1 or true", True),  # error or true is true
        ("true or resource.nope == 1", True),
        ("resource.flag or true", True),  # a non-boolean or true is true
        ("false and resource.flag", False),
    ],
)
def test_logic(expr: str, expected: bool) -> None:
    assert _eval(expr) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("resource.nope", "`resource.nope` is missing"),
        ("resource.flag", "`resource.flag` is a string, not a boolean"),
        ("1", "`1` is a number, not a boolean"),
        ('"yes"', '`"yes"` is a string, not a boolean'),
        ("not resource.flag", "`resource.flag` is a string, not a boolean"),
        ("not resource.nope", "`resource.nope` is missing"),
        ("not (resource.nope == 1)", "`resource.nope` is missing"),
        ("resource.nope == 1 and true", "`resource.nope` is missing"),
        ("resource.nope == 1 or false", "`resource.nope` is missing"),
        ("resource.flag and true", "`resource.flag` is a string, not a boolean"),
        ("resource.tags or false", "`resource.tags` is a list, not a boolean"),
        ("resource.labels", "`resource.labels` is an object, not a boolean"),
        ("resource.owner", "`resource.owner` is a null, not a boolean"),
    ],
)
def test_logic_errors(expr: str, message: str) -> None:
    result = evaluate_rule(_rule(expr), _request())  # as a condition: must be a boolean
    assert result.outcome is Outcome.ERROR
    assert result.message == message


def test_a_bare_non_boolean_condition_makes_the_rule_error() -> None:
    rule = _rule("1")
    result = evaluate_rule(rule, _request())
    assert result.outcome is Outcome.ERROR
    assert result.message == "`1` is a number, not a boolean"


def test_conditions_combine_with_and_including_errors() -> None:
    request = _request()
    assert evaluate_rule(_rule("resource.nope == 1\nfalse"), request).outcome is Outcome.NO_MATCH
    assert evaluate_rule(_rule("false\nresource.nope == 1"), request).outcome is Outcome.NO_MATCH
    both = evaluate_rule(_rule("resource.b == 1\nresource.a == 1"), request)
    assert both.outcome is Outcome.ERROR
    assert both.message == "`resource.a` is missing; `resource.b` is missing"


# ----------------------------------------------------------------------------- properties

# Leaves of known truth: T, F, an error (missing path), a non-boolean value.
_LEAVES: dict[str, ast.Expr] = {
    "T": ast.BoolLit(True),
    "F": ast.BoolLit(False),
    "E": ast.Compare("==", _path("resource", "nope"), ast.NumberLit(Decimal(1))),
    "N": _path("resource", "flag"),
}


def _model(tree: Any) -> str:
    """The tiny model of §5: three truth values, a non-boolean operand counts as an error."""
    if isinstance(tree, str):
        return "E" if tree == "N" else tree
    op, *args = tree
    values = [_model(arg) for arg in args]
    if op == "not":
        return {"T": "F", "F": "T", "E": "E"}[values[0]]
    if op == "and":
        return "F" if "F" in values else ("E" if "E" in values else "T")
    return "T" if "T" in values else ("E" if "E" in values else "F")


def _build(tree: Any) -> ast.Expr:
    if isinstance(tree, str):
        return _LEAVES[tree]
    op, *args = tree
    if op == "not":
        return ast.Not(_build(args[0]))
    operands = tuple(_build(arg) for arg in args)
    return ast.And(operands) if op == "and" else ast.Or(operands)


_trees = st.recursive(
    st.sampled_from(list(_LEAVES)),
    lambda inner: (
        st.tuples(st.just("not"), inner)
        | st.tuples(st.sampled_from(["and", "or"]), inner, inner)
        | st.tuples(st.sampled_from(["and", "or"]), inner, inner, inner)
    ),
    max_leaves=10,
)


def _truth(result: Result) -> str:
    if isinstance(result, EvalError):
        return "E"
    assert isinstance(result, bool)
    return "T" if result else "F"


@settings(max_examples=300)
@given(_trees)
def test_three_valued_logic_matches_the_model(tree: Any) -> None:
    expr = _build(tree)
    if isinstance(tree, str) and tree == "N":
        return  # a bare non-boolean is a value, not a truth value; a rule makes it an error
    assert _truth(evaluate_expr(expr, _request(), "UTC")) == _model(tree)


@settings(max_examples=200)
@given(_trees)
def test_rule_outcome_matches_the_model(tree: Any) -> None:
    rule = ast.Rule("allow", "r", (_build(tree),))
    outcome = evaluate_rule(rule, _request()).outcome
    expected = {"T": Outcome.MATCH, "F": Outcome.NO_MATCH, "E": Outcome.ERROR}[_model(tree)]
    assert outcome is expected


@settings(max_examples=200)
@given(st.sampled_from(["and", "or"]), st.lists(_trees, min_size=2, max_size=4))
def test_and_or_are_commutative_including_errors(op: str, trees: list[Any]) -> None:
    request = _request()
    operands = [_build(tree) for tree in trees]
    results = set()
    for order in itertools.permutations(operands):
        node = ast.And(tuple(order)) if op == "and" else ast.Or(tuple(order))
        results.add(evaluate_expr(node, request, "UTC"))
    assert len(results) == 1  # same value, and for errors the very same messages


@settings(max_examples=100)
@given(st.lists(_trees, min_size=0, max_size=4))
def test_rule_conditions_are_order_independent(trees: list[Any]) -> None:
    request = _request()
    conditions = [_build(tree) for tree in trees]
    outcomes = {
        evaluate_rule(ast.Rule("deny", "r", tuple(order)), request)
        for order in itertools.permutations(conditions)
    }
    assert len(outcomes) == 1


_values_strategy = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.5, 1.0, "a", "b", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner, max_size=2)
    ),
    max_leaves=6,
)


@settings(max_examples=200)
@given(_values_strategy, _values_strategy)
def test_eq_and_ne_never_error_and_are_negations(a: object, b: object) -> None:
    data = {**REQUEST, "resource": {"a": a, "b": b}}
    eq = _eval("resource.a == resource.b", data)
    ne = _eval("resource.a != resource.b", data)
    assert isinstance(eq, bool)
    assert ne is (not eq)
    assert _eval("resource.b == resource.a", data) is eq


@settings(max_examples=200)
@given(_values_strategy, _values_strategy)
def test_in_and_not_in_are_negations_or_both_error(a: object, b: object) -> None:
    data = {**REQUEST, "resource": {"a": a, "b": b}}
    positive = _eval("resource.a in resource.b", data)
    negative = _eval("resource.a not in resource.b", data)
    if isinstance(positive, EvalError):
        assert negative == positive
        assert not isinstance(b, list | dict)
    else:
        assert negative is (not positive)
        assert isinstance(b, list | dict)
