"""The canonical formatter.

One spelling for every construct, so that reviews show meaning and not layout:

- a ``timezone`` directive first, then one blank line between rules;
- annotations on their own lines, then ``allow "name" {``, one condition per line indented by
  four spaces, the ``reason`` last, ``}``; an empty rule is ``allow "name" {}``;
- single spaces around operators, lists on one line without a trailing comma, ranges as
  ``8..19``, paths as ``.key`` where the key is a plain word and ``["key"]`` otherwise;
- strings escaped minimally (``\\"``, ``\\\\``, ``\\n``, ``\\t``, other control characters as
  ``\\uXXXX``), numbers as written (``3.0`` stays ``3.0``);
- parentheses exactly where the structure needs them.

Comments are kept: a comment on its own line stays before the item that follows it, a comment
at the end of a line stays at the end of that item's line.

Formatting is idempotent, and parsing the output gives the same rules (spec §8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aegis.lang import ast
from aegis.lang.diagnostics import Span

__all__ = ["format_expr", "format_policy", "format_rule", "format_string"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDENT = "    "


def format_string(value: str) -> str:
    """A string literal for ``value``, minimally escaped."""
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # the common case: nothing to escape
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() and ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        elif not ch.isprintable():
            code = ord(ch) - 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _literal(lit: ast.Literal) -> str:
    match lit:
        case ast.StringLit(value=value):
            return format_string(value)
        case ast.BoolLit(value=value):
            return "true" if value else "false"
        case ast.NumberLit(value=value):
            return format(value, "f")
    raise TypeError(f"not a literal: {lit!r}")  # pragma: no cover


def _path(path: ast.Path) -> str:
    parts = [path.root]
    for key in path.keys:
        parts.append(f".{key}" if _IDENT.fullmatch(key) else f"[{format_string(key)}]")
    return "".join(parts)


# Binding strength: or < and < not/has < comparison < operand.
_OR, _AND, _NEG, _CMP, _ATOM = range(5)


def _level(expr: ast.Expr) -> int:
    match expr:
        case ast.Or():
            return _OR
        case ast.And():
            return _AND
        case ast.Not() | ast.Has():
            return _NEG
        case ast.Compare() | ast.Membership() | ast.Like():
            return _CMP
    return _ATOM


def _wrap(expr: ast.Expr, needed: int, *, strict: bool = False) -> str:
    """Format ``expr`` in a position that needs at least binding ``needed``.

    With ``strict``, an expression of exactly that level is parenthesised too: a chain nested
    in a chain of the same operator was written with parentheses, and keeps them.
    """
    text = format_expr(expr)
    level = _level(expr)
    if level < needed or (strict and level == needed):
        return f"({text})"
    return text


def format_expr(expr: ast.Expr) -> str:
    """The canonical text of one expression."""
    match expr:
        case ast.StringLit() | ast.NumberLit() | ast.BoolLit():
            return _literal(expr)
        case ast.Path():
            return _path(expr)
        case ast.Or(operands=ops):
            return " or ".join(_wrap(op, _OR, strict=True) for op in ops)
        case ast.And(operands=ops):
            return " and ".join(_wrap(op, _AND, strict=True) for op in ops)
        case ast.Not(operand=operand):
            return f"not {_wrap(operand, _NEG)}"
        case ast.Has(path=path):
            return f"has {_path(path)}"
        case ast.Compare(op=op, left=left, right=right):
            return f"{_wrap(left, _ATOM)} {op} {_wrap(right, _ATOM)}"
        case ast.Membership(item=item, container=container, negated=negated):
            keyword = "not in" if negated else "in"
            return f"{_wrap(item, _ATOM)} {keyword} {_container(container)}"
        case ast.Like(subject=subject, pattern=pattern):
            return f"{_wrap(subject, _ATOM)} like {format_string(pattern.value)}"
    raise TypeError(f"not an expression: {expr!r}")  # pragma: no cover


def _container(container: ast.ListLit | ast.RangeLit | ast.Path) -> str:
    match container:
        case ast.ListLit(items=items):
            return "[" + ", ".join(_literal(i) for i in items) + "]"
        case ast.RangeLit(low=low, high=high):
            return f"{_literal(low)}..{_literal(high)}"
        case ast.Path():
            return _path(container)
    raise TypeError(f"not a container: {container!r}")  # pragma: no cover


class _Comments:
    """Hands out a file's comments in order, by line."""

    def __init__(self, comments: Iterable[tuple[Span, str]]) -> None:
        self._items = sorted(comments, key=lambda c: (c[0].line, c[0].column))
        self._next = 0

    def before(self, line: int) -> list[str]:
        """Comments on lines before ``line`` not yet handed out."""
        out: list[str] = []
        while self._next < len(self._items) and self._items[self._next][0].line < line:
            out.append(self._items[self._next][1].rstrip())
            self._next += 1
        return out

    def through(self, line: int) -> list[str]:
        """Comments on lines up to and including ``line`` not yet handed out."""
        return self.before(line + 1)

    def rest(self) -> list[str]:
        return self.before(1 << 62)


def _item_lines(text: str, span: Span | None, comments: _Comments, indent: str) -> list[str]:
    lines: list[str] = []
    if span is not None:
        lines.extend(indent + c for c in comments.before(span.line))
        inside = comments.through(span.end_line)
        lines.extend(indent + c for c in inside[:-1])
        if inside:
            return [*lines, f"{indent}{text}  {inside[-1]}"]
    return [*lines, indent + text]


def _rule_lines(rule: ast.Rule, comments: _Comments) -> list[str]:
    lines = [f"@{a.name}({format_string(a.value)})" for a in rule.annotations]
    header = f"{rule.effect} {format_string(rule.name)} {{"
    items: list[tuple[str, Span | None]] = [(format_expr(c), c.span) for c in rule.conditions]
    if rule.reason is not None:
        items.append((f"reason {format_string(rule.reason)}", rule.reason_span))
    known = rule.span.line > 0 and rule.span.file != "<unknown>"
    header_comments = comments.through(rule.span.line) if known else []
    first_item_line = min((s.line for _, s in items if s is not None), default=None)
    if header_comments and first_item_line == rule.span.line:
        # a comment after an item written on the header line belongs to that item
        comments._next -= len(header_comments)
        header_comments = []
    lines.extend(header_comments[:-1])
    trailing = f"  {header_comments[-1]}" if header_comments else ""
    body: list[str] = []
    for text, span in sorted(items, key=lambda i: _order(i[0])):
        body.extend(_item_lines(text, span if known else None, comments, _INDENT))
    closing = comments.before(rule.span.end_line) if known else []
    body.extend(_INDENT + c for c in closing)
    end_comments = comments.through(rule.span.end_line) if known else []
    end_trailing = f"  {end_comments[-1]}" if end_comments else ""
    if not body:
        lines.append(f"{header[:-1]}{{}}{trailing or end_trailing}")
        return lines
    lines.append(header + trailing)
    lines.extend(body)
    lines.append("}" + end_trailing)
    return lines


def _order(text: str) -> int:
    return 1 if text.startswith("reason ") else 0


def format_rule(rule: ast.Rule) -> str:
    """The canonical text of one rule (without its file's ``timezone`` directive)."""
    return "\n".join(_rule_lines(rule, _Comments(()))) + "\n"


def format_policy(policy: ast.PolicyFile) -> str:
    """The canonical text of a whole file, comments kept.

    Usage::

        from aegis.lang import parse_policy, format_policy
        print(format_policy(parse_policy('allow "a" { action == "read" }')))
    """
    comments = _Comments(policy.comments)
    blocks: list[list[str]] = []
    if policy.timezone is not None:
        directive_line = policy.timezone_span.line if policy.timezone_span else 1
        head = comments.before(directive_line)
        if head:
            blocks.append(head)
        trailing = comments.through(directive_line)
        blocks.append([f"timezone {format_string(policy.timezone)}" + (
            f"  {trailing[-1]}" if trailing else "")])
        if len(trailing) > 1:  # pragma: no cover - one line holds one comment
            blocks[-1][:0] = trailing[:-1]
    for rule in policy.rules:
        lead = comments.before(min([rule.span.line, *(a.span.line for a in rule.annotations)]))
        block = [*lead, *_rule_lines(rule, comments)]
        blocks.append(block)
    tail = comments.rest()
    if tail:
        blocks.append(tail)
    return "\n\n".join("\n".join(b) for b in blocks) + "\n" if blocks else ""
