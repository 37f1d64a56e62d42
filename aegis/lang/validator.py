"""Validation of a policy set against a schema (spec §7).

:func:`validate` makes the four checks of §7 and returns one diagnostic per problem, at the
position of the path, literal or expression at fault:

``unknown-attribute``
    a key the schema does not declare, or a key into a value that is not an object or map
    (``action.x``, ``resource.name.first``, ``time.second``), also under ``has``;
``unknown-action``
    a string literal outside the schema's action list compared with ``action`` by ``==`` /
    ``!=`` (either side) or listed in ``action in [..]`` / ``action not in [..]``;
``type-error``
    ordering not on two numbers or two strings; ``like`` on a non-string; a range on a
    non-number; ``in <path>`` where the path is neither a list nor a map or object; a condition
    or an operand of ``not`` / ``and`` / ``or`` that is not boolean; ``==`` / ``!=`` / ``in``
    between kinds that can never be equal (the kinds: string, number, bool, list, object);
``unguarded-optional``
    a read through an optional attribute or a map entry whose prefix is not guarded by a
    ``has`` conjunct of an enclosing ``and`` (the rule body counts as one).

The guarantee (§7, tested as a property): a set for which :func:`validate` returns nothing
never yields an evaluation error on a request that conforms to the schema.

After an unknown attribute, the path's type is *unknown* and no further type error is
reported about it, so one mistake gives one diagnostic. The decisions taken where §7 is
silent are listed in ``docs/schemas.md``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol, TypeAlias, runtime_checkable

from aegis.lang.ast import (
    And,
    BoolLit,
    Compare,
    Expr,
    Has,
    Like,
    ListLit,
    Membership,
    Not,
    NumberLit,
    Or,
    Path,
    PolicyFile,
    RangeLit,
    Rule,
    StringLit,
)
from aegis.lang.diagnostics import Diagnostic, Span, sort_diagnostics
from aegis.lang.formatter import format_expr
from aegis.lang.schema import (
    BOOL,
    DECIMAL,
    INT,
    STRING,
    ListType,
    MapType,
    ObjectType,
    PrimitiveType,
    Schema,
    SchemaType,
)

__all__ = [
    "TYPE_ERROR",
    "UNGUARDED_OPTIONAL",
    "UNKNOWN_ACTION",
    "UNKNOWN_ATTRIBUTE",
    "PolicySource",
    "validate",
]

UNKNOWN_ATTRIBUTE: Final = "unknown-attribute"
"""Diagnostic code of check 1: a path the schema does not declare."""
UNKNOWN_ACTION: Final = "unknown-action"
"""Diagnostic code of check 2: an action name outside the schema's list."""
TYPE_ERROR: Final = "type-error"
"""Diagnostic code of check 3: an operator applied to kinds it cannot take."""
UNGUARDED_OPTIONAL: Final = "unguarded-optional"
"""Diagnostic code of check 4: an optional attribute or map entry read without `has`."""


@runtime_checkable
class _RuleContainer(Protocol):
    @property
    def rules(self) -> Sequence[Rule]: ...


PolicySource: TypeAlias = _RuleContainer | Iterable[Rule | PolicyFile]
"""What :func:`validate` accepts: a ``PolicySet`` or ``PolicyFile`` (anything with ``rules``),
or an iterable of rules and files."""


def validate(policies: PolicySource, schema: Schema) -> tuple[Diagnostic, ...]:
    """Check a policy set against a schema (spec §7).

    Args:
        policies: a ``PolicySet``, a ``PolicyFile``, or an iterable of rules and files.
        schema: the schema, from :func:`~aegis.lang.schema.load_schema`.

    Returns:
        Every problem, sorted by position (empty when the set validates). When ``policies``
        offers ``source_line(span)`` (a ``PolicySet`` does), each diagnostic carries its
        source line for the caret rendering.

    Usage::

        diagnostics = validate(load_paths(["policies/"]), load_schema("schema.yaml"))
        for diagnostic in diagnostics:
            print(diagnostic)
    """
    rules: list[Rule] = []
    if isinstance(policies, _RuleContainer):
        rules.extend(policies.rules)
    else:
        for item in policies:
            if isinstance(item, PolicyFile):
                rules.extend(item.rules)
            else:
                rules.append(item)
    source_line: Callable[[Span], str | None] | None = getattr(policies, "source_line", None)
    checker = _Checker(schema, source_line)
    for rule in rules:
        checker.rule(rule)
    return sort_diagnostics(checker.diagnostics)


# --- kinds and descriptions -----------------------------------------------------------------

_Type: TypeAlias = SchemaType | None
"""A static type; ``None`` is *unknown* (after a reported problem): it never causes another."""


def _kind(t: SchemaType) -> str:
    """The equality kind of spec §7: string, number, bool, list or object."""
    match t:
        case PrimitiveType(name="int") | PrimitiveType(name="decimal"):
            return "number"
        case PrimitiveType(name=name):
            return name
        case ListType():
            return "list"
        case _:
            return "object"


def _article(t: SchemaType) -> str:
    """``an int``, ``a [string]``, ``a map``… for messages."""
    match t:
        case PrimitiveType(name="int"):
            return "an int"
        case PrimitiveType(name=name):
            return f"a {name}"
        case ListType():
            return f"a list `{t.describe()}`"
        case MapType():
            return f"a map `{t.describe()}`"
        case _:
            return "an object"


def _kind_article(kind: str) -> str:
    return "an object" if kind == "object" else f"a {kind}"


def _describe(expr: Expr) -> str:
    """The operand as written (canonical form), in backticks."""
    return f"`{format_expr(expr)}`"


def _render_path(root: str, keys: Sequence[str]) -> str:
    """A path in canonical source spelling: ``resource.labels["app.kubernetes.io/name"]``."""
    return format_expr(Path(root, tuple(keys)))


def _literal_type(literal: StringLit | NumberLit | BoolLit) -> SchemaType:
    match literal:
        case StringLit():
            return STRING
        case BoolLit():
            return BOOL
        case NumberLit(value=value):
            exponent = value.as_tuple().exponent
            return INT if isinstance(exponent, int) and exponent >= 0 else DECIMAL


def _is_action(expr: Expr) -> bool:
    return isinstance(expr, Path) and expr.root == "action" and not expr.keys


def _flatten_and(exprs: Iterable[Expr]) -> list[Expr]:
    """The conjuncts of an ``and`` chain, nested ``and`` s (parentheses) flattened."""
    out: list[Expr] = []
    stack = list(reversed(list(exprs)))
    while stack:
        node = stack.pop()
        if isinstance(node, And):
            stack.extend(reversed(node.operands))
        else:
            out.append(node)
    return out


def _guards(conjuncts: Iterable[Expr]) -> tuple[Path, ...]:
    return tuple(c.path for c in conjuncts if isinstance(c, Has))


def _guarded(path: Path, length: int, guards: Sequence[Path]) -> bool:
    """Whether the prefix of ``path`` with ``length`` keys is a prefix of a guard's path."""
    prefix = path.keys[:length]
    return any(g.root == path.root and g.keys[:length] == prefix and len(g.keys) >= length
               for g in guards)


# --- the checker ----------------------------------------------------------------------------


class _Checker:
    """Walks rules, infers types, and collects the diagnostics of the four checks."""

    def __init__(self, schema: Schema, source_line: Callable[[Span], str | None] | None) -> None:
        self.schema = schema
        self.source_line = source_line
        self.diagnostics: list[Diagnostic] = []

    def report(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        line = self.source_line(span) if self.source_line is not None else None
        self.diagnostics.append(
            Diagnostic(code=code, message=message, span=span, help=help, source_line=line)
        )

    # rules and boolean structure --------------------------------------------------------

    def rule(self, rule: Rule) -> None:
        # The rule body is one `and` of its conditions (spec §6, §7 check 4).
        guards = _guards(_flatten_and(rule.conditions))
        for condition in rule.conditions:
            self.boolean(condition, guards, "a condition")

    def boolean(self, expr: Expr, guards: tuple[Path, ...], role: str) -> None:
        """Check an expression that must be boolean (a condition, an operand of not/and/or)."""
        t = self.expr(expr, guards)
        if t is not None and t != BOOL:
            self.report(
                TYPE_ERROR,
                f"{role} must be boolean, but {_describe(expr)} is {_article(t)}",
                expr.span,
            )

    def expr(self, expr: Expr, guards: tuple[Path, ...]) -> _Type:
        """Check ``expr`` and return its static type."""
        match expr:
            case StringLit() | NumberLit() | BoolLit():
                return _literal_type(expr)
            case Path():
                return self.path(expr, guards, read=True)
            case Has(path=path):
                # `has` never errors: its path must be known, but needs no guard.
                self.path(path, guards, read=False)
                return BOOL
            case Not(operand=operand):
                self.boolean(operand, guards, "the operand of `not`")
                return BOOL
            case And(operands=operands):
                inner = guards + _guards(_flatten_and(operands))
                for operand in operands:
                    self.boolean(operand, inner, "an operand of `and`")
                return BOOL
            case Or(operands=operands):
                for operand in operands:
                    self.boolean(operand, guards, "an operand of `or`")
                return BOOL
            case Compare():
                self.compare(expr, guards)
                return BOOL
            case Membership():
                self.membership(expr, guards)
                return BOOL
            case Like(subject=subject):
                t = self.expr(subject, guards)
                if t is not None and t != STRING:
                    self.report(
                        TYPE_ERROR,
                        f"`like` matches strings, but {_describe(subject)} is {_article(t)}",
                        subject.span,
                    )
                return BOOL
        raise AssertionError(f"unexpected expression {expr!r}")  # pragma: no cover

    # paths ----------------------------------------------------------------------------

    def path(self, path: Path, guards: tuple[Path, ...], *, read: bool) -> _Type:
        """The type of a path; reports unknown keys and (when ``read``) unguarded steps."""
        t: SchemaType = self.schema.root_type(path.root)
        unguarded: int | None = None
        deepest_optional = 0
        for index, key in enumerate(path.keys):
            length = index + 1
            optional = False
            match t:
                case ObjectType():
                    attribute = t.attribute(key)
                    if attribute is None:
                        self.unknown_key(path, length, t)
                        self.report_unguarded(path, unguarded, deepest_optional)
                        return None
                    optional = attribute.optional
                    t = attribute.type
                case MapType(value=value):
                    optional = True  # every map key is optional
                    t = value
                case _:
                    owner = _render_path(path.root, path.keys[:index])
                    self.report(
                        UNKNOWN_ATTRIBUTE,
                        f"unknown attribute `{_render_path(path.root, path.keys[:length])}`: "
                        f"`{owner}` is {_article(t)}, not an object or map",
                        path.prefix_span(length),
                    )
                    self.report_unguarded(path, unguarded, deepest_optional)
                    return None
            if optional:
                deepest_optional = length
                if read and unguarded is None and not _guarded(path, length, guards):
                    unguarded = length
        self.report_unguarded(path, unguarded, deepest_optional)
        return t

    def unknown_key(self, path: Path, length: int, owner: ObjectType) -> None:
        owner_text = _render_path(path.root, path.keys[: length - 1])
        key = path.keys[length - 1]
        if path.root == "time" and length == 1:
            help_text = "`time` has year, month, day, hour, minute, weekday, date, clock, epoch"
        else:
            close = difflib.get_close_matches(key, owner.names(), n=1)
            help_text = (
                f"did you mean `{_render_path(path.root, (*path.keys[: length - 1], close[0]))}`?"
                if close
                else f"declare it in the schema under `{owner_text}`"
            )
        self.report(
            UNKNOWN_ATTRIBUTE,
            f"unknown attribute `{_render_path(path.root, path.keys[:length])}`: "
            f"the schema does not declare it",
            path.prefix_span(length),
            help_text,
        )

    def report_unguarded(self, path: Path, unguarded: int | None, deepest: int) -> None:
        if unguarded is None:
            return
        prefix = _render_path(path.root, path.keys[:unguarded])
        guard = _render_path(path.root, path.keys[: max(deepest, unguarded)])
        self.report(
            UNGUARDED_OPTIONAL,
            f"`{prefix}` is optional and read without a guard",
            path.prefix_span(unguarded),
            f"add the condition `has {guard}` to the same rule, or `has {guard} and …` "
            f"around the read",
        )

    # operators ------------------------------------------------------------------------

    def compare(self, node: Compare, guards: tuple[Path, ...]) -> None:
        left = self.expr(node.left, guards)
        right = self.expr(node.right, guards)
        if node.op in ("==", "!="):
            self.same_kind(node.op, (node.left, left), (node.right, right), node.span)
            for subject, other in ((node.left, node.right), (node.right, node.left)):
                if _is_action(subject) and isinstance(other, StringLit):
                    self.action_name(other)
            return
        bad = False
        for operand, t in ((node.left, left), (node.right, right)):
            if t is not None and _kind(t) not in ("number", "string"):
                bad = True
                self.report(
                    TYPE_ERROR,
                    f"`{node.op}` orders numbers or strings, but {_describe(operand)} is "
                    f"{_article(t)}",
                    operand.span,
                )
        if not bad and left is not None and right is not None and _kind(left) != _kind(right):
            self.report(
                TYPE_ERROR,
                f"`{node.op}` cannot order {_kind_article(_kind(left))} "
                f"({_describe(node.left)}) and {_kind_article(_kind(right))} "
                f"({_describe(node.right)})",
                node.span,
            )

    def same_kind(
        self, op: str, left_side: tuple[Expr, _Type], right_side: tuple[Expr, _Type], span: Span
    ) -> None:
        """Report ``==`` / ``!=`` / ``in`` between kinds that can never be equal."""
        (left_expr, left), (right_expr, right) = left_side, right_side
        if left is None or right is None or _kind(left) == _kind(right):
            return
        outcome = "always true" if op in ("!=", "not in") else "never true"
        self.report(
            TYPE_ERROR,
            f"`{op}` compares {_kind_article(_kind(left))} ({_describe(left_expr)}) with "
            f"{_kind_article(_kind(right))} ({_describe(right_expr)}): it is {outcome}",
            span,
        )

    def membership(self, node: Membership, guards: tuple[Path, ...]) -> None:
        op = "not in" if node.negated else "in"
        item = self.expr(node.item, guards)
        container = node.container
        match container:
            case ListLit(items=items):
                for literal in items:
                    self.same_kind(op, (node.item, item), (literal, _literal_type(literal)),
                                   literal.span)
                    if _is_action(node.item) and isinstance(literal, StringLit):
                        self.action_name(literal)
            case RangeLit():
                if item is not None and _kind(item) != "number":
                    self.report(
                        TYPE_ERROR,
                        f"a range holds numbers, but {_describe(node.item)} is {_article(item)}",
                        node.item.span,
                    )
            case Path():
                holder = self.path(container, guards, read=True)
                match holder:
                    case None:
                        pass
                    case ListType(element=element):
                        if item is not None and _kind(item) != _kind(element):
                            self.report(
                                TYPE_ERROR,
                                f"`{op}` looks for {_kind_article(_kind(item))} "
                                f"({_describe(node.item)}) in {_article(holder)} "
                                f"({_describe(container)}): it is never found",
                                node.span,
                            )
                    case MapType() | ObjectType():
                        if item is not None and _kind(item) != "string":
                            self.report(
                                TYPE_ERROR,
                                f"`{op}` on {_article(holder)} ({_describe(container)}) "
                                f"looks for a key, a string, but {_describe(node.item)} is "
                                f"{_article(item)}",
                                node.item.span,
                            )
                    case _:
                        self.report(
                            TYPE_ERROR,
                            f"`{op}` needs a list, map or object on its right, but "
                            f"{_describe(container)} is {_article(holder)}",
                            container.span,
                        )

    def action_name(self, literal: StringLit) -> None:
        actions = self.schema.actions
        if actions is None or literal.value in actions:
            return
        close = difflib.get_close_matches(literal.value, actions, n=1)
        if close:
            help_text = f"did you mean `{close[0]}`?"
        elif actions:
            shown = ", ".join(f"`{a}`" for a in actions[:8])
            help_text = f"the schema's actions are {shown}{', …' if len(actions) > 8 else ''}"
        else:
            help_text = "the schema lists no action"
        self.report(
            UNKNOWN_ACTION,
            f"unknown action `{literal.value}`: the schema does not list it",
            literal.span,
            help_text,
        )
