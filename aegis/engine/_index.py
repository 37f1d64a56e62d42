"""The rule index: which rules can possibly match a request.

A rule whose top-level conjunct pins an attribute to literals can only match requests with
those values; for every other request that conjunct is ``false``, and ``false and <anything>``
is ``false`` (spec §5), so the rule need not be evaluated at all. Three kinds of pins are
indexed, each a *dimension*:

* ``eq``: ``P == lit``, ``lit == P``, ``P in [lit, …]`` — the value of ``P`` is one of a set;
* ``contains``: ``lit in P`` — ``P`` is a list holding ``lit``, or an object with key ``lit``;
* ``range``: ``P in A..B`` with integer bounds less than 1,025 apart — ``P`` is one of them.

Rules are bits of Python integers. For each dimension a request selects a mask: the rules not
pinned on that dimension, plus those whose pin the request's value satisfies. The candidates
are the AND of the masks. When a pinned attribute is missing or of a type for which the
conjunct would be an *error* rather than false, the mask is every rule: a rule that may error
is always evaluated, because errors change decisions (a deny rule that errors denies).
Rules with no pin at all are in every mask: the catch-all bucket.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from aegis.engine._values import MISSING as _MISSING
from aegis.lang import ast

__all__ = [
    "MEMO_SIZE",
    "Pending",
    "RuleIndex",
    "always",
    "build_index",
    "canonical_key",
    "conjuncts",
    "fallback_flat",
    "number_of",
    "placed",
]

MAX_DIMENSIONS: Final = 12
MEMO_SIZE: Final = 1024
"""Candidate masks remembered per leaf (:attr:`_FlatIndex.memo`)."""
MAX_RANGE_SPAN: Final = 1024

Reader = Callable[[Any], Any]
ReaderFactory = Callable[[ast.Path, str], Reader]


def number_of(value: Any) -> Decimal | int | None:
    """The exact number a raw request value stands for, or ``None`` if it is not one (§2).

    Floats are read as the shortest decimal that prints them; booleans are not numbers.
    """
    kind = type(value)
    if kind is int or kind is Decimal:
        return value  # type: ignore[no-any-return]
    if kind is float:
        return Decimal(repr(value))
    if kind is bool or not isinstance(value, int | float | Decimal):
        return None
    return Decimal(repr(value)) if isinstance(value, float) else value


def canonical_key(value: Any) -> Any:
    """A hashable key, equal exactly for equal scalar values (§5); ``None`` for others.

    Strings are their own key; numbers are ``("n", exact value)`` (``1``, ``1.0`` and
    ``Decimal("1.00")`` share a key, as Python's numeric hashing guarantees); booleans are
    ``("b", value)`` so that ``true`` never meets ``1``.
    """
    if type(value) is str:
        return value
    if value is True or value is False:
        return ("b", value)
    number = number_of(value)
    if number is not None:
        return ("n", number)
    if isinstance(value, str):
        return str(value)
    return None


_key = canonical_key


@dataclass(slots=True)
class _Dimension:
    kind: str  # "eq" | "contains" | "range"
    path: ast.Path
    zone: str
    table: dict[Any, int] = field(default_factory=dict)
    default: int = 0  # the mask of a value no pin names: the rules not pinned here
    mask: Callable[[Any], int] = field(default=lambda ctx: 0)

    def finish(self, read: Reader, default: int, everything: int) -> None:
        """Build :attr:`mask`, the request → candidate-mask closure of this dimension."""
        self.default = default
        get = self.table.get
        if self.kind == "eq":

            def eq(ctx: Any) -> int:
                value = read(ctx)
                if type(value) is str:
                    return get(value, default)
                if value is _MISSING:
                    return everything  # `P == lit` errors: evaluate
                key = canonical_key(value)
                # a list, an object or null equals no literal: only unpinned rules remain
                return default if key is None else get(key, default)

            self.mask = eq
        elif self.kind == "contains":

            def contains(ctx: Any) -> int:
                value = read(ctx)
                found = default
                if type(value) is list or type(value) is tuple:
                    for element in value:
                        key = element if type(element) is str else canonical_key(element)
                        if key is not None:
                            found |= get(key, 0)
                    return found
                if type(value) is dict or isinstance(value, Mapping):
                    for name in value:
                        found |= get(name, 0)
                    return found
                return everything  # missing, or not a collection: `in` errors

            self.mask = contains
        else:

            def in_range(ctx: Any) -> int:
                value = read(ctx)
                kind = type(value)
                if kind is int:
                    return get(value, default)
                if kind is Decimal and value == value.to_integral():
                    return get(int(value), default)
                return everything  # not an integer: evaluate (a number may match, others error)

            self.mask = in_range


def conjuncts(rule: ast.Rule) -> list[ast.Expr]:
    """A rule's body as a flat list of conjuncts (nested ``and`` chains opened, §5)."""
    out: list[ast.Expr] = []
    stack = list(reversed(rule.conditions))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.And):
            stack.extend(reversed(node.operands))
        else:
            out.append(node)
    return out


_LITERALS = (ast.StringLit, ast.NumberLit, ast.BoolLit)


def _pins(rule: ast.Rule) -> list[tuple[str, ast.Path, frozenset[Any], int]]:
    """The (kind, path, allowed keys, conjunct position) pins of a rule's top-level conjuncts."""
    pins: list[tuple[str, ast.Path, frozenset[Any], int]] = []
    for at, node in enumerate(conjuncts(rule)):
        match node:
            case ast.Compare(op="==", left=ast.Path() as path, right=literal) if isinstance(
                literal, _LITERALS
            ):
                pins.append(("eq", path, frozenset((_key(literal.value),)), at))
            case ast.Compare(op="==", left=literal, right=ast.Path() as path) if isinstance(
                literal, _LITERALS
            ):
                pins.append(("eq", path, frozenset((_key(literal.value),)), at))
            case ast.Membership(
                item=ast.Path() as path, container=ast.ListLit(items=items), negated=False
            ):
                pins.append(("eq", path, frozenset(_key(i.value) for i in items), at))
            case ast.Membership(
                item=literal, container=ast.Path() as path, negated=False
            ) if isinstance(literal, _LITERALS):
                pins.append(("contains", path, frozenset((_key(literal.value),)), at))
            case ast.Membership(
                item=ast.Path() as path, container=ast.RangeLit(low=low, high=high), negated=False
            ):
                a, b = low.value, high.value
                if a == a.to_integral() and b == b.to_integral() and b - a <= MAX_RANGE_SPAN:
                    pins.append(("range", path, frozenset(range(int(a), int(b) + 1)), at))
            case _:
                pass
    return pins


Residual = Callable[[int, frozenset[int]], Callable[[Any], Any]]
"""The test of the rule at a position, without the conjuncts (positions in its flattened body)
already proven."""


def always(ctx: Any) -> bool:
    """The test of a rule with no conjunct left to check (all proven, or none at all)."""
    return True


class Pending:
    """A rule test compiled on its first call, which then takes its place.

    Most rules of a large set are never a candidate of any request a process sees, so tests
    are compiled when first needed. Every list slot holding a pending test is registered with
    :meth:`place`; the first call compiles, writes the compiled test into those slots (an
    atomic store, so a racing thread at worst compiles an equal test twice) and from then on
    callers reach the compiled test directly.
    """

    __slots__ = ("_compile", "_slots", "_test")

    def __init__(self, compile_: Callable[[], Callable[[Any], Any]]) -> None:
        self._compile = compile_
        self._slots: list[tuple[list[Any], int]] = []
        self._test: Callable[[Any], Any] | None = None

    def place(self, slots: list[Any], at: int) -> None:
        """Note that ``slots[at]`` holds this test (call before the slots are shared)."""
        self._slots.append((slots, at))

    def __call__(self, ctx: Any) -> Any:
        test = self._test
        if test is None:
            test = self._test = self._compile()
            for slots, at in self._slots:
                slots[at] = test
        return test(ctx)


def placed(tests: Sequence[Callable[[Any], Any]]) -> list[Callable[[Any], Any]]:
    """``tests`` as a list, each :class:`Pending` test registered at its slot."""
    out = list(tests)
    for at, test in enumerate(out):
        if type(test) is Pending:
            test.place(out, at)
    return out


class RuleIndex:
    """Candidate selection over a set's rules (positions in the set's name order)."""

    __slots__ = ()

    def select(self, ctx: Any) -> tuple[_FlatIndex, int, bool]:
        """The leaf index for this request, the candidates' mask in it (bit ``i`` is its
        ``members[i]``), and whether every pinned attribute read had a usable value (then
        each candidate's pins are proven, and :attr:`_FlatIndex.residual` tests may replace
        the full ones)."""
        raise NotImplementedError

    def candidates(self, ctx: Any) -> list[int]:
        """Positions of the rules that may match (or error on) this request, ascending."""
        leaf, mask, _ = self.select(ctx)
        members = leaf.members
        return [members[b] for b in leaf.bits(mask)]


@dataclass(frozen=True, slots=True)
class _FlatIndex(RuleIndex):
    """Bitset masks over ``members`` (bit ``i`` is ``members[i]``), one AND per dimension."""

    dimensions: tuple[_Dimension, ...]
    everything: int
    members: tuple[int, ...]
    residual: list[Callable[[Any], Any]]  # INVARIANT: only Pending tests replace themselves
    residual_keys: tuple[tuple[int, frozenset[int]], ...]  # (member, proven conjuncts)
    always: int = 0
    """Members whose residual test is :func:`always`: proven pins decide them alone."""
    memo: dict[int, Any] = field(default_factory=dict, compare=False)
    """Per candidate mask: its bits, or (for an exact selection of ``always`` members
    only) the whole decision, filled by the compiled set (bounded by :data:`MEMO_SIZE`)."""

    def select(self, ctx: Any) -> tuple[_FlatIndex, int, bool]:
        every = self.everything
        mask = every
        exact = True
        for dimension in self.dimensions:
            found = dimension.mask(ctx)
            if found is every:  # a missing or mistyped pinned value: nothing is proven
                exact = False
            mask &= found
            if not mask:
                break
        return self, mask, exact

    def bits(self, mask: int) -> tuple[int, ...]:
        """The set bits of ``mask``, ascending."""
        out: list[int] = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return tuple(out)


@dataclass(slots=True)
class _ShardedIndex(RuleIndex):
    """Large sets: one shard per value of the busiest ``eq`` dimension, each indexed anew.

    A request reads that attribute once and continues in the shard of its value (the rules
    pinned to it plus the unpinned ones), so the bitsets of the next level are a fraction of
    the set's size. A missing value goes to a flat index over every member (each pinned rule
    may error), built the first time one is needed.
    """

    read: Reader
    shards: dict[Any, RuleIndex]
    unpinned: RuleIndex
    make_flat: Callable[[], _FlatIndex]
    # what a snapshot of the index needs to rebuild ``read`` and ``make_flat``
    path: ast.Path
    zone: str
    members: tuple[int, ...]
    proven: frozenset[_Ident]
    flat: _FlatIndex | None = None

    def select(self, ctx: Any) -> tuple[_FlatIndex, int, bool]:
        value = self.read(ctx)
        if value is _MISSING:
            if self.flat is None:
                # INVARIANT: building is pure, so two threads racing here build equal indexes
                self.flat = self.make_flat()
            leaf, mask, _ = self.flat.select(ctx)
            return leaf, mask, False
        key = value if type(value) is str else canonical_key(value)
        index = self.unpinned if key is None else self.shards.get(key, self.unpinned)
        return index.select(ctx)


SHARD_ABOVE: Final = 512
"""Sets with more rules than this are sharded on their busiest ``eq`` dimension."""

_Ident = tuple[str, str, tuple[str, ...], str]
_Pins = dict[_Ident, tuple[ast.Path, frozenset[Any], frozenset[int]]]


def build_index(
    rules: Sequence[ast.Rule], reader: ReaderFactory, residual: Residual
) -> RuleIndex:
    """Index ``rules`` (position ``i`` is ``rules[i]``) on their pins.

    Dimensions that pin fewer than two rules are not worth a lookup per decision; at most
    :data:`MAX_DIMENSIONS` of the most used are kept. Sets larger than :data:`SHARD_ABOVE`
    are sharded first (recursively, each attribute at most once). Each leaf also keeps, per
    rule, its test without the conjuncts that the leaf's path proves (``residual``).
    """
    builder = _Builder([_rule_pins(rule) for rule in rules], reader, residual)
    return builder.build(list(range(len(rules))), frozenset())


def fallback_flat(
    rule_at: Callable[[int], ast.Rule],
    members: Sequence[int],
    proven: frozenset[_Ident],
    reader: ReaderFactory,
) -> _FlatIndex:
    """The flat index a :class:`_ShardedIndex` over ``members`` falls back to (a request
    without the sharded attribute), from those members' rules: for an index restored from a
    snapshot, which has no builder left."""
    pins: list[_Pins] = [{} for _ in range(max(members, default=-1) + 1)]
    for member in members:
        pins[member] = _rule_pins(rule_at(member))

    def no_residual(member: int, proven: frozenset[int]) -> Callable[[Any], Any]:
        raise AssertionError("a fallback index has no residual tests")

    return _Builder(pins, reader, no_residual).flat(list(members), proven, exact=False)


def _rule_pins(rule: ast.Rule) -> _Pins:
    """A rule's pins by dimension: (path, allowed keys, conjuncts a usable value proves)."""
    pinned: _Pins = {}
    for kind, path, keys, at in _pins(rule):
        zone = rule.timezone if path.root == "time" else ""
        ident = (kind, path.root, path.keys, zone)
        if ident not in pinned:
            pinned[ident] = (path, keys, frozenset((at,)))
        elif kind != "contains":  # two pins on one value: it must satisfy both, and does
            old = pinned[ident]
            pinned[ident] = (path, old[1] & keys, old[2] | {at})
        # several `lit in P` pins: the request must hold each; the index keeps (and proves)
        # only the first, the others stay in the residual test
    return pinned


@dataclass(slots=True)
class _Builder:
    pins: list[_Pins]
    reader: ReaderFactory
    residual: Residual
    residuals: dict[tuple[int, frozenset[int]], Callable[[Any], Any]] = field(
        default_factory=dict
    )

    def proven_by(self, member: int, covered: frozenset[_Ident] | set[_Ident]) -> frozenset[int]:
        """The rule's conjuncts that the ``covered`` dimensions prove."""
        return frozenset(
            at
            for ident, (_, _, proves) in self.pins[member].items()
            if ident in covered
            for at in proves
        )

    def residual_of(self, member: int, proven: frozenset[int]) -> Any:
        """The rule's test without the ``proven`` conjuncts (shared between leaves: a rule
        unpinned on a sharded attribute sits in every shard)."""
        key = (member, proven)
        test = self.residuals.get(key)
        if test is None:
            test = self.residuals[key] = self.residual(member, proven)
        return test

    def build(self, members: list[int], proven: frozenset[_Ident]) -> RuleIndex:
        """An index over ``members`` (set positions); ``proven``: dimensions sharded above."""
        if len(members) <= SHARD_ABOVE:
            return self.flat(members, proven)
        counts: dict[_Ident, int] = {}
        for position in members:
            for ident in self.pins[position]:
                if ident[0] == "eq" and ident not in proven:
                    counts[ident] = counts.get(ident, 0) + 1
        if not counts:
            return self.flat(members, proven)
        ident = max(counts, key=lambda i: counts[i])
        if counts[ident] * 2 < len(members):
            # most rules do not pin it: sharding would copy them into every shard
            return self.flat(members, proven)
        unpinned = [p for p in members if ident not in self.pins[p]]
        by_key: dict[Any, list[int]] = {}
        path: ast.Path | None = None
        for position in members:
            pin = self.pins[position].get(ident)
            if pin is not None:
                path = pin[0]
                for key in pin[1]:
                    by_key.setdefault(key, []).append(position)
        assert path is not None
        deeper = proven | {ident}
        shards = {
            key: self.build(sorted({*pinned_here, *unpinned}), deeper)
            for key, pinned_here in by_key.items()
        }
        rest = self.build(unpinned, deeper)
        read = self.reader(path, ident[3] or "UTC")
        return _ShardedIndex(
            read,
            shards,
            rest,
            lambda: self.flat(members, proven, exact=False),
            path,
            ident[3],
            tuple(members),
            proven,
        )

    def flat(
        self, members: list[int], proven: frozenset[_Ident], *, exact: bool = True
    ) -> _FlatIndex:
        """Bitsets over ``members``; with ``exact``, the residual tests of its leaves too (a
        fallback index, used only when a pinned value is missing, never needs them)."""
        size = len(members)
        everything = (1 << size) - 1
        # members grouped by what they pin: rules with equal pins share one mask (a range
        # pin allows up to 1,025 keys, so per-key lists would cost that much per rule)
        groups: dict[tuple[_Ident, frozenset[Any]], list[int]] = {}
        pinned_bits: dict[_Ident, list[int]] = {}
        paths: dict[_Ident, ast.Path] = {}
        pins = self.pins
        for bit, member in enumerate(members):
            for ident, (path, keys, _) in pins[member].items():
                found = pinned_bits.get(ident)
                if found is None:
                    pinned_bits[ident] = found = []
                    paths[ident] = path
                found.append(bit)
                group = groups.get((ident, keys))
                if group is None:
                    groups[(ident, keys)] = [bit]
                else:
                    group.append(bit)
        # a dimension sharded above selects every member of this leaf: no mask to apply
        chosen = sorted(
            (
                ident
                for ident, found in pinned_bits.items()
                if len(found) >= 2 and ident not in proven
            ),
            key=lambda ident: -len(pinned_bits[ident]),
        )[:MAX_DIMENSIONS]
        dimensions = {ident: _Dimension(ident[0], paths[ident], ident[3]) for ident in chosen}
        defaults = {ident: everything & ~_mask(pinned_bits[ident], size) for ident in chosen}
        for (ident, keys), found in groups.items():
            dimension = dimensions.get(ident)
            if dimension is not None:
                table, mask, default = dimension.table, _mask(found, size), defaults[ident]
                for key in keys:
                    table[key] = table.get(key, default) | mask
        for ident, dimension in dimensions.items():
            read = self.reader(dimension.path, ident[3] or "UTC")
            dimension.finish(read, defaults[ident], everything)
        covered = proven | set(chosen)
        residual_keys = (
            tuple((m, self.proven_by(m, covered)) for m in members) if exact else ()
        )
        residual = placed([self.residual_of(member, proof) for member, proof in residual_keys])
        return _FlatIndex(
            tuple(dimensions[ident] for ident in chosen),
            everything,
            tuple(members),
            residual,
            residual_keys,
            _mask([bit for bit, test in enumerate(residual) if test is always], size),
        )


def _mask(positions: list[int], size: int) -> int:
    """The integer whose bits ``positions`` are set, built in linear time."""
    bits = bytearray((size + 7) // 8)
    for position in positions:
        bits[position >> 3] |= 1 << (position & 7)
    return int.from_bytes(bits, "little")
