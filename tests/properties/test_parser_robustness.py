"""Arbitrary text never makes the parser raise anything but the library's diagnostic error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.lang import PolicyLoadError, load_texts, parse_policy

TOKENS = [
    'allow "a" {',
    'deny "b" {',
    "}",
    "{",
    "(",
    ")",
    "[",
    "]",
    ",",
    "..",
    ".",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "!",
    "and",
    "or",
    "not",
    "in",
    "not in",
    "like",
    "has",
    "reason",
    "timezone",
    '"UTC"',
    '"x\\u00e9"',
    '"\\q"',
    '"open',
    "true",
    "false",
    "principal",
    "action",
    "resource",
    "context",
    "time",
    ".roles",
    '["k"]',
    "1",
    "-2.5",
    "1e3",
    ".5",
    '@owner("x")',
    "#c\n",
    "\n",
    " ",
    "\t",
    "\u00e9",
    "\x00",
    "\ud800",
]


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_arbitrary_text(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyLoadError as exc:
        assert exc.diagnostics
        for diagnostic in exc.diagnostics:
            assert diagnostic.span.line >= 1 and diagnostic.span.column >= 1
            str(diagnostic)


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
@settings(max_examples=500)
def test_token_soup(text: str) -> None:
    try:
        load_texts({"soup.aegis": text})
    except PolicyLoadError as exc:
        assert exc.diagnostics
        assert all(d.span.file == "soup.aegis" for d in exc.diagnostics)
