"""The policy AST: immutable, slotted dataclasses shaped like spec §3.

Source spans take no part in equality or hashing (``field(compare=False)``), so two rules that
differ only in layout are equal: the format → parse round trip of spec §8 compares rules
structurally. Paths store their keys decoded, whatever their spelling: ``resource.kind`` and
``resource["kind"]`` are the same path.

Numbers are :class:`decimal.Decimal`, exact by value (spec §2). Literals of different kinds are
different classes, so ``true`` never equals ``1`` structurally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal as TypingLiteral
from typing import TypeAlias

from aegis.lang.diagnostics import UNKNOWN_SPAN, Span

__all__ = [
    "ROOTS",
    "And",
    "Annotation",
    "BoolLit",
    "Compare",
    "Effect",
    "Expr",
    "Has",
    "Like",
    "ListLit",
    "Literal",
    "Membership",
    "Not",
    "NumberLit",
    "Or",
    "Path",
    "PolicyFile",
    "RangeLit",
    "Rule",
    "StringLit",
    "walk",
    "walk_children",
]

ROOTS = ("principal", "action", "resource", "context", "time")
"""The roots a path may start with (spec §3)."""

Effect: TypeAlias = TypingLiteral["allow", "deny"]
CompareOp: TypeAlias = TypingLiteral["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class StringLit:
    """A string literal, escapes decoded."""

    value: str
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NumberLit:
    """A number literal, exact (``1`` and ``1.0`` are different spellings of one value)."""

    value: Decimal
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    """``true`` or ``false``."""

    value: bool
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


Literal: TypeAlias = StringLit | NumberLit | BoolLit


@dataclass(frozen=True, slots=True)
class Path:
    """``root`` followed by keys: ``resource.labels["app"]`` is ``("resource", ("labels", "app"))``.

    ``key_spans`` holds one span per key (the ``.key`` or ``["key"]`` step) for diagnostics.
    """

    root: str
    keys: tuple[str, ...] = ()
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    key_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)

    def prefix_span(self, length: int) -> Span:
        """The span of the path cut after ``length`` keys (0: the root alone)."""
        if length == 0 or not self.key_spans:
            end = self.span if not self.key_spans else self.key_spans[0]
            return Span(self.span.file, self.span.line, self.span.column, end.line, end.column)
        last = self.key_spans[min(length, len(self.key_spans)) - 1]
        return Span(
            self.span.file, self.span.line, self.span.column, last.end_line, last.end_column
        )


@dataclass(frozen=True, slots=True)
class ListLit:
    """A list of literals; appears only on the right of ``in`` / ``not in``."""

    items: tuple[Literal, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RangeLit:
    """``low..high``, inclusive at both ends."""

    low: NumberLit
    high: NumberLit
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right`` for ``== != < <= > >=``."""

    op: CompareOp
    left: Expr
    right: Expr
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Membership:
    """``item in container`` (or ``not in`` when ``negated``)."""

    item: Expr
    container: ListLit | RangeLit | Path
    negated: bool = False
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Like:
    """``subject like "glob"``; the pattern is the decoded string."""

    subject: Expr
    pattern: StringLit
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Has:
    """``has path``: the path exists (its value may be null); never errors."""

    path: Path
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    """``not operand``."""

    operand: Expr
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and …``: one chain as written (two or more operands); parentheses nest."""

    operands: tuple[Expr, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or …``: one chain as written (two or more operands); parentheses nest."""

    operands: tuple[Expr, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


Expr: TypeAlias = (
    StringLit | NumberLit | BoolLit | Path | Compare | Membership | Like | Has | Not | And | Or
)
"""Any expression; a bare literal or path is an expression too (a condition of its own)."""


@dataclass(frozen=True, slots=True)
class Annotation:
    """``@name("value")``: metadata only, never read by evaluation."""

    name: str
    value: str
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``allow`` or ``deny`` rule.

    Attributes:
        effect: ``"allow"`` or ``"deny"``.
        name: the decoded rule name, unique in a set.
        conditions: every condition must hold (implicit ``and``); empty matches everything.
        reason: the ``reason`` text, if any.
        annotations: ``@name("value")`` metadata in source order.
        timezone: the IANA zone of the rule's file (``"UTC"`` when the file has none).
        span: the whole rule; ``name_span`` the name literal; ``reason_span`` the reason item.
    """

    effect: Effect
    name: str
    conditions: tuple[Expr, ...] = ()
    reason: str | None = None
    annotations: tuple[Annotation, ...] = ()
    timezone: str = "UTC"
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    name_span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    reason_span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """One parsed ``.aegis`` file.

    Attributes:
        name: the file name as given to the parser (used in every span).
        timezone: the ``timezone`` directive's zone, or ``None`` when the file has none.
        rules: the rules in source order; each carries the file's effective zone.
        comments: every ``#`` comment with its span, so the formatter can keep them.
    """

    name: str
    timezone: str | None
    rules: tuple[Rule, ...]
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)
    timezone_span: Span | None = field(default=None, compare=False, repr=False)
    comments: tuple[tuple[Span, str], ...] = field(default=(), compare=False, repr=False)


def walk_children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``node`` (lists and ranges are not expressions)."""
    match node:
        case Compare(left=left, right=right):
            return (left, right)
        case Membership(item=item, container=container):
            return (item, container) if isinstance(container, Path) else (item,)
        case Like(subject=subject):
            return (subject,)
        case Has(path=path):
            return (path,)
        case Not(operand=operand):
            return (operand,)
        case And(operands=ops) | Or(operands=ops):
            return ops
        case _:
            return ()


def walk(expr: Expr) -> list[Expr]:
    """Every expression node under ``expr`` (itself included), parents before children."""
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(walk_children(node)))
    return out
