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

__all__ = ["RuleIndex", "build_index", "canonical_key", "number_of"]

MAX_DIMENSIONS: Final = 12
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
    pinned: int = 0  # rules pinned on this dimension
    table: dict[Any, int] = field(default_factory=dict)
    read: Reader | None = None
    default: int = 0
    everything: int = 0

    def mask(self, ctx: Any) -> int:
        assert self.read is not None
        value = self.read(ctx)
        if self.kind == "eq":
            if value is _MISSING:
                return self.everything
            key = _key(value)
            if key is None:
                return self.default  # a list, an object or null equals no literal
            return self.table.get(key, self.default)
        if self.kind == "contains":
            if type(value) is list or type(value) is tuple:
                found = self.default
                for element in value:
                    key = _key(element)
                    if key is not None:
                        found |= self.table.get(key, 0)
                return found
            if type(value) is dict or isinstance(value, Mapping):
                found = self.default
                for name in value:
                    found |= self.table.get(name, 0)
                return found
            return self.everything  # missing, or not a collection: `in` errors
        # range
        if type(value) is int or (isinstance(value, Decimal) and value == value.to_integral()):
            return self.table.get(int(value), self.default)
        return self.everything  # not an integer: evaluate (a number may match, others error)


def _conjuncts(rule: ast.Rule) -> list[ast.Expr]:
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


def _pins(rule: ast.Rule) -> list[tuple[str, ast.Path, frozenset[Any]]]:
    """The (kind, path, allowed keys) pins of one rule's top-level conjuncts."""
    pins: list[tuple[str, ast.Path, frozenset[Any]]] = []
    for node in _conjuncts(rule):
        match node:
            case ast.Compare(op="==", left=ast.Path() as path, right=literal) if isinstance(
                literal, _LITERALS
            ):
                pins.append(("eq", path, frozenset((_key(literal.value),))))
            case ast.Compare(op="==", left=literal, right=ast.Path() as path) if isinstance(
                literal, _LITERALS
            ):
                pins.append(("eq", path, frozenset((_key(literal.value),))))
            case ast.Membership(
                item=ast.Path() as path, container=ast.ListLit(items=items), negated=False
            ):
                pins.append(("eq", path, frozenset(_key(i.value) for i in items)))
            case ast.Membership(
                item=literal, container=ast.Path() as path, negated=False
            ) if isinstance(literal, _LITERALS):
                pins.append(("contains", path, frozenset((_key(literal.value),))))
            case ast.Membership(
                item=ast.Path() as path, container=ast.RangeLit(low=low, high=high), negated=False
            ):
                a, b = low.value, high.value
                if a == a.to_integral() and b == b.to_integral() and b - a <= MAX_RANGE_SPAN:
                    pins.append(("range", path, frozenset(range(int(a), int(b) + 1))))
            case _:
                pass
    return pins


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Candidate selection over a set's rules (positions in the set's name order)."""

    dimensions: tuple[_Dimension, ...]
    everything: int

    def candidates(self, ctx: Any) -> list[int]:
        """Positions of the rules that may match (or error on) this request, ascending."""
        mask = self.everything
        for dimension in self.dimensions:
            mask &= dimension.mask(ctx)
            if not mask:
                return []
        out: list[int] = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out


def build_index(rules: Sequence[ast.Rule], reader: ReaderFactory) -> RuleIndex:
    """Index ``rules`` (bit ``i`` is ``rules[i]``) on their pins.

    Dimensions that pin fewer than two rules are not worth a lookup per decision; at most
    :data:`MAX_DIMENSIONS` of the most used are kept.
    """
    everything = (1 << len(rules)) - 1
    dimensions: dict[tuple[str, str, tuple[str, ...], str], _Dimension] = {}
    per_rule: list[dict[tuple[str, str, tuple[str, ...], str], frozenset[Any]]] = []
    for rule in rules:
        pinned: dict[tuple[str, str, tuple[str, ...], str], frozenset[Any]] = {}
        for kind, path, keys in _pins(rule):
            zone = rule.timezone if path.root == "time" else ""
            ident = (kind, path.root, path.keys, zone)
            if kind == "contains":
                # several `lit in P` pins: the request must hold each; keep one (any is sound)
                pinned.setdefault(ident, keys)
            else:
                pinned[ident] = pinned[ident] & keys if ident in pinned else keys
            if ident not in dimensions:
                dimensions[ident] = _Dimension(kind, path, zone)
        per_rule.append(pinned)
    positions: dict[tuple[tuple[str, str, tuple[str, ...], str], Any], list[int]] = {}
    pinned_positions: dict[tuple[str, str, tuple[str, ...], str], list[int]] = {}
    for position, pinned in enumerate(per_rule):
        for ident, keys in pinned.items():
            pinned_positions.setdefault(ident, []).append(position)
            for key in keys:
                positions.setdefault((ident, key), []).append(position)
    size = len(rules)
    chosen = sorted(
        (ident for ident, found in pinned_positions.items() if len(found) >= 2),
        key=lambda ident: -len(pinned_positions[ident]),
    )[:MAX_DIMENSIONS]
    kept = set(chosen)
    for ident in chosen:
        dimension = dimensions[ident]
        dimension.pinned = _mask(pinned_positions[ident], size)
        dimension.default = everything & ~dimension.pinned
        dimension.everything = everything
        dimension.read = reader(dimension.path, dimension.zone or "UTC")
    for (ident, key), found in positions.items():
        if ident in kept:
            dimension = dimensions[ident]
            dimension.table[key] = _mask(found, size) | dimension.default
    return RuleIndex(tuple(dimensions[ident] for ident in chosen), everything)


def _mask(positions: list[int], size: int) -> int:
    """The integer whose bits ``positions`` are set, built in linear time."""
    bits = bytearray((size + 7) // 8)
    for position in positions:
        bits[position >> 3] |= 1 << (position & 7)
    return int.from_bytes(bits, "little")

