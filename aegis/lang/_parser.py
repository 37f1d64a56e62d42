"""The parser: text → :class:`aegis.lang.ast.PolicyFile`, every problem as a diagnostic.

The grammar (``grammar.lark``) is loaded once per thread with Lark's LALR parser and the AST
builder inlined, so parsing and building never recurse, however deeply the input nests. After
a syntax error the parser resumes at the next line that starts a rule (``allow``, ``deny`` or an
annotation), so one load reports the errors of every rule, not only the first.

Limits (documented in docs/language.md): a file of at most :data:`MAX_FILE_BYTES`; expressions
nested at most :data:`MAX_DEPTH` deep; at most :data:`MAX_SYNTAX_ERRORS` syntax errors reported
per file.
"""

from __future__ import annotations

import dataclasses
import re
import threading

from lark import Lark
from lark.exceptions import UnexpectedInput

from aegis.lang import ast
from aegis.lang._fastparse import fast_parse
from aegis.lang._syntax_errors import describe
from aegis.lang._transformer import AstBuilder
from aegis.lang.diagnostics import Diagnostic, Span

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_SYNTAX_ERRORS", "lark_parse", "parse_text"]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest policy file the library reads (4 MiB; sets of 10,000 rules take about 2 MiB)."""

MAX_DEPTH = 64
"""The deepest an expression may nest (each ``not``, ``and``/``or`` chain, operator is a level)."""

MAX_SYNTAX_ERRORS = 50
"""Syntax errors reported per file before the parser gives up on the rest of it."""

_RULE_START = re.compile(r"(?m)^[ \t]*(?:@|allow\b|deny\b)")
_NOT_NEWLINE = re.compile(r"[^\n]+")
# strings and comments are skipped, so only real parentheses count
_PARENS = re.compile(r'"(?:[^"\\\n\r]|\\[^\n\r])*"|#[^\n]*|[()]')
_local = threading.local()


def _parser() -> tuple[Lark, AstBuilder]:
    cached: tuple[Lark, AstBuilder] | None = getattr(_local, "parser", None)
    if cached is None:
        builder = AstBuilder("<string>")
        lark = Lark.open_from_package(
            "aegis.lang",
            "grammar.lark",
            parser="lalr",
            lexer="contextual",
            propagate_positions=False,
            maybe_placeholders=False,
            transformer=builder,
            lexer_callbacks={"COMMENT": builder.comment},
        )
        cached = (lark, builder)
        _local.parser = cached
    return cached


def _depth_error(rule: ast.Rule) -> Diagnostic | None:
    stack: list[tuple[ast.Expr, int]] = [(c, 1) for c in rule.conditions]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return Diagnostic(
                "too-deep",
                f"expression nested more than {MAX_DEPTH} levels deep",
                node.span,
                help="split the condition into several conditions or rules",
            )
        stack.extend((child, depth + 1) for child in ast.walk_children(node))
    return None


def parse_text(
    text: str, file: str = "<string>"
) -> tuple[ast.PolicyFile | None, list[Diagnostic]]:
    """Parse one file's text.

    Returns:
        The file (``None`` when it has a syntax error) and every diagnostic found, unsorted.
        A file returned with diagnostics is not loadable either; callers refuse it whole.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        return None, [
            Diagnostic(
                "file-too-large",
                f"file is {size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}",
                Span(file, 1, 1, 1, 1),
                help="split the policy set into several files",
            )
        ]
    too_deep = _paren_depth_error(text, file)
    if too_deep is not None:
        return None, [too_deep]
    fast = fast_parse(text, file)
    if fast is not None:
        # INVARIANT: without parentheses an expression nests at most four levels plus its
        # run of `not`s, so a file with neither cannot be too deep
        if "(" not in text and text.count("not") < MAX_DEPTH - 8:
            return fast, []
        errors = [e for e in map(_depth_error, fast.rules) if e is not None]
        return (None, errors) if errors else (fast, [])
    return lark_parse(text, file)


def lark_parse(
    text: str, file: str = "<string>"
) -> tuple[ast.PolicyFile | None, list[Diagnostic]]:
    """:func:`parse_text` through the Lark grammar alone (the fast path's oracle)."""
    lark, builder = _parser()
    builder.file = file
    builder.diagnostics = []
    builder.comments = []
    diagnostics: list[Diagnostic] = []
    tree: ast.PolicyFile | None = None
    source = text
    restart = -1
    syntax_errors = 0
    while True:
        try:
            result = lark.parse(source)
        except UnexpectedInput as exc:
            diagnostics.append(describe(lark, exc, text, file))
            syntax_errors += 1
            position = _error_offset(exc, source)
            resume = _resume_offset(text, position, restart)
            if resume is None or syntax_errors >= MAX_SYNTAX_ERRORS:
                break
            restart = resume
            # INVARIANT: blanking everything before `resume` but its newlines keeps every later
            # offset, line and column where it was.
            source = _NOT_NEWLINE.sub(lambda m: " " * len(m[0]), text[:resume]) + text[resume:]
            continue
        if syntax_errors == 0:
            assert isinstance(result, ast.PolicyFile)
            tree = dataclasses.replace(result, comments=tuple(builder.comments))
        break
    diagnostics.extend(builder.diagnostics)
    builder.diagnostics = []
    if tree is not None:
        for rule in tree.rules:
            error = _depth_error(rule)
            if error is not None:
                diagnostics.append(error)
    return (tree if not diagnostics else None), diagnostics


def _paren_depth_error(text: str, file: str) -> Diagnostic | None:
    if text.count("(") <= MAX_DEPTH:
        return None
    depth = 0
    for match in _PARENS.finditer(text):
        lexeme = match[0]
        if lexeme == "(":
            depth += 1
            if depth > MAX_DEPTH:
                offset = match.start()
                line = text.count("\n", 0, offset) + 1
                column = offset - (text.rfind("\n", 0, offset) + 1) + 1
                return Diagnostic(
                    "too-deep",
                    f"parentheses nested more than {MAX_DEPTH} levels deep",
                    Span(file, line, column, line, column + 1),
                    help="split the condition into several conditions or rules",
                )
        elif lexeme == ")":
            depth = max(0, depth - 1)
    return None


def _error_offset(exc: UnexpectedInput, source: str) -> int:
    pos = getattr(exc, "pos_in_stream", None)
    if isinstance(pos, int) and pos >= 0:
        return pos
    token = getattr(exc, "token", None)
    start = getattr(token, "start_pos", None)
    if isinstance(start, int) and start >= 0:
        return start
    return len(source)


def _resume_offset(text: str, error_at: int, last_restart: int) -> int | None:
    """The start of the first line after the error that begins a rule, if any."""
    for match in _RULE_START.finditer(text, max(0, text.rfind("\n", 0, error_at) + 1)):
        keyword_at = match.end() - 1
        line_start = match.start()
        if keyword_at >= error_at and line_start > last_restart:
            return line_start
    return None
