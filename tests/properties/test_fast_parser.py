"""The fast parser builds exactly the tree of the Lark grammar — nodes, spans and comments —
or declines (``None``), never something else."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from _strategies import rule_sets
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.lang import ast, format_policy
from aegis.lang._fastparse import fast_parse
from aegis.lang._parser import lark_parse
from aegis.lang.diagnostics import Span


def spans(node: Any) -> list[Any]:
    """Every span in a tree, in a fixed order (spans take no part in equality)."""
    out: list[Any] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Span):
            out.append(item)
        elif isinstance(item, tuple | list):
            stack.extend(reversed(item))
        elif dataclasses.is_dataclass(item):
            for f in dataclasses.fields(item):
                stack.append(getattr(item, f.name))
    return out


def same_as_lark(text: str) -> None:
    fast = fast_parse(text, "f.aegis")
    slow, diagnostics = lark_parse(text, "f.aegis")
    if fast is None:
        return  # declining is always allowed: Lark parses (and explains) it
    assert not diagnostics, diagnostics
    assert fast == slow
    assert spans(fast) == spans(slow)
    assert fast.comments == slow.comments  # type: ignore[union-attr]


WHITESPACE = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", " # note\n", "\n\n  "])


@given(rule_sets(max_size=6), st.data())
@settings(max_examples=300, deadline=None)
def test_fast_parser_equals_lark_on_generated_files(rules: list[ast.Rule], data: Any) -> None:
    text = format_policy(ast.PolicyFile("f.aegis", None, tuple(rules)))
    # re-space the canonical text: every single space becomes some other whitespace
    pieces = text.split(" ")
    spaced = pieces[0] + "".join(data.draw(WHITESPACE) + p for p in pieces[1:])
    same_as_lark(text)
    same_as_lark(spaced)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# only a comment\n",
        'timezone "Europe/Berlin"\n\n# c\n@owner("x") @in("y")\nallow "a" { action == "x" }',
        'allow "a" { resource.a not\n   in [1, 2,] }  # tail',
        'allow "a" { resource["x.y"] . z like "p*" reason "r" }',
        'deny "b" { not not has context.x and (resource.a or resource.b) -3 true }',
        'allow "c" { resource.not in [1] }',  # `not in` where a key is expected: declined
        'allow "d" { resource.a = 1 }',  # a syntax error: declined
        'allow "e" { resource.a == "\\q" }',  # a bad escape: declined
        'timezone "Mars/Olympus" allow "f" {}',  # an unknown zone: declined
        'allow "g" { reason "a" reason "b" }',  # a second reason: declined
        'allow "h" { 1.5..2 }',
        'allow "i" { resource.h in 0.5..19 resource.x in resource.y }',
        'allow "j" {}\ntimezone "UTC"',
    ],
)
def test_fast_parser_equals_lark_on_tricky_files(text: str) -> None:
    same_as_lark(text)


def test_fast_parser_takes_the_common_case() -> None:
    text = 'timezone "UTC"\n@o("x")\nallow "a" {\n    action in ["a", "b"]  # c\n}\n'
    assert fast_parse(text, "f.aegis") is not None
