"""Validation soundness (spec §7, §8): a set that validates never errors on a conforming request.

Hypothesis draws a schema, rules that read it, and requests that conform to it. The rules are
mostly well-typed and guarded, with a share of every hazard §7 names (undeclared keys, keys
into scalars, unknown actions, mismatched kinds, non-boolean conditions, optional reads left
unguarded or "guarded" under ``or`` / ``not`` / a shorter prefix), so that the validator has
something to catch. Sets with diagnostics are filtered out (``assume``; Hypothesis's
``filter_too_much`` health check fails the test if too few validate, so the property cannot
pass vacuously). Each kept set is loaded through the public API,
``PolicyEngine.from_texts(..., schema=schema)`` (which validates it again and checks each
request's conformance), and every decision must carry no error.

Two focused properties probe the two subtle checks densely: guards (check 4) over one small
schema with every request shape from "all absent" to "all present", and operators (check 3)
over operands of every kind. Mutation check (by hand, 2026-11-26): with the guard test
disabled in the validator, with `has` inside `or` accepted as a guard, with ordering or
condition kinds unchecked, or with unknown keys unreported, one of these properties fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar, cast

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from aegis.engine import PolicyEngine
from aegis.lang import ast, load_texts
from aegis.lang.ast import CompareOp
from aegis.lang.formatter import format_rule
from aegis.lang.schema import (
    BOOL,
    DECIMAL,
    INT,
    STRING,
    TIME,
    Attribute,
    ListType,
    MapType,
    ObjectType,
    PrimitiveType,
    Schema,
    SchemaType,
    parse_schema,
)
from aegis.lang.validator import validate

T = TypeVar("T")

NAMES = ["a", "b", "id", "in", "x_1", "app.io/name"]
"""Attribute names: a keyword and a key that needs brackets among them."""
MAP_KEYS = ["a", "k", "app.io/name"]
"""Keys of map values in requests, and of map reads in rules (so reads sometimes hit)."""
ACTIONS = ["read", "write", "restart_pod"]
STRINGS = ["", "a", "prod", "x*", "é"]

# --- schemas --------------------------------------------------------------------------------

primitives = st.sampled_from([STRING, INT, DECIMAL, BOOL])


def _objects(inner: st.SearchStrategy[SchemaType]) -> st.SearchStrategy[ObjectType]:
    return st.lists(
        st.tuples(st.sampled_from(NAMES), inner, st.booleans()),
        max_size=3,
        unique_by=lambda t: t[0],
    ).map(lambda items: ObjectType(tuple(Attribute(n, t, o) for n, t, o in items)))


types: st.SearchStrategy[SchemaType] = st.recursive(
    primitives,
    lambda inner: st.one_of(
        inner.map(ListType), inner.map(MapType), _objects(inner)
    ),
    max_leaves=5,
)
roots = st.one_of(
    _objects(types),
    _objects(types),
    types.map(MapType),
    st.just(ObjectType()),
)
schemas = st.builds(
    Schema,
    principal=roots,
    resource=roots,
    context=roots,
    actions=st.one_of(st.none(), st.lists(st.sampled_from(ACTIONS), min_size=1, unique=True)
                      .map(tuple)),
)


def _render_type(t: SchemaType) -> str:
    match t:
        case PrimitiveType(name=name):
            return name
        case ListType(element=element):
            return f"[{_render_type(element)}]"
        case MapType(value=value):
            return f"{{string: {_render_type(value)}}}"
        case ObjectType(attributes=attributes):
            fields = ", ".join(
                f"{json.dumps(a.name + ('?' if a.optional else ''))}: {_render_type(a.type)}"
                for a in attributes
            )
            return f"{{{fields}}}"
    raise AssertionError(t)


def render_schema(schema: Schema) -> str:
    """The schema as YAML (flow style, keys quoted so that `?` stays in the key)."""
    lines = [
        f"{root}: {_render_type(getattr(schema, root))}"
        for root in ("principal", "resource", "context")
    ]
    if schema.actions is not None:
        lines.append(f"action: {json.dumps(list(schema.actions))}")
    return "\n".join(lines) + "\n"


# --- conforming requests ---------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(STRINGS)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(MAP_KEYS), inner,
                                                               max_size=2),
    max_leaves=4,
)


@cache
def values(t: SchemaType) -> st.SearchStrategy[Any]:
    """Values of type ``t``: what a conforming request may hold there."""
    match t:
        case PrimitiveType(name="string"):
            return st.sampled_from(STRINGS) | st.text(max_size=3)
        case PrimitiveType(name="int"):
            return st.integers(-5, 5) | st.integers()
        case PrimitiveType(name="decimal"):
            return st.one_of(
                st.integers(-5, 5),
                st.floats(allow_nan=False, allow_infinity=False),
                st.decimals(allow_nan=False, allow_infinity=False, places=2),
            )
        case PrimitiveType(name="bool"):
            return st.booleans()
        case ListType(element=element):
            return st.lists(values(element), max_size=3)
        case MapType(value=value):
            return st.dictionaries(st.sampled_from(MAP_KEYS), values(value), max_size=3)
        case ObjectType(attributes=attributes):
            declared = {a.name for a in attributes}
            extras = st.dictionaries(
                st.sampled_from([n for n in ["extra", "zz", "a", "id"] if n not in declared]),
                json_values,
                max_size=2,
            )
            return st.tuples(
                st.fixed_dictionaries(
                    {a.name: values(a.type) for a in attributes if not a.optional},
                    optional={a.name: values(a.type) for a in attributes if a.optional},
                ),
                extras,
            ).map(lambda pair: {**pair[1], **pair[0]})
    raise AssertionError(t)


@cache
def sparse_values(t: SchemaType) -> st.SearchStrategy[Any]:
    """Values of type ``t`` with every optional attribute absent and every map and list empty.

    Absent optional data is what an unguarded read trips on, so each scenario has one such
    request besides the freely drawn ones.
    """
    match t:
        case ListType():
            return st.just([])
        case MapType():
            return st.just({})
        case ObjectType(attributes=attributes):
            return st.fixed_dictionaries(
                {a.name: sparse_values(a.type) for a in attributes if not a.optional}
            )
    return values(t)


@st.composite
def sparse_requests(draw: st.DrawFn, schema: Schema) -> dict[str, Any]:
    return {
        "principal": draw(sparse_values(schema.principal)),
        "resource": draw(sparse_values(schema.resource)),
        "action": schema.actions[0] if schema.actions else "read",
        "context": draw(sparse_values(schema.context)),
    }


@st.composite
def requests(draw: st.DrawFn, schema: Schema) -> dict[str, Any]:
    request: dict[str, Any] = {
        "principal": draw(values(schema.principal)),
        "resource": draw(values(schema.resource)),
        "action": draw(
            st.sampled_from(schema.actions) if schema.actions else st.sampled_from(ACTIONS)
        ),
    }
    context = draw(values(schema.context))
    if context or draw(st.booleans()):
        request["context"] = context
    return request


# --- rules over the schema ---------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Ctx:
    """What rule generation needs; a short repr keeps Hypothesis's messages readable."""

    schema: Schema
    paths: tuple[Known, ...]
    typed: tuple[Known, ...] = field(init=False)
    optional_typed: tuple[Known, ...] = field(init=False)
    by_kind: dict[str, tuple[ast.Path, ...]] = field(init=False)

    def __post_init__(self) -> None:
        typed = tuple(k for k in self.paths if k.type is not None)
        object.__setattr__(self, "typed", typed)
        object.__setattr__(self, "optional_typed", tuple(k for k in typed if k.optional))
        by_kind: dict[str, tuple[ast.Path, ...]] = {}
        for known in typed:
            assert known.type is not None
            kind = _kind(known.type)
            by_kind[kind] = (*by_kind.get(kind, ()), known.path)
        object.__setattr__(self, "by_kind", by_kind)

    def optional(self, path: ast.Path) -> bool:
        """Whether reading ``path`` goes through an optional attribute or a map entry."""
        return any(k.path == path and k.optional for k in self.paths)

    def __repr__(self) -> str:
        return "Ctx(...)"


@dataclass(frozen=True)
class Known:
    """A path the generator can read, with its type (``None``: not declared) and optional steps."""

    path: ast.Path
    type: SchemaType | None
    optional: tuple[int, ...]


def known_paths(schema: Schema) -> list[Known]:
    """Every declared path (map entries through MAP_KEYS), plus a few that are not declared."""
    out: list[Known] = []

    def walk(path: ast.Path, t: SchemaType, optional: tuple[int, ...], depth: int) -> None:
        out.append(Known(path, t, optional))
        if depth > 3:
            return
        length = len(path.keys) + 1
        match t:
            case ObjectType(attributes=attributes):
                for a in attributes:
                    walk(ast.Path(path.root, (*path.keys, a.name)), a.type,
                         optional + ((length,) if a.optional else ()), depth + 1)
                out.append(Known(ast.Path(path.root, (*path.keys, "undeclared")), None, optional))
            case MapType(value=value):
                for key in MAP_KEYS[:2]:
                    walk(ast.Path(path.root, (*path.keys, key)), value, (*optional, length),
                         depth + 1)
            case _:
                out.append(Known(ast.Path(path.root, (*path.keys, "a")), None, optional))

    for root in ("principal", "resource", "context", "time"):
        walk(ast.Path(root), schema.root_type(root), (), 0)
    out.append(Known(ast.Path("action"), STRING, ()))
    return out


def _kind(t: SchemaType) -> str:
    match t:
        case PrimitiveType(name="int") | PrimitiveType(name="decimal"):
            return "number"
        case PrimitiveType(name=name):
            return name
        case ListType():
            return "list"
    return "object"


Lit = ast.StringLit | ast.NumberLit | ast.BoolLit
string_lits: st.SearchStrategy[Lit] = st.sampled_from(STRINGS).map(ast.StringLit)
number_lits: st.SearchStrategy[ast.NumberLit] = st.one_of(
    st.integers(-5, 5).map(lambda i: ast.NumberLit(Decimal(i))),
    st.sampled_from(["0.5", "-1.25", "3.0"]).map(lambda s: ast.NumberLit(Decimal(s))),
)
bool_lits: st.SearchStrategy[Lit] = st.booleans().map(ast.BoolLit)
any_lits: st.SearchStrategy[Lit] = st.one_of(string_lits, number_lits, bool_lits)
key_lits = st.sampled_from([*STRINGS, *MAP_KEYS]).map(ast.StringLit)


def literals_of(kind: str) -> st.SearchStrategy[Lit]:
    by_kind: dict[str, st.SearchStrategy[Lit]] = {
        "string": string_lits, "number": number_lits, "bool": bool_lits
    }
    return by_kind.get(kind, any_lits)


def _pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    """One of ``items``: cheaper than building a ``sampled_from`` for every draw."""
    if len(items) == 1:
        return items[0]
    index = _INDEX[len(items)] if len(items) in _INDEX else st.integers(0, len(items) - 1)
    return items[draw(index)]


_INDEX = {n: st.integers(0, n - 1) for n in range(1, 64)}
_ORDERINGS: tuple[CompareOp, ...] = ("<", "<=", ">", ">=")
_PATTERNS = ("*", "a*", "x\\*", "")


@st.composite
def atoms(draw: st.DrawFn, ctx: Ctx) -> ast.Expr:
    """A leaf condition: well-typed most of the time, any hazard of §7 some of the time."""
    wild = draw(_INDEX[8]) == 0
    if wild and draw(_INDEX[4]) == 0:
        known = _pick(draw, ctx.paths)
    elif ctx.optional_typed and draw(_INDEX[2]) == 0:
        known = _pick(draw, ctx.optional_typed)  # the reads check 4 is about
    else:
        known = _pick(draw, ctx.typed)
    path, t = known.path, known.type
    if wild or t is None:
        # anything: a random operator on a (mostly declared) path and any literal, unguarded
        literal = draw(any_lits)
        zero, three = ast.NumberLit(Decimal(0)), ast.NumberLit(Decimal(3))
        builders: list[Callable[[], ast.Expr]] = [
            lambda: path,
            lambda: ast.Compare(_pick(draw, ("==", "<", ">=")), path, literal),
            lambda: ast.Compare(_pick(draw, ("<", ">=")), literal, path),
            lambda: ast.Membership(path, ast.ListLit((literal,))),
            lambda: ast.Membership(literal, path),
            lambda: ast.Membership(path, ast.RangeLit(zero, three)),
            lambda: ast.Like(path, ast.StringLit("a*")),
            lambda: ast.Has(path),
            lambda: literal,
        ]
        return _pick(draw, builders)()
    kind = _kind(t)
    same = _pick(draw, ctx.by_kind[kind])
    builders = [
        lambda: ast.Has(path),
        lambda: ast.Compare(_pick(draw, ("==", "!=")), path, same),
    ]
    if kind in ("number", "string", "bool"):
        builders.append(
            lambda: ast.Compare(_pick(draw, ("==", "!=")), path, draw(literals_of(kind)))
        )
    if kind == "bool":
        builders += [lambda: path, lambda: ast.Not(path)]
    if kind in ("number", "string"):
        builders += [
            lambda: ast.Compare(_pick(draw, _ORDERINGS), path, draw(literals_of(kind))),
            lambda: ast.Compare(_pick(draw, _ORDERINGS), same, path),
            lambda: ast.Membership(
                path,
                ast.ListLit(tuple(draw(st.lists(literals_of(kind), max_size=3)))),
                negated=draw(st.booleans()),
            ),
        ]
    if kind == "number":
        builders.append(
            lambda: ast.Membership(path, ast.RangeLit(draw(number_lits), draw(number_lits)))
        )
    if kind == "string":
        builders.append(lambda: ast.Like(path, ast.StringLit(_pick(draw, _PATTERNS))))
    if isinstance(t, ListType):
        element = t.element
        builders.append(lambda: ast.Membership(draw(literals_of(_kind(element))), path,
                                               negated=draw(st.booleans())))
    if isinstance(t, MapType | ObjectType):
        builders.append(lambda: ast.Membership(draw(key_lits), path))
    actions = ctx.schema.actions
    if path.root == "action" and actions:
        builders += [
            lambda: ast.Compare("==", path, ast.StringLit(_pick(draw, actions))),
            lambda: ast.Membership(path, ast.ListLit((ast.StringLit(_pick(draw, actions)),))),
        ]
    atom = _pick(draw, builders)()
    # guard the optional reads: usually right, sometimes in a way §7 does not accept
    if isinstance(atom, ast.Has):
        return atom
    guards = tuple(
        ast.Has(p) for p in ast.walk(atom) if isinstance(p, ast.Path) and ctx.optional(p)
    )
    if not guards:
        return atom
    style = _pick(draw, ("and", "and", "and", "and", "and", "none", "or", "not", "prefix"))
    if style == "and":
        return ast.And((*guards, atom))
    if style == "or":
        return ast.Or((*guards, atom))
    if style == "not":
        return ast.And((*(ast.Not(g) for g in guards), atom))
    if style == "prefix":
        return ast.And((*(ast.Has(ast.Path(g.path.root, g.path.keys[:1])) for g in guards), atom))
    return atom


@st.composite
def conditions(draw: st.DrawFn, ctx: Ctx, depth: int = 0) -> ast.Expr:
    """An atom, or not/and/or over conditions, at most three levels deep."""
    shape = _pick(draw, ("atom", "atom", "atom", "not", "and", "or")) if depth < 3 else "atom"
    if shape == "atom":
        return draw(atoms(ctx))
    if shape == "not":
        return ast.Not(draw(conditions(ctx, depth + 1)))
    operands = tuple(draw(st.lists(conditions(ctx, depth + 1), min_size=2, max_size=3)))
    return ast.And(operands) if shape == "and" else ast.Or(operands)


@st.composite
def policy_texts(draw: st.DrawFn, schema: Schema) -> str:
    ctx = Ctx(schema, tuple(known_paths(schema)))
    rules = []
    for index in range(draw(st.integers(1, 3))):
        rule = ast.Rule(
            effect=draw(st.sampled_from(["allow", "deny"])),
            name=f"r{index}",
            conditions=tuple(draw(st.lists(conditions(ctx), max_size=2))),
        )
        rules.append(format_rule(rule))
    zone = draw(st.sampled_from(["", 'timezone "Asia/Kolkata"\n\n']))
    return zone + "\n\n".join(rules) + "\n"


# --- the property ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One drawn case; its repr is the schema YAML, the policy text and the requests."""

    schema: Schema
    text: str
    requests: tuple[dict[str, Any], ...]
    now: datetime

    def __repr__(self) -> str:
        return (
            f"\n--- schema.yaml\n{render_schema(self.schema)}--- p.aegis\n{self.text}"
            f"--- requests (now={self.now.isoformat()})\n"
            + "\n".join(repr(r) for r in self.requests)
        )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    schema = draw(schemas)
    text = draw(policy_texts(schema))
    drawn = (draw(sparse_requests(schema)), *draw(st.lists(requests(schema), min_size=1,
                                                            max_size=3)))
    now = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                            timezones=st.just(UTC)))
    return Scenario(schema, text, drawn, now)


def _check_soundness(schema: Schema, text: str, requests: Sequence[dict[str, Any]],
                     now: datetime) -> None:
    """The property itself: when the set validates, no conforming request yields an error."""
    diagnostics = validate(load_texts({"p.aegis": text}), schema)
    event("validates" if not diagnostics else f"rejected: {diagnostics[0].code}")
    assume(not diagnostics)
    # the public path: the engine validates the set again and checks each request conforms
    engine = PolicyEngine.from_texts({"p.aegis": text}, schema=schema)
    for request in requests:
        decision = engine.evaluate(request, now=now)
        assert decision.errors == ()


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_a_set_that_validates_never_errors_on_a_conforming_request(scenario: Scenario) -> None:
    schema = scenario.schema
    assert parse_schema(render_schema(schema)) == schema  # the YAML form loads back
    _check_soundness(schema, scenario.text, scenario.requests, scenario.now)


# --- focused: guards (check 4) -----------------------------------------------------------------
# One small schema, reads through every kind of optional step, `has` of every prefix, and
# every request shape from "all absent" to "all present": the guard rule is exercised under
# not/and/or nesting far more densely than the broad property can.

GUARD_SCHEMA = parse_schema(
    "principal:\n  a?: int\n  o?:\n    b?: int\n    c: int\n"
    "resource:\n  m: {string: int}\n"
)
_reads = [
    ast.Path("principal", ("a",)),
    ast.Path("principal", ("o", "b")),
    ast.Path("principal", ("o", "c")),
    ast.Path("resource", ("m", "k")),
    ast.Path("principal", ("z",)),  # undeclared
    ast.Path("principal", ("a", "x")),  # a key into an int
]
_guards = [
    *_reads,
    ast.Path("principal", ("o",)),
    ast.Path("resource", ("m",)),
    ast.Path("resource", ("m", "j")),
]
guard_atoms = st.one_of(
    st.sampled_from(_guards).map(ast.Has),
    st.tuples(st.sampled_from(_reads), st.sampled_from(["==", ">"]), st.integers(1, 2)).map(
        lambda t: ast.Compare(cast(CompareOp, t[1]), t[0], ast.NumberLit(Decimal(t[2])))
    ),
    st.booleans().map(ast.BoolLit),
)
guard_exprs = st.recursive(
    guard_atoms,
    lambda inner: st.one_of(
        inner.map(ast.Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda ops: ast.And(tuple(ops))),
        st.lists(inner, min_size=2, max_size=3).map(lambda ops: ast.Or(tuple(ops))),
    ),
    max_leaves=6,
)
GUARD_REQUESTS = [
    {"principal": principal, "action": "read", "resource": {"m": m}}
    for principal in ({}, {"a": 1}, {"a": 2}, {"o": {"c": 1}}, {"a": 2, "o": {"b": 2, "c": 2}})
    for m in ({}, {"k": 2}, {"j": 1})
]
_NOW = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(
        st.tuples(st.sampled_from(["allow", "deny"]), st.lists(guard_exprs, max_size=3)),
        min_size=1,
        max_size=2,
    )
)
def test_guards_are_sound(rules: list[tuple[str, list[ast.Expr]]]) -> None:
    text = "\n".join(
        format_rule(ast.Rule(effect, f"r{i}", tuple(conditions)))  # type: ignore[arg-type]
        for i, (effect, conditions) in enumerate(rules)
    )
    _check_soundness(GUARD_SCHEMA, text, GUARD_REQUESTS, _NOW)


# --- focused: operators and kinds (check 3) -----------------------------------------------------
# Every operator over operands of every kind, all attributes required: only check 3 (and the
# action list) can reject a set here.

TYPE_SCHEMA = parse_schema(
    "principal:\n  s: string\n  i: int\n  d: decimal\n  b: bool\n  l: [int]\n"
    "  ls: [string]\n  m: {string: string}\n  o: {x: int}\n"
    "action: [read, write]\n"
)
_BY_KIND: dict[str, list[ast.Expr]] = {
    "string": [ast.Path("principal", ("s",)), ast.Path("time", ("weekday",)),
               ast.Path("action")],
    "number": [ast.Path("principal", ("i",)), ast.Path("principal", ("d",)),
               ast.Path("principal", ("o", "x")), ast.Path("time", ("hour",))],
    "bool": [ast.Path("principal", ("b",)),
             ast.Compare("==", ast.Path("principal", ("i",)), ast.NumberLit(Decimal(1)))],
    "list": [ast.Path("principal", ("l",)), ast.Path("principal", ("ls",))],
    "object": [ast.Path("principal", ("m",)), ast.Path("principal", ("o",)), ast.Path("time")],
}
_LITERALS: dict[str, st.SearchStrategy[Lit]] = {
    "string": st.sampled_from([*STRINGS, "read"]).map(ast.StringLit),
    "number": number_lits,
    "bool": bool_lits,
}
_UNKNOWN = [ast.Path("principal", ("s", "x")), ast.Path("action", ("x",)),
            ast.Path("time", ("second",)), ast.Path("principal", ("nope",))]
_ANY_OPERAND = st.one_of(
    st.sampled_from([e for es in _BY_KIND.values() for e in es]), any_lits,
    st.sampled_from(_UNKNOWN),
)


def operands(kind: str) -> st.SearchStrategy[ast.Expr]:
    """An operand of ``kind`` — or, one time in eight, of any kind (a likely type error)."""
    typed: st.SearchStrategy[ast.Expr] = st.sampled_from(_BY_KIND[kind])
    if kind in _LITERALS:
        typed = st.one_of(typed, _LITERALS[kind])
    return st.integers(0, 7).flatmap(lambda n: _ANY_OPERAND if n == 0 else typed)


@st.composite
def type_atoms(draw: st.DrawFn) -> ast.Expr:
    form = draw(st.sampled_from(["bare", "eq", "order", "in-list", "in-range", "in-path",
                                 "like", "not"]))
    if form == "bare":
        return draw(operands("bool"))
    if form == "not":
        return ast.Not(draw(operands("bool")))
    if form == "eq":
        kind = draw(st.sampled_from(list(_BY_KIND)))
        return ast.Compare(draw(st.sampled_from(["==", "!="])), draw(operands(kind)),
                           draw(operands(kind)))
    if form == "order":
        kind = draw(st.sampled_from(["number", "string"]))
        return ast.Compare(draw(st.sampled_from(["<", "<=", ">", ">="])), draw(operands(kind)),
                           draw(operands(kind)))
    if form == "in-list":
        kind = draw(st.sampled_from(["number", "string", "bool"]))
        items = draw(st.lists(_LITERALS[kind], max_size=3))
        return ast.Membership(draw(operands(kind)), ast.ListLit(tuple(items)),
                              negated=draw(st.booleans()))
    if form == "in-range":
        return ast.Membership(draw(operands("number")),
                              ast.RangeLit(draw(number_lits), draw(number_lits)))
    if form == "in-path":
        container = cast(ast.Path, draw(st.sampled_from([*_BY_KIND["list"], *_BY_KIND["object"]])))
        kind = ("number" if container == _BY_KIND["list"][0] else "string")
        return ast.Membership(draw(operands(kind)), container, negated=draw(st.booleans()))
    return ast.Like(draw(operands("string")), ast.StringLit(draw(st.sampled_from(_PATTERNS))))


type_exprs = st.recursive(
    type_atoms(),
    lambda inner: st.one_of(
        inner.map(ast.Not),
        st.lists(inner, min_size=2, max_size=2).map(lambda ops: ast.And(tuple(ops))),
        st.lists(inner, min_size=2, max_size=2).map(lambda ops: ast.Or(tuple(ops))),
    ),
    max_leaves=3,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    conditions=st.lists(type_exprs, min_size=1, max_size=2),
    effect=st.sampled_from(["allow", "deny"]),
    requests=st.lists(requests(TYPE_SCHEMA), min_size=1, max_size=3),
)
def test_operators_are_sound(
    conditions: list[ast.Expr], effect: str, requests: list[dict[str, Any]]
) -> None:
    text = format_rule(ast.Rule(effect, "r", tuple(conditions)))  # type: ignore[arg-type]
    _check_soundness(TYPE_SCHEMA, text, requests, _NOW)


def test_time_type_matches_the_engine() -> None:
    from aegis.engine import TIME_ATTRIBUTES

    assert TIME.names() == TIME_ATTRIBUTES
