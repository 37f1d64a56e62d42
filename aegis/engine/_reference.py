"""The reference interpreter: spec §5–§6, read literally, over :mod:`aegis.lang.ast` nodes.

This is the oracle the optimised evaluator is tested against (habit H8), so it favours
clarity over speed: every operand is evaluated, nothing is reordered or cached except the
``time`` view (which :class:`~aegis.engine.request.Request` computes once per zone).

Results are JSON values, :data:`~aegis.engine._values.MISSING` (a path that does not exist)
or :class:`~aegis.engine._values.EvalError`. Operators turn ``MISSING`` into an error when
they need a value; only ``has`` looks at ``MISSING`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from aegis.engine._combine import Outcome, RuleResult
from aegis.engine._values import (
    MISSING,
    EvalError,
    JsonValue,
    Missing,
    Result,
    glob_match,
    json_compare,
    json_equal,
    kind_of,
)
from aegis.engine.request import Request
from aegis.lang import ast
from aegis.lang.formatter import format_expr

__all__ = ["evaluate_expr", "evaluate_rule"]


def evaluate_rule(rule: ast.Rule, request: Request) -> RuleResult:
    """A rule's outcome (§6): its conditions combined with ``and`` (none: a match)."""
    result = _and([_as_bool(evaluate_expr(c, request, rule.timezone), c) for c in rule.conditions])
    if isinstance(result, EvalError):
        return RuleResult(rule.name, rule.effect, Outcome.ERROR, rule.reason, result.message)
    return RuleResult(
        rule.name, rule.effect, Outcome.MATCH if result else Outcome.NO_MATCH, rule.reason
    )


def evaluate_expr(expr: ast.Expr, request: Request, zone: str) -> Result:
    """The value of ``expr`` for ``request``, ``time`` seen in ``zone`` (§5)."""
    match expr:
        case ast.StringLit() | ast.NumberLit() | ast.BoolLit():
            return expr.value
        case ast.Path():
            return _read(expr, request, zone)
        case ast.Compare(op=op, left=left, right=right):
            return _compare(op, left, right, request, zone)
        case ast.Membership(item=item, container=container, negated=negated):
            found = _membership(item, container, request, zone)
            if isinstance(found, EvalError):
                return found
            return not found if negated else found
        case ast.Like(subject=subject, pattern=pattern):
            text = _as_value(evaluate_expr(subject, request, zone), subject)
            if isinstance(text, EvalError):
                return text
            if not isinstance(text, str):
                return EvalError.of(
                    f"`{format_expr(subject)}` is {_a(kind_of(text))}, not a string, "
                    "so `like` cannot match it"
                )
            return glob_match(text, pattern.value)
        case ast.Has(path=path):
            # §5: `has` never errors; a null value exists.
            return _read(path, request, zone) is not MISSING
        case ast.Not(operand=operand):
            truth = _as_bool(evaluate_expr(operand, request, zone), operand)
            if isinstance(truth, EvalError):
                return truth
            return not truth
        case ast.And(operands=operands):
            return _and([_as_bool(evaluate_expr(o, request, zone), o) for o in operands])
        case ast.Or(operands=operands):
            return _or([_as_bool(evaluate_expr(o, request, zone), o) for o in operands])
    raise TypeError(f"not an expression: {expr!r}")  # pragma: no cover - exhaustive above


# --------------------------------------------------------------------------- paths


def _root(root: str, request: Request, zone: str) -> JsonValue:
    match root:
        case "principal":
            return request.principal
        case "action":
            return request.action
        case "resource":
            return request.resource
        case "context":
            return request.context
        case "time":
            return request.time_view(zone)
    raise ValueError(f"unknown path root `{root}`")


def _read(path: ast.Path, request: Request, zone: str) -> JsonValue | Missing:
    """§4: a path through a missing key or a non-object is missing."""
    value = _root(path.root, request, zone)
    for key in path.keys:
        if not isinstance(value, Mapping) or key not in value:
            return MISSING
        value = value[key]
    return value


# --------------------------------------------------------------------------- operands


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _as_value(result: Result, expr: ast.Expr) -> JsonValue | EvalError:
    """A value an operator can use: ``MISSING`` becomes an error naming the path."""
    if isinstance(result, Missing):
        return EvalError.of(f"`{format_expr(expr)}` is missing")
    return result


def _as_bool(result: Result, expr: ast.Expr) -> bool | EvalError:
    """A boolean operand of a condition, ``not``, ``and`` or ``or`` (§5)."""
    value = _as_value(result, expr)
    if isinstance(value, EvalError | bool):
        return value
    return EvalError.of(f"`{format_expr(expr)}` is {_a(kind_of(value))}, not a boolean")


def _and(values: list[bool | EvalError]) -> bool | EvalError:
    """§5: false if either is false; else error if either errors; else true."""
    if any(v is False for v in values):
        return False
    errors = [v for v in values if isinstance(v, EvalError)]
    return EvalError.union(errors) if errors else True


def _or(values: list[bool | EvalError]) -> bool | EvalError:
    """§5: true if either is true; else error if either errors; else false."""
    if any(v is True for v in values):
        return True
    errors = [v for v in values if isinstance(v, EvalError)]
    return EvalError.union(errors) if errors else False


# --------------------------------------------------------------------------- operators


def _compare(
    op: str, left: ast.Expr, right: ast.Expr, request: Request, zone: str
) -> bool | EvalError:
    lhs = _as_value(evaluate_expr(left, request, zone), left)
    rhs = _as_value(evaluate_expr(right, request, zone), right)
    errors = [v for v in (lhs, rhs) if isinstance(v, EvalError)]
    if errors:
        return EvalError.union(errors)
    assert not isinstance(lhs, EvalError)
    assert not isinstance(rhs, EvalError)
    if op == "==":
        return json_equal(lhs, rhs)
    if op == "!=":
        return not json_equal(lhs, rhs)
    order = json_compare(lhs, rhs)
    if order is None:
        return EvalError.of(
            f"cannot order {_a(kind_of(lhs))} and {_a(kind_of(rhs))} "
            f"in `{format_expr(ast.Compare(op, left, right))}`"  # type: ignore[arg-type]
        )
    match op:
        case "<":
            return order < 0
        case "<=":
            return order <= 0
        case ">":
            return order > 0
        case ">=":
            return order >= 0
    raise ValueError(f"unknown comparison `{op}`")


def _membership(
    item: ast.Expr,
    container: ast.ListLit | ast.RangeLit | ast.Path,
    request: Request,
    zone: str,
) -> bool | EvalError:
    """``item in container`` before any ``not`` (§5)."""
    value = _as_value(evaluate_expr(item, request, zone), item)
    match container:
        case ast.ListLit(items=items):
            if isinstance(value, EvalError):
                return value
            return any(json_equal(value, literal.value) for literal in items)
        case ast.RangeLit(low=low, high=high):
            if isinstance(value, EvalError):
                return value
            if not isinstance(value, Decimal):
                return EvalError.of(
                    f"`{format_expr(item)}` is {_a(kind_of(value))}, not a number, "
                    "so it cannot be in a range"
                )
            return low.value <= value <= high.value
        case ast.Path():
            collection = _as_value(_read(container, request, zone), container)
            errors = [v for v in (value, collection) if isinstance(v, EvalError)]
            if not isinstance(collection, EvalError) and not isinstance(
                collection, tuple | Mapping
            ):
                errors.append(
                    EvalError.of(
                        f"`{format_expr(container)}` is {_a(kind_of(collection))}, "
                        "not a list or an object"
                    )
                )
            if errors:
                return EvalError.union(errors)
            assert not isinstance(value, EvalError)
            if isinstance(collection, tuple):
                return any(json_equal(value, element) for element in collection)
            assert isinstance(collection, Mapping)
            # An object: `x` is one of its keys; a non-string `x` is simply not a key.
            return isinstance(value, str) and value in collection
    raise TypeError(f"not a set: {container!r}")  # pragma: no cover - exhaustive above
