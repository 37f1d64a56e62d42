"""Value semantics of spec §5: normalising, equality, ordering, the `like` glob."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis.engine._values import (
    MISSING,
    EvalError,
    NormalizeError,
    glob_match,
    json_compare,
    json_equal,
    kind_of,
    normalize,
)

# ----------------------------------------------------------------------------- normalize


def test_normalize_converts_every_json_kind() -> None:
    value = normalize({"a": [1, 2.5, {"b": [True, None]}], "c": "x"})
    assert isinstance(value, Mapping)
    assert value["a"] == (Decimal(1), Decimal("2.5"), {"b": (True, None)})
    assert value["c"] == "x"
    assert isinstance(value["a"], tuple)


def test_normalize_keeps_booleans_apart_from_numbers() -> None:
    assert normalize(True) is True
    assert normalize(False) is False
    assert isinstance(normalize(1), Decimal)


def test_normalize_reads_floats_as_their_shortest_decimal() -> None:
    assert normalize(0.1) == Decimal("0.1")
    assert str(normalize(0.1)) == "0.1"
    assert normalize(1e300) == Decimal("1e300")


def test_normalize_keeps_large_integers_exact() -> None:
    big = 2**80 + 1
    assert normalize(big) == Decimal(big)
    assert normalize(10**5000) == Decimal(10**5000)


def test_normalize_result_is_read_only_and_a_copy() -> None:
    source = {"labels": {"a": "b"}, "roles": ["x"]}
    value = normalize(source)
    assert isinstance(value, Mapping)
    source["labels"]["a"] = "changed"
    source["roles"].append("y")
    labels = value["labels"]
    assert isinstance(labels, Mapping)
    assert labels["a"] == "b"
    assert value["roles"] == ("x",)
    with pytest.raises(TypeError):
        labels["a"] = "c"  # type: ignore[index]


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (float("nan"), "value"),
        (float("inf"), "value"),
        (Decimal("NaN"), "value"),
        ({"k": {1: "x"}}, "value.k"),
        ({"k": [1, {2}]}, "value.k[1]"),
        ({"k": b"bytes"}, "value.k"),
        ({"a.b": object()}, 'value["a.b"]'),
    ],
)
def test_normalize_rejects_what_is_not_json(bad: object, where: str) -> None:
    with pytest.raises(NormalizeError) as info:
        normalize(bad)
    assert info.value.path == where


def test_normalize_survives_deep_nesting() -> None:
    deep: object = "leaf"
    for _ in range(10_000):
        deep = [deep]
    value = normalize({"d": deep})
    assert isinstance(value, Mapping)
    inner = value["d"]
    for _ in range(10_000):
        assert isinstance(inner, tuple)
        inner = inner[0]
    assert inner == "leaf"
    assert json_equal(value, normalize({"d": deep}))


def test_normalize_rejects_a_value_that_contains_itself() -> None:
    """A cycle (possible in Python, never in JSON) is an error, not an endless copy."""
    loop: list[object] = ["x"]
    loop.append(loop)
    with pytest.raises(NormalizeError, match=r"`resource\.l\[1\]` contains itself"):
        normalize({"l": loop}, "resource")
    mapping: dict[str, object] = {}
    mapping["inner"] = {"back": mapping}
    with pytest.raises(NormalizeError, match="contains itself"):
        normalize(mapping)


def test_normalize_accepts_a_value_shared_by_two_places() -> None:
    shared = {"id": "p", "tags": ["a"]}
    value = normalize({"principal": shared, "owner": shared, "again": [shared, shared]})
    assert isinstance(value, Mapping)
    assert json_equal(value["principal"], value["owner"])


def test_an_engine_rejects_a_cyclic_request_at_once() -> None:
    from aegis.engine import InvalidRequestError, PolicyEngine

    engine = PolicyEngine.from_texts({"a.aegis": 'allow "a" { action == "a" }'})
    roles: list[object] = []
    roles.append(roles)
    request = {"principal": {"roles": roles}, "action": "a", "resource": {}}
    with pytest.raises(InvalidRequestError, match="contains itself"):
        engine.evaluate(request)


# ----------------------------------------------------------------------------- equality


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (Decimal("1.50"), 1.5, True),
        (0.1, Decimal("0.1"), True),
        (True, 1, False),
        (False, 0, False),
        (None, False, False),
        ("1", 1, False),
        ([1, 2], [1.0, 2.0], True),
        ([1, 2], [2, 1], False),
        ([True], [1], False),
        ({"a": 1, "b": [True]}, {"b": [True], "a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ([], {}, False),
        ("é", "e\u0301", False),
    ],
)
def test_json_equal(left: object, right: object, equal: bool) -> None:
    assert json_equal(normalize(left), normalize(right)) is equal
    assert json_equal(normalize(right), normalize(left)) is equal


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_json_equal_is_reflexive(value: object) -> None:
    assert json_equal(normalize(value), normalize(value))


@given(json_values, json_values)
def test_json_equal_is_symmetric(a: object, b: object) -> None:
    assert json_equal(normalize(a), normalize(b)) == json_equal(normalize(b), normalize(a))


@given(st.integers(), st.integers(min_value=-(2**60), max_value=2**60))
def test_numbers_are_equal_by_value_across_int_decimal_float(n: int, small: int) -> None:
    assert json_equal(normalize(n), normalize(Decimal(n)))
    assert json_equal(normalize(n), normalize(Decimal(f"{n}.0")))
    if abs(small) < 2**53:  # exactly representable as a float
        assert json_equal(normalize(small), normalize(float(small)))
    assert not json_equal(normalize(n), normalize(True))
    assert not json_equal(normalize(n), normalize(str(n)))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_equals_the_decimal_literal_that_prints_it(number: float) -> None:
    assert json_equal(normalize(number), Decimal(repr(number)))
    assert float(str(normalize(number))) == number  # the decimal reads back to the same float


# ----------------------------------------------------------------------------- ordering


def test_ordering_only_on_two_numbers_or_two_strings() -> None:
    assert json_compare(Decimal(1), Decimal("1.0")) == 0
    assert json_compare(Decimal("-2"), Decimal("1.5")) == -1
    assert json_compare("Zed", "m") == -1  # code-point order: "Z" < "m"
    assert json_compare("b", "a") == 1
    assert json_compare("1", Decimal(1)) is None
    assert json_compare(True, False) is None
    assert json_compare(None, None) is None
    assert json_compare((), ()) is None


@given(st.text(max_size=6), st.text(max_size=6))
def test_string_order_is_code_point_order(a: str, b: str) -> None:
    expected = [ord(c) for c in a] > [ord(c) for c in b]
    assert (json_compare(a, b) == 1) is expected


def test_kind_of() -> None:
    assert [kind_of(normalize(v)) for v in (None, True, 3, "s", [], {})] == [
        "null",
        "boolean",
        "number",
        "string",
        "list",
        "object",
    ]


# ----------------------------------------------------------------------------- glob


@pytest.mark.parametrize(
    ("subject", "pattern", "matched"),
    [
        ("production", "prod*", True),
        ("prod", "prod*", True),  # a star may match nothing
        ("pro", "prod*", False),
        ("a/b/c", "a*c", True),  # a star matches "/" too
        ("v1*", "v1\\*", True),  # \* is a literal star
        ("v1.2", "v1\\*", False),
        ("v1", "v1\\*", False),
        ("a\\b", "a\\b", True),  # a lone backslash matches itself
        ("a\\", "a\\", True),  # also at the end of the pattern
        ("\\*", "\\\\*", True),  # "\" then the pair "\*" (a literal star)
        ("\\x", "\\\\*", False),
        ("", "*", True),
        ("", "", True),
        ("x", "", False),
        ("abc", "*b*", True),
        ("abc", "a*b*c", True),
        ("ac", "a*b*c", False),
        ("aXbYc", "a*b*c", True),
        ("abab", "*ab", True),
        ("aab", "a*ab", True),
        ("ab", "a*ab", False),  # prefix and suffix may not overlap
        ("?", "?", True),  # no other metacharacters
        ("x", "?", False),
        ("[a]", "[a]", True),
    ],
)
def test_glob_match(subject: str, pattern: str, matched: bool) -> None:
    assert glob_match(subject, pattern) is matched


def test_glob_with_many_stars_against_a_long_string_does_not_backtrack() -> None:
    # With a backtracking matcher this takes astronomically long; here it is a few finds.
    subject = "a" * 100_000
    assert not glob_match(subject, "*a" * 50 + "b")
    assert glob_match(subject, "*a" * 50 + "*")
    assert not glob_match(subject + "c", "a*" * 50 + "b*c")


def _slow_glob(subject: str, pattern: str) -> bool:
    """Textbook dynamic programme over pattern tokens, written independently."""
    tokens: list[str | None] = []  # None is the wildcard
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\" and index + 1 < len(pattern) and pattern[index + 1] == "*":
            tokens.append("*")
            index += 2
        elif pattern[index] == "*":
            tokens.append(None)
            index += 1
        else:
            tokens.append(pattern[index])
            index += 1

    @cache
    def match(i: int, j: int) -> bool:
        if j == len(tokens):
            return i == len(subject)
        token = tokens[j]
        if token is None:
            return match(i, j + 1) or (i < len(subject) and match(i + 1, j))
        return i < len(subject) and subject[i] == token and match(i + 1, j + 1)

    return match(0, 0)


_glob_alphabet = st.sampled_from("ab*\\/")


@given(st.text(_glob_alphabet, max_size=12), st.text(_glob_alphabet, max_size=8))
def test_glob_matches_the_slow_reference(subject: str, pattern: str) -> None:
    assert glob_match(subject, pattern) == _slow_glob(subject, pattern)


@given(st.text("ab*", max_size=12), st.text("ab", max_size=4))
def test_glob_matches_a_regex_built_from_escaped_pieces(subject: str, literal: str) -> None:
    # A pattern without backslashes: "*" is ".*" and everything else is literal.
    pattern = f"*{literal}*"
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    assert glob_match(subject, pattern) == (re.fullmatch(regex, subject, re.DOTALL) is not None)


# ----------------------------------------------------------------------------- errors


def test_eval_errors_combine_order_independently() -> None:
    a = EvalError.of("`resource.x` is missing")
    b = EvalError.of("`principal.y` is missing")
    assert EvalError.union([a, b]) == EvalError.union([b, a])
    assert EvalError.union([a, b]).message == "`principal.y` is missing; `resource.x` is missing"
    assert EvalError.union([a, a]).message == "`resource.x` is missing"


def test_missing_is_a_singleton_with_a_plain_repr() -> None:
    assert repr(MISSING) == "MISSING"
    assert MISSING is not None


def test_nan_is_never_a_number_value() -> None:
    with pytest.raises(NormalizeError):
        normalize(math.nan)
