"""Lark parse tree → AST, in one Transformer (habit H6).

The transformer only builds nodes and reports problems local to a token (a bad escape, a
second ``reason``, an unknown time zone) as diagnostics; it never raises for user input. It
runs inline in the LALR parser (``Lark(transformer=...)``), so building the AST needs no
recursion however deep the input nests.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from lark import Token, Transformer

from aegis.lang import ast
from aegis.lang.diagnostics import Diagnostic, Span

__all__ = ["AstBuilder", "decode_string", "valid_timezones"]

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


def decode_string(raw: str) -> tuple[str, list[tuple[int, str]]]:
    """Decode the body of a string literal (without its quotes) per spec §2.

    Returns:
        The decoded text and a list of ``(offset, message)`` problems, the offset being that
        of the offending backslash inside ``raw``.
    """
    if "\\" not in raw:
        return raw, []  # the common case: no escape to decode
    out: list[str] = []
    problems: list[tuple[int, str]] = []
    i = 0
    n = len(raw)
    while i < n:
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1] if i + 1 < n else ""
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
            continue
        if nxt != "u":
            shown = nxt if nxt.isprintable() and nxt else f"U+{ord(nxt):04X}" if nxt else ""
            problems.append((i, f"invalid escape `\\{shown}` in string"))
            i += 2
            continue
        hex4 = raw[i + 2 : i + 6]
        if not _HEX4.fullmatch(hex4):
            problems.append((i, "a `\\u` escape needs exactly four hex digits"))
            i += 2
            continue
        code = int(hex4, 16)
        if 0xD800 <= code <= 0xDBFF:
            low = raw[i + 6 : i + 12]
            if low[:2] == "\\u" and _HEX4.fullmatch(low[2:]):
                low_code = int(low[2:], 16)
                if 0xDC00 <= low_code <= 0xDFFF:
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low_code - 0xDC00)))
                    i += 12
                    continue
            problems.append((i, f"lone surrogate `\\u{hex4}` in string"))
            i += 6
            continue
        if 0xDC00 <= code <= 0xDFFF:
            problems.append((i, f"lone surrogate `\\u{hex4}` in string"))
            i += 6
            continue
        out.append(chr(code))
        i += 6
    return "".join(out), problems


@lru_cache(maxsize=1)
def valid_timezones() -> frozenset[str]:
    """The IANA zone names known to this installation (tzdata)."""
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def _tok_span(file: str, tok: Token) -> Span:
    return Span(
        file,
        tok.line or 1,
        tok.column or 1,
        tok.end_line or tok.line or 1,
        tok.end_column or tok.column or 1,
    )


def _cover(file: str, first: Any, last: Any) -> Span:
    """The span from the start of ``first`` to the end of ``last`` (tokens or nodes)."""
    a = _tok_span(file, first) if isinstance(first, Token) else first.span
    b = _tok_span(file, last) if isinstance(last, Token) else last.span
    return Span(file, a.line, a.column, b.end_line, b.end_column)


class _Reason:
    __slots__ = ("span", "text")

    def __init__(self, text: str, span: Span) -> None:
        self.text = text
        self.span = span


class _Directive:
    __slots__ = ("span", "zone")

    def __init__(self, zone: str, span: Span) -> None:
        self.zone = zone
        self.span = span


class AstBuilder(Transformer[Token, ast.PolicyFile]):
    """Builds :class:`aegis.lang.ast.PolicyFile` from the parse, collecting diagnostics."""

    def __init__(self, file: str) -> None:
        super().__init__(visit_tokens=False)
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self.comments: list[tuple[Span, str]] = []

    def comment(self, tok: Token) -> Token:
        """Lexer callback: remember a comment (they are otherwise ignored by the grammar)."""
        self.comments.append((_tok_span(self.file, tok), tok.value))
        return tok

    # -- helpers ---------------------------------------------------------------------------
    def _error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, help=help))

    def _string(self, tok: Token) -> ast.StringLit:
        span = _tok_span(self.file, tok)
        value, problems = decode_string(tok.value[1:-1])
        for offset, message in problems:
            # INVARIANT: string tokens never span lines, so the column is start + 1 + offset.
            column = span.column + 1 + offset
            self._error(
                "invalid-escape",
                message,
                Span(self.file, span.line, column, span.line, column + 2),
                help='the escapes are \\" \\\\ \\n \\t and \\uXXXX',
            )
        return ast.StringLit(value, span)

    def _number(self, tok: Token) -> ast.NumberLit:
        span = _tok_span(self.file, tok)
        try:
            return ast.NumberLit(Decimal(tok.value), span)
        except InvalidOperation:  # pragma: no cover - the NUMBER regex admits only decimals
            self._error("invalid-number", f"invalid number `{tok.value}`", span)
            return ast.NumberLit(Decimal(0), span)

    # -- §3 file ---------------------------------------------------------------------------
    def start(self, children: list[Any]) -> ast.PolicyFile:
        directives = [c for c in children if isinstance(c, _Directive)]
        rules = [c for c in children if isinstance(c, ast.Rule)]
        zone: str | None = None
        zone_span: Span | None = None
        for i, d in enumerate(directives):
            if i == 0:
                zone, zone_span = d.zone, d.span
            else:
                self._error(
                    "duplicate-timezone",
                    "a file has at most one `timezone` directive",
                    d.span,
                    help=f"the first is at {directives[0].span}",
                )
        effective = zone if zone is not None else "UTC"
        if zone is not None:
            rules = [dataclasses.replace(r, timezone=effective) for r in rules]
        span = _cover(self.file, children[0], children[-1]) if children else Span(
            self.file, 1, 1, 1, 1
        )
        return ast.PolicyFile(self.file, zone, tuple(rules), span, zone_span)

    def directive(self, children: list[Token]) -> _Directive:
        lit = self._string(children[-1])
        if lit.value not in valid_timezones():
            self._error(
                "unknown-timezone",
                f"`{lit.value}` is not a time zone of the IANA database",
                lit.span,
                help='write a zone such as "UTC" or "Europe/Berlin"',
            )
        return _Directive(lit.value, lit.span)

    def rule(self, children: list[Any]) -> ast.Rule:
        annotations = tuple(c for c in children if isinstance(c, ast.Annotation))
        tokens = {c.type: c for c in children if isinstance(c, Token)}
        effect_tok, name_tok = tokens["EFFECT"], tokens["STRING"]
        name = self._string(name_tok)
        conditions: list[ast.Expr] = []
        reason: _Reason | None = None
        for item in children:
            if isinstance(item, (Token, ast.Annotation)):
                continue
            if isinstance(item, _Reason):
                if reason is not None:
                    self._error(
                        "duplicate-reason",
                        "a rule has at most one `reason`",
                        item.span,
                        help=f"the first is at {reason.span}",
                    )
                else:
                    reason = item
            else:
                conditions.append(item)
        return ast.Rule(
            "allow" if effect_tok.value == "allow" else "deny",
            name.value,
            tuple(conditions),
            reason.text if reason else None,
            annotations,
            "UTC",
            _cover(self.file, effect_tok, tokens["RBRACE"]),
            name.span,
            reason.span if reason else None,
        )

    def annotation(self, children: list[Token]) -> ast.Annotation:
        at, name_tok, value_tok, close = children
        value = self._string(value_tok)
        return ast.Annotation(name_tok.value, value.value, _cover(self.file, at, close))

    def reason(self, children: list[Token]) -> _Reason:
        keyword, text = children
        lit = self._string(text)
        return _Reason(lit.value, _cover(self.file, keyword, text))

    def condition(self, children: list[ast.Expr]) -> ast.Expr:
        return children[0]

    # -- §3 expressions --------------------------------------------------------------------
    def or_(self, children: list[ast.Expr]) -> ast.Or:
        return ast.Or(tuple(children), _cover(self.file, children[0], children[-1]))

    def and_(self, children: list[ast.Expr]) -> ast.And:
        return ast.And(tuple(children), _cover(self.file, children[0], children[-1]))

    def not_(self, children: list[Any]) -> ast.Not:
        keyword, operand = children
        return ast.Not(operand, _cover(self.file, keyword, operand))

    def has(self, children: list[Any]) -> ast.Has:
        keyword, path = children
        return ast.Has(path, _cover(self.file, keyword, path))

    def compare(self, children: list[Any]) -> ast.Compare:
        left, op, right = children
        return ast.Compare(op.value, left, right, _cover(self.file, left, right))

    def in_(self, children: list[Any]) -> ast.Membership:
        item, container = children
        return ast.Membership(item, container, False, _cover(self.file, item, container))

    def not_in(self, children: list[Any]) -> ast.Membership:
        item, _keyword, container = children
        return ast.Membership(item, container, True, _cover(self.file, item, container))

    def like(self, children: list[Any]) -> ast.Like:
        subject, pattern = children
        lit = self._string(pattern)
        return ast.Like(subject, lit, _cover(self.file, subject, lit))

    def list_lit(self, children: list[Any]) -> ast.ListLit:
        items = tuple(c for c in children[1:-1] if c is not None)
        return ast.ListLit(items, _cover(self.file, children[0], children[-1]))

    def range_lit(self, children: list[Token]) -> ast.RangeLit:
        low, high = (self._number(t) for t in children)
        return ast.RangeLit(low, high, _cover(self.file, low, high))

    def group(self, children: list[Any]) -> ast.Expr:
        inner: ast.Expr = children[1]
        return inner  # parentheses only group (spec §3): `(e)` is `e`

    def path(self, children: list[Token]) -> ast.Path:
        root = children[0]
        keys: list[str] = []
        key_spans: list[Span] = []
        i = 1
        while i < len(children):
            tok = children[i]
            if tok.type == "LSQB":
                lit = self._string(children[i + 1])
                keys.append(lit.value)
                key_spans.append(_cover(self.file, tok, children[i + 2]))
                i += 3
            else:
                span = _tok_span(self.file, tok)
                keys.append(tok.value)
                # the step `.key` includes its dot
                key_spans.append(
                    Span(self.file, span.line, span.column - 1, span.end_line, span.end_column)
                )
                i += 1
        end = key_spans[-1] if key_spans else _tok_span(self.file, root)
        start = _tok_span(self.file, root)
        span = Span(self.file, start.line, start.column, end.end_line, end.end_column)
        return ast.Path(root.value, tuple(keys), span, tuple(key_spans))

    # -- §3 literals -----------------------------------------------------------------------
    def string(self, children: list[Token]) -> ast.StringLit:
        return self._string(children[0])

    def number(self, children: list[Token]) -> ast.NumberLit:
        return self._number(children[0])

    def true(self, children: list[Token]) -> ast.BoolLit:
        return ast.BoolLit(True, _tok_span(self.file, children[0]))

    def false(self, children: list[Token]) -> ast.BoolLit:
        return ast.BoolLit(False, _tok_span(self.file, children[0]))
