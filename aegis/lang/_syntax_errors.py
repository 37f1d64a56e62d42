"""Lark's parse errors → friendly diagnostics (habit H7).

A syntax error points at the first token that cannot continue the parse. Known mistakes get a
message of their own (a missing ``}``, ``=`` for ``==``, ``!in`` for ``not in``, a list outside
``in``, an unterminated string, a malformed number); anything else falls back to "expected one
of …" with terminal names turned back into their source spelling.
"""

from __future__ import annotations

import re

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from aegis.lang.diagnostics import Diagnostic, Span

__all__ = ["describe"]

_FRIENDLY = {
    "STRING": "a string",
    "NUMBER": "a number",
    "IDENT": "an attribute name",
    "ROOT": "a path",
    "CMPOP": "a comparison operator",
    "EFFECT": "`allow` or `deny`",
    "NOT_IN": "`not in`",
    "$END": "end of file",
}
_NUMBERISH = re.compile(r"[-+]?[0-9.]+[0-9A-Za-z_.]*|[-+.][0-9][0-9A-Za-z_.]*")


def _spelling(parser: Lark, name: str) -> str:
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    for term in parser.terminals:
        if term.name == name and isinstance(term.pattern, PatternStr):
            return f"`{term.pattern.value}`"
    return name.lower()


def _expected(parser: Lark, names: set[str] | frozenset[str]) -> str:
    spelled = sorted({_spelling(parser, n) for n in names})
    if not spelled:
        return ""
    if len(spelled) == 1:
        return f"expected {spelled[0]}"
    return "expected one of " + ", ".join(spelled)


def describe(parser: Lark, exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """Turn one Lark error into a diagnostic with code ``syntax``."""
    line = exc.line if isinstance(exc.line, int) and exc.line > 0 else 1
    column = exc.column if isinstance(exc.column, int) and exc.column > 0 else 1
    help_text: str | None = None

    if isinstance(exc, UnexpectedCharacters):
        rest = text[exc.pos_in_stream :]
        ch = rest[:1]
        width = 1
        if ch == '"':
            end = rest.find("\n")
            width = len(rest if end < 0 else rest[:end]) or 1
            message = "unterminated string"
            help_text = "a string ends on the line where it starts; write a newline as `\\n`"
        elif rest.startswith("!in") or re.match(r"!\s+in\b", rest):
            message = "`!in` is not an operator"
            help_text = "write `not in`"
        elif ch == "=" and not rest.startswith("=="):
            message = "unexpected `=`"
            help_text = "compare with `==`"
        elif ch == "!" and not rest.startswith("!="):
            message = "unexpected `!`"
            help_text = "negate with `not`, or compare with `!=`"
        elif ch and (match := _NUMBERISH.match(rest)) and any(c.isdigit() for c in match[0]):
            width = len(match[0])
            message = f"invalid number `{match[0]}`"
            help_text = "numbers are written like `42`, `-3` or `0.75`"
        else:
            shown = ch if ch.isprintable() else f"U+{ord(ch):04X}"
            message = f"unexpected character `{shown}`"
            help_text = _expected(parser, exc.allowed or set()) or None
        span = Span(file, line, column, line, column + width)
        return Diagnostic("syntax", message, span, help=help_text)

    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        expected: set[str] = set(exc.expected or ())
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
            if "RBRACE" in expected:
                message = "unexpected end of file: a rule is missing its closing `}`"
            else:
                message = "unexpected end of file"
                help_text = _expected(parser, expected) or None
            return Diagnostic("syntax", message, Span(file, line, column, line, column), help_text)
        value = str(tok.value)
        end_column = (tok.end_column or column + len(value)) if tok.end_line == tok.line else (
            column + 1
        )
        span = Span(file, line, column, line, max(end_column, column + 1))
        if tok.type == "LSQB" and "LSQB" not in expected:
            message = "a list can only appear on the right of `in` or `not in`"
        elif value in ("allow", "deny") and "RBRACE" in expected:
            message = f"unexpected `{value}`: the rule before it is missing its closing `}}`"
        elif tok.type == "REASON" and "STRING" in expected:
            message = "unexpected `reason`"
            help_text = _expected(parser, expected)
        else:
            shown = value if len(value) <= 40 else value[:37] + "..."
            shown = shown.replace("\n", "\\n")
            message = f"unexpected `{shown}`"
            help_text = _expected(parser, expected) or None
        return Diagnostic("syntax", message, span, help=help_text)

    if isinstance(exc, UnexpectedEOF):  # pragma: no cover - LALR reports $END as a token
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        span = Span(file, line, column, line, column)
        return Diagnostic("syntax", "unexpected end of file", span)

    return Diagnostic(  # pragma: no cover - every UnexpectedInput subclass is handled above
        "syntax", "syntax error", Span(file, line, column, line, column + 1)
    )

