"""The compiled evaluator: a policy set turned once into closures and an index.

Two ideas make a decision cheap whatever the size of the set:

* **Closures over raw values.** Each rule becomes one Python closure that reads the request as
  it came (dicts, lists, ints, floats), converting only what an operator needs; nothing is
  normalised up front. Spec §5's three values are ``True``, ``False`` and :data:`ERR`.
* **An index of candidate rules** (:mod:`aegis.engine._index`): a rule whose conjunct pins an
  attribute to literals (``action == "x"``, ``resource.namespace in [..]``, ``"sre" in
  principal.roles``, ``time.hour in 8..18``) can only match requests with those values, so a
  decision evaluates only the rules that survive every such constraint.

Errors are rare, and their messages must be exactly the reference interpreter's: when a rule's
closure yields :data:`ERR`, the rule is evaluated again by the reference interpreter
(:mod:`aegis.engine._reference`), which is also the oracle of the differential tests.

The compiler also knows which request attributes the set reads (:attr:`CompiledPolicySet.reads`),
for the cache key projection, and which ``time`` fields it reads per zone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, lru_cache, partial
from typing import Any, Final
from zoneinfo import ZoneInfo

from aegis.engine._combine import Outcome, RuleResult, combine
from aegis.engine._index import (
    MEMO_SIZE,
    Pending,
    RuleIndex,
    always,
    build_index,
    canonical_key,
    conjuncts,
    number_of,
    placed,
)
from aegis.engine._reference import evaluate_rule
from aegis.engine._values import MISSING, glob_match
from aegis.engine.decision import Decision
from aegis.engine.errors import EngineError
from aegis.engine.request import (
    Request,
    _check_now,
    as_document,
    parse_request,
    parse_time,
    time_view,
)
from aegis.lang import ast
from aegis.lang._gc import paused_gc
from aegis.lang.loader import PolicySet

__all__ = [
    "ERR",
    "CompiledPolicySet",
    "Ctx",
    "canonical_key",
    "compile_policy_set",
    "prepare_request",
]


class _Err:
    """The type of :data:`ERR`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ERR"


ERR: Final = _Err()
"""An evaluation error, without its message (the reference interpreter supplies that)."""

# A request as the closures see it: (principal, action, resource, context, time_of_zone).
# INVARIANT: slots 0, 2, 3 are mappings with string keys and slot 1 a string (spec §4).
Ctx = tuple[Any, ...]
Fn = Callable[[Ctx], Any]

_KEYS: Final = frozenset({"principal", "action", "resource", "context"})


# --------------------------------------------------------------------------- raw values


_number = number_of


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _is_list(value: Any) -> bool:
    return type(value) is list or type(value) is tuple


def _normal(value: Any) -> Any:
    """Raw → the reference's evaluation form, for the rare generic comparisons."""
    from aegis.engine._values import normalize

    return normalize(value)


def _equal(left: Any, right: Any) -> bool:
    """JSON equality of two raw values (§5)."""
    lk, rk = canonical_key(left), canonical_key(right)
    if lk is not None or rk is not None:
        return lk is not None and lk == rk
    if left is None or right is None:
        return left is None and right is None
    from aegis.engine._values import json_equal

    return json_equal(_normal(left), _normal(right))


# --------------------------------------------------------------------------- paths

_ROOT_INDEX: Final = {"principal": 0, "action": 1, "resource": 2, "context": 3}


def _path_reader(path: ast.Path, zone: str) -> Fn:
    keys = path.keys
    if path.root == "time":
        if not keys:
            return lambda ctx: time_view(ctx[4].instant, zone)
        if len(keys) > 1:
            return lambda ctx: MISSING  # time's attributes are scalars: nothing below them
        return _time_reader(keys[0], zone)
    slot = _ROOT_INDEX[path.root]
    if not keys:
        return lambda ctx: ctx[slot]
    if path.root == "action":
        return lambda ctx: MISSING  # a key into a string
    if len(keys) == 1:
        (k1,) = keys
        return lambda ctx: ctx[slot].get(k1, MISSING)
    if len(keys) == 2:
        k1, k2 = keys

        def read2(ctx: Ctx) -> Any:
            value = ctx[slot].get(k1, MISSING)
            if type(value) is dict or (value is not MISSING and isinstance(value, Mapping)):
                return value.get(k2, MISSING)
            return MISSING

        return read2

    def read(ctx: Ctx) -> Any:
        value: Any = ctx[slot]
        for key in keys:
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            else:
                return MISSING
        return value

    return read


class _Clock:
    """The request's instant and, once asked, its local time per zone (spec §4 `time`)."""

    __slots__ = ("_locals", "instant")

    def __init__(self, instant: datetime) -> None:
        self.instant = instant
        self._locals: dict[str, datetime] = {}

    def __call__(self, zone: str) -> datetime:
        local = self._locals.get(zone)
        if local is None:
            local = self.instant if zone == "UTC" else self.instant.astimezone(_zone(zone))
            self._locals[zone] = local
        return local

    def view(self, zone: str) -> Mapping[str, Any]:
        """The whole ``time`` object (for cache keys)."""
        return time_view(self.instant, zone)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch(instant: datetime) -> int:
    delta = instant - _EPOCH
    return delta.days * 86400 + delta.seconds  # floor: fractions dropped, as the reference


def _time_reader(name: str, zone: str) -> Fn:
    """``time.<name>`` seen in ``zone``: the fields of the reference's ``time_view``."""
    if name in ("year", "month", "day", "hour", "minute"):
        return lambda ctx: getattr(ctx[4](zone), name)
    if name == "weekday":
        return lambda ctx: _WEEKDAYS[ctx[4](zone).weekday()]
    if name == "date":
        return lambda ctx: _date(ctx[4](zone))
    if name == "clock":
        return lambda ctx: f"{ctx[4](zone).hour:02d}:{ctx[4](zone).minute:02d}"
    if name == "epoch":
        return lambda ctx: _epoch(ctx[4].instant)
    return lambda ctx: MISSING


def _date(local: datetime) -> str:
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}"


# --------------------------------------------------------------------------- expressions


def compile_value(expr: ast.Expr, zone: str) -> Fn:
    """A closure giving the raw value of ``expr``: a value, ``MISSING`` or :data:`ERR`."""
    match expr:
        case ast.StringLit() | ast.NumberLit() | ast.BoolLit():
            constant = expr.value
            return lambda ctx: constant
        case ast.Path():
            return _path_reader(expr, zone)
    return compile_truth(expr, zone)


def compile_truth(expr: ast.Expr, zone: str) -> Fn:
    """A closure giving ``True``, ``False`` or :data:`ERR` for a condition (§5)."""
    match expr:
        case ast.BoolLit(value=value):
            return lambda ctx: value
        case ast.StringLit() | ast.NumberLit():
            return lambda ctx: ERR  # a bare operand must be a boolean
        case ast.Path():
            read = _path_reader(expr, zone)

            def bare(ctx: Ctx) -> Any:
                value = read(ctx)
                return value if value is True or value is False else ERR

            return bare
        case ast.Compare():
            return _compile_compare(expr, zone)
        case ast.Membership():
            inner = _compile_membership(expr, zone)
            if not expr.negated:
                return inner

            def negated(ctx: Ctx) -> Any:
                result = inner(ctx)
                return result if result is ERR else not result

            return negated
        case ast.Like(subject=subject, pattern=pattern):
            return _compile_like(subject, pattern.value, zone)
        case ast.Has(path=path):
            read = _path_reader(path, zone)
            return lambda ctx: read(ctx) is not MISSING
        case ast.Not(operand=operand):
            inner = compile_truth(operand, zone)

            def negation(ctx: Ctx) -> Any:
                result = inner(ctx)
                return result if result is ERR else not result

            return negation
        case ast.And(operands=operands):
            return _conjunction([compile_truth(o, zone) for o in operands])
        case ast.Or(operands=operands):
            return _disjunction([compile_truth(o, zone) for o in operands])
    raise TypeError(f"not an expression: {expr!r}")  # pragma: no cover


def _conjunction(parts: list[Fn]) -> Fn:
    """§5 `and`: false if any is false; else error if any errors; else true."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts

        def and2(ctx: Ctx) -> Any:
            x = a(ctx)
            if x is False:
                return False
            y = b(ctx)
            if y is False:
                return False
            return True if x is True and y is True else ERR

        return and2
    items = tuple(parts)

    def and_n(ctx: Ctx) -> Any:
        failed = False
        for part in items:
            result = part(ctx)
            if result is False:
                return False
            if result is not True:
                failed = True
        return ERR if failed else True

    return and_n


def _disjunction(parts: list[Fn]) -> Fn:
    """§5 `or`: true if any is true; else error if any errors; else false."""
    items = tuple(parts)

    def or_n(ctx: Ctx) -> Any:
        failed = False
        for part in items:
            result = part(ctx)
            if result is True:
                return True
            if result is not False:
                failed = True
        return ERR if failed else False

    return or_n


def _operand(expr: ast.Expr, zone: str) -> Fn:
    """An operand closure; a missing path becomes :data:`ERR` (an operator needs a value)."""
    read = compile_value(expr, zone)
    if isinstance(expr, ast.StringLit | ast.NumberLit | ast.BoolLit):
        return read

    def value(ctx: Ctx) -> Any:
        result = read(ctx)
        return ERR if result is MISSING else result

    return value


def _compile_compare(expr: ast.Compare, zone: str) -> Fn:
    op, left, right = expr.op, expr.left, expr.right
    if op in ("==", "!=") and isinstance(right, ast.StringLit | ast.NumberLit | ast.BoolLit):
        literal_side, other = right, left
    elif op in ("==", "!=") and isinstance(left, ast.StringLit | ast.NumberLit | ast.BoolLit):
        literal_side, other = left, right
    else:
        literal_side = None
    if literal_side is not None:
        key = canonical_key(literal_side.value)
        want = op == "=="
        if isinstance(literal_side, ast.StringLit) and isinstance(other, ast.Path):
            return _compare_path_string(_path_reader(other, zone), literal_side.value, want)
        read = _operand(other, zone)

        def compare_literal(ctx: Ctx) -> Any:
            value = read(ctx)
            if value is ERR:
                return ERR
            return (canonical_key(value) == key) is want

        return compare_literal
    lhs, rhs = _operand(left, zone), _operand(right, zone)
    if op == "==":
        return lambda ctx: _both(lhs(ctx), rhs(ctx), _equal)
    if op == "!=":
        return lambda ctx: _both(lhs(ctx), rhs(ctx), lambda a, b: not _equal(a, b))
    test = _ORDER[op]

    def order(ctx: Ctx) -> Any:
        a, b = lhs(ctx), rhs(ctx)
        if a is ERR or b is ERR:
            return ERR
        if type(a) is str and type(b) is str:
            return test(a, b)
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            return test(x, y)
        if isinstance(a, str) and isinstance(b, str):
            return test(str(a), str(b))
        return ERR

    return order


def _compare_path_string(read: Fn, text: str, want: bool) -> Fn:
    """``path == "text"`` / ``!=``: the commonest condition, without a conversion."""

    def compare(ctx: Ctx) -> Any:
        value = read(ctx)
        if type(value) is str:
            return (value == text) is want
        if value is MISSING:
            return ERR
        return (canonical_key(value) == text) is want  # str subclasses; others never equal

    return compare


_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _both(a: Any, b: Any, test: Callable[[Any, Any], bool]) -> Any:
    if a is ERR or b is ERR:
        return ERR
    return test(a, b)


def _compile_membership(expr: ast.Membership, zone: str) -> Fn:
    """``item in container`` before any ``not`` (§5)."""
    special = _membership_fast(expr.item, expr.container, zone)
    if special is not None:
        return special
    return _membership_generic(expr.item, expr.container, zone)


def _membership_generic(
    item_expr: ast.Expr, container: ast.ListLit | ast.RangeLit | ast.Path, zone: str
) -> Fn:
    item = _operand(item_expr, zone)
    if isinstance(container, ast.ListLit):
        keys = frozenset(canonical_key(lit.value) for lit in container.items)

        def in_list(ctx: Ctx) -> Any:
            value = item(ctx)
            if value is ERR:
                return ERR
            key = canonical_key(value)
            return key is not None and key in keys

        return in_list
    if isinstance(container, ast.RangeLit):
        low, high = container.low.value, container.high.value

        def in_range(ctx: Ctx) -> Any:
            value = item(ctx)
            if value is ERR:
                return ERR
            number = _number(value)
            if number is None:
                return ERR
            return low <= number <= high

        return in_range
    collection = _operand(container, zone)

    def in_path(ctx: Ctx) -> Any:
        value, found = item(ctx), collection(ctx)
        if value is ERR or found is ERR:
            return ERR
        if _is_list(found):
            key = canonical_key(value)
            if key is not None:
                return any(canonical_key(element) == key for element in found)
            return any(_equal(value, element) for element in found)
        if _is_mapping(found):
            return isinstance(value, str) and value in found
        return ERR

    return in_path


def _membership_fast(
    item: ast.Expr, container: ast.ListLit | ast.RangeLit | ast.Path, zone: str
) -> Fn | None:
    """The common shapes of ``in`` read raw values directly; others take the generic path."""
    if isinstance(item, ast.StringLit) and isinstance(container, ast.Path):
        text, read_collection = item.value, _path_reader(container, zone)

        def string_in_path(ctx: Ctx) -> Any:
            found = read_collection(ctx)
            kind = type(found)
            # a string equals only a string, so Python's `in` is §5's membership here
            if kind is list or kind is tuple or kind is dict:
                return text in found
            if found is MISSING:
                return ERR
            if isinstance(found, Mapping):
                return text in found
            return ERR

        return string_in_path
    if not isinstance(item, ast.Path):
        return None
    read = _path_reader(item, zone)
    if isinstance(container, ast.RangeLit):
        low, high = container.low.value, container.high.value
        generic = _membership_generic(item, container, zone)

        def int_in_range(ctx: Ctx) -> Any:
            value = read(ctx)
            if type(value) is int:
                return low <= value <= high
            return generic(ctx)

        return int_in_range
    if isinstance(container, ast.ListLit) and all(
        isinstance(i, ast.StringLit) for i in container.items
    ):
        texts = frozenset(i.value for i in container.items)
        generic = _membership_generic(item, container, zone)

        def string_in_list(ctx: Ctx) -> Any:
            value = read(ctx)
            if type(value) is str:
                return value in texts
            return generic(ctx)

        return string_in_list
    return None


def _compile_like(subject: ast.Expr, pattern: str, zone: str) -> Fn:
    read = _operand(subject, zone)
    if "*" not in pattern:
        exact = pattern.replace("\\*", "*")

        def like_exact(ctx: Ctx) -> Any:
            value = read(ctx)
            if value is ERR or not isinstance(value, str):
                return ERR
            return value == exact

        return like_exact
    if pattern.endswith("*") and pattern.count("*") == 1 and "\\" not in pattern:
        prefix = pattern[:-1]

        def like_prefix(ctx: Ctx) -> Any:
            value = read(ctx)
            if value is ERR or not isinstance(value, str):
                return ERR
            return value.startswith(prefix)

        return like_prefix

    def like(ctx: Ctx) -> Any:
        value = read(ctx)
        if value is ERR or not isinstance(value, str):
            return ERR
        return glob_match(value, pattern)

    return like


# --------------------------------------------------------------------------- reads


def _reads(rule: ast.Rule) -> set[tuple[str, ...]]:
    """The attribute paths a rule reads; ``time`` paths are ``("time", zone, field)``."""
    found: set[tuple[str, ...]] = set()
    for condition in rule.conditions:
        for node in ast.walk(condition):
            if isinstance(node, ast.Path):
                if node.root == "time":
                    found.add(("time", rule.timezone, *node.keys[:1]))
                else:
                    found.add((node.root, *node.keys))
    return found


# --------------------------------------------------------------------------- requests


_JSON_SCALARS: Final = (str, bool, int, type(None))


def _plain_json(value: Any, depth: int = 0) -> bool:
    """Whether a raw value is plain JSON the closures can read as is (no copy is made).

    Anything unusual — a float that is not finite, a non-string key, a foreign type, nesting
    deeper than 32 — answers ``False``, and the request then goes through the reference
    parser, which either normalises it (iteratively, at any depth) or rejects it with the
    exact message.
    """
    kind = type(value)
    if kind is dict:
        if depth > 32:
            return False
        for key, child in value.items():
            if type(key) is not str:
                return False
            if type(child) not in _JSON_SCALARS and not _plain_json(child, depth + 1):
                return False
        return True
    if kind in _JSON_SCALARS:
        return True
    if kind is list:
        if depth > 32:
            return False
        for child in value:
            if type(child) not in _JSON_SCALARS and not _plain_json(child, depth + 1):
                return False
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is Decimal:
        return bool(value.is_finite())
    return False


@lru_cache(maxsize=4096)
def _cached_time(value: str | int) -> datetime:
    # INVARIANT: never called with a bool, which would share a cache entry with 0 or 1
    return parse_time(value)


def prepare_request(data: Any, now: datetime | None, read: bool = True) -> Ctx:
    """Validate a request (spec §4) cheaply and give the closures' view of it.

    Plain JSON (dicts, lists, strings, numbers) is read as it is, without a copy; a request
    with Python values that have a JSON form (tuples, UUIDs, enum members) is read as its
    JSON document (:func:`~aegis.engine.request.as_document`; ``read=False``: ``data`` is
    such a document already); anything else goes through the reference parser, which
    normalises it or raises the exact :class:`~aegis.engine.errors.InvalidRequestError`.
    """
    if (
        type(data) is dict
        and data.keys() <= _KEYS
        and type(data.get("principal")) is dict
        and type(data.get("resource")) is dict
        and type(data.get("action")) is str
        and type(data.get("context", {})) is dict
        and _plain_json(data)
    ):
        context = data.get("context", {})
        raw = context.get("time")
        if now is not None:
            _check_now(now)  # validated whether or not the request carries its time
        if type(raw) is str or type(raw) is int:
            instant = _cached_time(raw)  # validated whether or not a rule reads `time`
        elif "time" in context:
            instant = parse_time(raw)
        else:
            instant = _check_now(now)
        return (data["principal"], data["action"], data["resource"], context, _Clock(instant))
    if read:
        document = as_document(data)
        if document is not data:
            return prepare_request(document, now, read=False)
    return _ctx_of(parse_request(data, now))


def _ctx_of(request: Request) -> Ctx:
    return (
        request.principal,
        request.action,
        request.resource,
        request.context,
        _Clock(request.instant),
    )


# --------------------------------------------------------------------------- the set


def _compile_rule(rule: ast.Rule, proven: frozenset[int] = frozenset()) -> Fn:
    """A rule's conditions combined with `and` (§6); none: every request matches.

    ``proven`` lists conjuncts (positions in :func:`~aegis.engine._index.conjuncts`) known to
    be true for the requests this test will see — the index proved them — and left out:
    ``true and x`` is ``x``.
    """
    parts = [
        compile_truth(c, rule.timezone) for at, c in enumerate(conjuncts(rule)) if at not in proven
    ]
    return _conjunction(parts) if parts else always


RuleSource = PolicySet | Callable[[], PolicySet]
"""A compiled set's source: the loaded set, or how to load it when first asked for."""


def compile_at(rule_at: Callable[[int], ast.Rule], position: int, proven: frozenset[int]) -> Fn:
    """The test of the rule at ``position``, without its ``proven`` conjuncts."""
    return _compile_rule(rule_at(position), proven)


def _residual(rule_at: Callable[[int], ast.Rule], member: int, proven: frozenset[int]) -> Fn:
    """A leaf's test of a rule (the index's ``residual`` factory): :func:`always` when the
    index proves every conjunct, else compiled on first use."""
    if len(proven) == len(conjuncts(rule_at(member))):
        return always  # nothing to compile
    return Pending(partial(compile_at, rule_at, member, proven))


class CompiledPolicySet:
    """A policy set compiled for fast evaluation; immutable and thread-safe.

    Rule tests are compiled when a rule is first a candidate (:class:`~aegis.engine._index.
    Pending`), so that building a large set costs its index, not thousands of closures.

    Attributes:
        reads: every attribute path the set reads, as tuples: ``("action",)``,
            ``("resource", "labels", "app")``, and ``("time", zone, field)`` for time fields.
    """

    __slots__ = (
        "_decisions",
        "_default_deny",
        "_index",
        "_outcomes",
        "_rule_at",
        "_source",
        "_tests",
        "_version",
        "reads",
    )

    def __init__(self, policy_set: PolicySet) -> None:
        with paused_gc(len(policy_set.rules) * 128):  # about the source size of the rules
            self._build(policy_set)

    def _build(self, policy_set: PolicySet) -> None:
        rules = policy_set.rules
        rule_at = rules.__getitem__
        reads: set[tuple[str, ...]] = set()
        for rule in rules:
            reads |= _reads(rule)
        self._assemble(
            policy_set,
            rule_at=rule_at,
            index=build_index(rules, _path_reader, partial(_residual, rule_at)),
            version=policy_set.version,
            outcomes=tuple(
                (
                    rule.name,
                    rule.effect == "deny",
                    (rule.reason if rule.reason is not None else f'denied by rule "{rule.name}"')
                    if rule.effect == "deny"
                    else f'allowed by rule "{rule.name}"',
                )
                for rule in rules
            ),
            reads=frozenset(reads),
        )

    @classmethod
    def restored(
        cls,
        source: RuleSource,
        *,
        rule_at: Callable[[int], ast.Rule],
        index: RuleIndex,
        version: str,
        outcomes: tuple[tuple[str, bool, str], ...],
        reads: frozenset[tuple[str, ...]],
    ) -> CompiledPolicySet:
        """A compiled set from parts kept by a snapshot (:mod:`aegis.engine._snapshot`):
        ``rule_at(position)`` gives a rule when one is first needed."""
        compiled = object.__new__(cls)
        compiled._assemble(
            source, rule_at=rule_at, index=index, version=version, outcomes=outcomes, reads=reads
        )
        return compiled

    def _assemble(
        self,
        source: RuleSource,
        *,
        rule_at: Callable[[int], ast.Rule],
        index: RuleIndex,
        version: str,
        outcomes: tuple[tuple[str, bool, str], ...],
        reads: frozenset[tuple[str, ...]],
    ) -> None:
        self._source = source
        self._rule_at = rule_at
        self._tests = placed(
            [Pending(partial(compile_at, rule_at, i, frozenset())) for i in range(len(outcomes))]
        )
        self._index = index
        self._version = version
        self._default_deny = combine((), version)  # §6.3, when nothing matches
        # Decisions are immutable and determined by which rules matched (when none errored):
        # requests matching the same rules share one Decision object.
        self._decisions: dict[tuple[int, ...], Decision] = {}
        # per rule, what a match contributes: (name, is deny, the reason it gives if first)
        self._outcomes = outcomes
        self.reads = reads

    @property
    def policy_set(self) -> PolicySet:
        """The source set (loaded now if the set was restored from a snapshot)."""
        source = self._source
        if isinstance(source, PolicySet):
            return source
        loaded = source()
        if loaded.version != self._version:
            raise EngineError(
                "the compiled set does not match its policy texts: "
                f"version {loaded.version[:12]} instead of {self._version[:12]}"
            )
        self._source = loaded
        return loaded

    @property
    def version(self) -> str:
        """The set's content hash."""
        return self._version

    @property
    def rule_count(self) -> int:
        """How many rules the set has."""
        return len(self._outcomes)

    def candidates(self, ctx: Ctx) -> list[int]:
        """Indexes (into the set's rules, sorted by name) of the rules a request may match."""
        return self._index.candidates(ctx)

    def evaluate(self, request: Any, now: datetime | None = None) -> Decision:
        """Decide one request; the same decision as the reference interpreter (spec §8).

        Raises:
            InvalidRequestError: the request breaks spec §4, or ``now`` is not aware.
        """
        return self.decide(prepare_request(request, now), request, now)

    def decide(self, ctx: Ctx, request: Any, now: datetime | None) -> Decision:
        """Decide a request already prepared by :func:`prepare_request`.

        ``request`` and ``now`` are kept only to give an erroring rule its exact message
        (from the reference interpreter).
        """
        leaf, mask, exact = self._index.select(ctx)
        if not mask:
            return self._default_deny
        # leaf.memo: per candidate mask, its bits, or the decision it always means
        memo = leaf.memo
        known = memo.get(mask)
        if known is not None and type(known) is not tuple:
            if exact:
                return known  # type: ignore[no-any-return]
            known = None
        bits: tuple[int, ...] = known if known is not None else leaf.bits(mask)
        if exact and mask & leaf.always == mask:
            # every candidate's pins are proven and nothing else is left to test: they all
            # match, so this mask always means this decision
            members = leaf.members
            decision = self._decision([members[b] for b in bits])
            if known is not None or len(memo) < MEMO_SIZE:
                memo[mask] = decision
            return decision
        if known is None and len(memo) < MEMO_SIZE:
            memo[mask] = bits
        tests = self._tests
        matched: list[int] = []
        erred = False
        members, residual = leaf.members, leaf.residual
        for bit in bits:
            position = members[bit]
            # with every pinned value usable, the index has proven the pinned conjuncts
            outcome = residual[bit](ctx) if exact else tests[position](ctx)
            if outcome is True:
                matched.append(position)
            elif outcome is not False:
                erred = True
                matched.append(position)
        if not matched:
            return self._default_deny
        if not erred:
            return self._decision(matched)
        # Some rule errored: the reference interpreter gives every erring rule its message.
        reference = parse_request(request, now)
        results: list[RuleResult] = []
        for position in matched:
            rule = self._rule_at(position)
            if tests[position](ctx) is True:
                results.append(_matched(rule))
            else:
                results.append(evaluate_rule(rule, reference))
        return combine(results, self._version)

    def _decision(self, matched: list[int]) -> Decision:
        """The decision when exactly ``matched`` (ascending positions) matched, none erred."""
        key = tuple(matched)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._matches_only(matched)
            if len(self._decisions) < _MEMO_SIZE:
                self._decisions[key] = decision
        return decision

    def _matches_only(self, matched: list[int]) -> Decision:
        """Spec §6 when no rule errored: ``combine`` without its generality.

        ``matched`` ascends, and positions follow rule names, so the lists come out sorted.
        """
        outcomes = self._outcomes
        allow: list[str] = []
        deny: list[str] = []
        deny_reason: str | None = None
        allow_reason = ""
        for position in matched:
            name, is_deny, says = outcomes[position]
            if is_deny:
                if deny_reason is None:
                    deny_reason = says  # §6.1: the first matching deny rule by name decides
                deny.append(name)
            else:
                if not allow:
                    allow_reason = says  # §6.2: else the first matching allow rule by name
                allow.append(name)
        denied = deny_reason is not None
        return Decision(
            decision="DENY" if denied else "ALLOW",
            allowed=not denied,
            reason=deny_reason if deny_reason is not None else allow_reason,
            allow=tuple(allow),
            deny=tuple(deny),
            errors=(),
            version=self._version,
        )


_MEMO_SIZE: Final = 4096


def _matched(rule: ast.Rule) -> RuleResult:
    return RuleResult(rule.name, rule.effect, Outcome.MATCH, rule.reason)


def compile_policy_set(policy_set: PolicySet) -> CompiledPolicySet:
    """Compile a loaded set (see :class:`CompiledPolicySet`)."""
    return CompiledPolicySet(policy_set)
