"""Hypothesis strategies for policy ASTs and requests, shared by the property tests.

Rules read a small vocabulary of attributes so that generated requests hit them often, with
values of every JSON kind so that errors (missing attributes, mistyped operands) are common too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from aegis.engine import InvalidRequestError, PolicyEngine
from aegis.lang import ast

ACTIONS = ["read", "write", "restart_pod", "scale"]
KEYS = ["kind", "namespace", "replicas", "public", "labels", "owner", "tags"]
STRINGS = ["", "prod", "staging", "a*b", "v1*", "x", "Zed", "é", "pod"]

# -- literals and paths ---------------------------------------------------------------------
strings = st.sampled_from(STRINGS) | st.text(max_size=6)
numbers = st.one_of(
    st.integers(min_value=-5, max_value=20).map(Decimal),
    st.decimals(min_value=-5, max_value=20, places=2, allow_nan=False, allow_infinity=False),
)
string_lits = strings.map(ast.StringLit)
number_lits = numbers.map(ast.NumberLit)
bool_lits = st.booleans().map(ast.BoolLit)
literals = st.one_of(string_lits, number_lits, bool_lits)

paths = st.one_of(
    st.just(ast.Path("action")),
    st.tuples(
        st.sampled_from(["principal", "resource", "context"]),
        st.lists(st.sampled_from([*KEYS, "id", "roles", "app.kubernetes.io/name"]), max_size=2),
    ).map(lambda t: ast.Path(t[0], tuple(t[1]))),
    st.sampled_from(
        ["year", "month", "day", "hour", "minute", "weekday", "date", "clock", "epoch", "second"]
    ).map(lambda k: ast.Path("time", (k,))),
)
operands = st.one_of(literals, paths)


def _containers() -> st.SearchStrategy[ast.ListLit | ast.RangeLit | ast.Path]:
    lists = st.lists(literals, max_size=4).map(lambda items: ast.ListLit(tuple(items)))
    ranges = st.tuples(number_lits, number_lits).map(lambda t: ast.RangeLit(t[0], t[1]))
    return st.one_of(lists, ranges, paths)


def _leaf() -> st.SearchStrategy[ast.Expr]:
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    compare = st.builds(ast.Compare, ops, operands, operands)
    membership = st.builds(ast.Membership, operands, _containers(), st.booleans())
    like = st.builds(ast.Like, operands, string_lits)
    has = st.builds(ast.Has, paths)
    return st.one_of(compare, membership, like, has, operands)


def _extend(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    chains = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(
        children.map(ast.Not),
        chains.map(ast.And),
        chains.map(ast.Or),
        st.builds(ast.Compare, st.sampled_from(["==", "!="]), children, operands),
    )


exprs = st.recursive(_leaf(), _extend, max_leaves=6)

rule_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8
)
annotations = st.lists(
    st.builds(ast.Annotation, st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), strings),
    max_size=2,
).map(tuple)


def rules(name: st.SearchStrategy[str] = rule_names) -> st.SearchStrategy[ast.Rule]:
    """One rule with up to four conditions, in UTC."""
    return st.builds(
        ast.Rule,
        st.sampled_from(["allow", "deny"]),
        name,
        st.lists(exprs, max_size=4).map(tuple),
        st.none() | strings,
        annotations,
    )


def rule_sets(max_size: int = 6) -> st.SearchStrategy[list[ast.Rule]]:
    """Rules with unique names."""
    return st.lists(rules(), max_size=max_size, unique_by=lambda r: r.name)


# -- requests --------------------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=20),
    st.sampled_from([0.5, 1.0, 2.5, 19.5]),
    st.sampled_from(STRINGS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*KEYS, "id", "roles"]), inner, max_size=3)
    ),
    max_leaves=6,
)
attributes = st.dictionaries(st.sampled_from([*KEYS, "id", "roles"]), json_values, max_size=5)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request (spec §4) over the generated vocabulary."""
    context = draw(attributes)
    context.pop("time", None)
    if draw(st.booleans()):
        context["time"] = draw(
            st.integers(min_value=1_700_000_000, max_value=1_900_000_000)
            | st.sampled_from(["2026-11-26T10:15:00Z", "2026-03-29T01:30:00+02:00"])
        )
    request: dict[str, Any] = {
        "principal": draw(attributes),
        "action": draw(st.sampled_from(ACTIONS)),
        "resource": draw(attributes),
    }
    if context or draw(st.booleans()):
        request["context"] = context
    return request


# -- rules with pins, for the index ----------------------------------------------------------
def _pin() -> st.SearchStrategy[ast.Expr]:
    action_eq = st.sampled_from(ACTIONS).map(
        lambda a: ast.Compare("==", ast.Path("action"), ast.StringLit(a))
    )
    action_in = st.lists(st.sampled_from(ACTIONS), max_size=3).map(
        lambda xs: ast.Membership(ast.Path("action"), ast.ListLit(tuple(map(ast.StringLit, xs))))
    )
    kind_eq = st.tuples(st.sampled_from(["resource", "principal"]), literals).map(
        lambda t: ast.Compare("==", t[1], ast.Path(t[0], ("kind",)))
    )
    role_in = literals.map(lambda lit: ast.Membership(lit, ast.Path("principal", ("roles",))))
    label_in = string_lits.map(lambda lit: ast.Membership(lit, ast.Path("resource", ("labels",))))
    hours = st.tuples(st.integers(0, 23), st.integers(0, 23), st.sampled_from(["time", "resource"]))
    hour_in = hours.map(
        lambda t: ast.Membership(
            ast.Path(t[2], ("hour" if t[2] == "time" else "replicas",)),
            ast.RangeLit(ast.NumberLit(Decimal(t[0])), ast.NumberLit(Decimal(t[1]))),
        )
    )
    return st.one_of(action_eq, action_in, kind_eq, role_in, label_in, hour_in)


pinned_rules = st.builds(
    ast.Rule,
    st.sampled_from(["allow", "deny"]),
    st.just("t"),
    st.tuples(
        st.lists(_pin(), min_size=0, max_size=3),
        st.lists(exprs, max_size=1),
    ).map(lambda t: tuple(t[0] + t[1])),
    st.none() | strings,
    st.just(()),
    st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
)


@st.composite
def large_rule_sets(draw: st.DrawFn, max_rules: int = 1000) -> list[ast.Rule]:
    """Up to ``max_rules`` rules, replicated from a few dozen generated templates."""
    templates = draw(st.lists(pinned_rules | rules(), min_size=1, max_size=30))
    size = draw(st.integers(0, max_rules))
    return [
        ast.Rule(
            t.effect,
            f"{i:04d}-{t.effect}",
            t.conditions,
            t.reason,
            t.annotations,
            t.timezone,
        )
        for i in range(size)
        for t in [templates[i % len(templates)]]
    ]


@st.composite
def index_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests whose attributes hit the pins above often (and miss them, and mistype them)."""
    request = draw(requests())
    if draw(st.booleans()):
        request["principal"]["roles"] = draw(
            st.lists(st.sampled_from(STRINGS) | st.integers(0, 3), max_size=4) | json_values
        )
    if draw(st.booleans()):
        request["resource"]["labels"] = draw(
            st.dictionaries(st.sampled_from(STRINGS), json_scalars, max_size=3) | json_values
        )
    if draw(st.booleans()):
        request["resource"]["replicas"] = draw(
            st.integers(-1, 25) | st.sampled_from([2.5, 3.0, True, "3", None])
        )
    return request


def outcome(engine: PolicyEngine, request: Any) -> Any:
    """``engine``'s decision on ``request``, or ``("invalid", message)``: what differential
    properties compare, invalid requests included."""
    try:
        return engine.evaluate(request)
    except InvalidRequestError as exc:
        return ("invalid", str(exc))
