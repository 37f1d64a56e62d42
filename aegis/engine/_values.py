"""Value semantics of spec §5: JSON values, equality, ordering, glob matching, errors.

The evaluation domain is JSON with exact numbers:

===========  ==========================================
JSON         Python representation
===========  ==========================================
null         ``None``
true/false   ``bool``
number       :class:`decimal.Decimal` (never ``int``/``float``)
string       ``str``
array        ``tuple`` of values
object       read-only ``Mapping[str, value]``
===========  ==========================================

Numbers are ``Decimal`` so that ``1 == 1.0`` by value and large integers are never rounded; a
request's float is read as the shortest decimal that prints it (``Decimal(repr(f))``), so a
request's ``0.1`` equals the literal ``0.1``. Because Python's ``bool`` is an ``int`` (and
``Decimal(1) == True`` holds in Python), equality and ordering here never use ``==`` across
kinds: values of different kinds are unequal (``true != 1``).

A path that does not exist evaluates to :data:`MISSING`; an operator that cannot be applied
yields an :class:`EvalError`. Both are results, not exceptions: the three-valued logic of §5
needs to look at them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Final, TypeAlias

from aegis.lang.formatter import format_string

__all__ = [
    "MISSING",
    "EvalError",
    "JsonValue",
    "Missing",
    "Result",
    "glob_match",
    "json_compare",
    "json_equal",
    "kind_of",
    "normalize",
    "safe_repr",
    "show",
]

JsonValue: TypeAlias = (
    "bool | Decimal | str | tuple[JsonValue, ...] | Mapping[str, JsonValue] | None"
)
"""A JSON value in the evaluation representation (see the module docstring)."""


class Missing(Enum):
    """The type of :data:`MISSING`: the value of a path that does not exist."""

    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""The result of a path through a missing key or a non-object (spec §4)."""


@dataclass(frozen=True, slots=True)
class EvalError:
    """An evaluation error: the result of an operator that cannot be applied (spec §5).

    Errors combine as sets of messages, so that an expression whose several operands fail
    reports all of them, and ``a and b`` gives the same error as ``b and a`` (§5: ``and``
    and ``or`` are commutative, including their errors).

    Attributes:
        messages: one lowercase sentence per distinct cause.
    """

    messages: frozenset[str]

    @classmethod
    def of(cls, message: str) -> EvalError:
        """An error with one message."""
        return cls(frozenset((message,)))

    @classmethod
    def union(cls, errors: list[EvalError]) -> EvalError:
        """One error carrying every message of ``errors`` (which must not be empty)."""
        merged: frozenset[str] = frozenset()
        for error in errors:
            merged |= error.messages
        return cls(merged)

    @property
    def message(self) -> str:
        """The distinct messages, sorted and joined by ``"; "`` (order-independent)."""
        return "; ".join(sorted(self.messages))


Result: TypeAlias = "JsonValue | Missing | EvalError"
"""What evaluating an expression gives: a value, :data:`MISSING`, or an error."""


# --------------------------------------------------------------------------- normalising


class NormalizeError(ValueError):
    """A value is not JSON; ``path`` locates it (``resource.labels[0]``)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


_Where: TypeAlias = "str | tuple[_Where, str | int]"
"""Where a value sits: the root's name, or (parent, key). Rendered only for messages."""


def _render(where: _Where) -> str:
    keys: list[str | int] = []
    while isinstance(where, tuple):
        where, key = where
        keys.append(key)
    text = where
    for key in reversed(keys):
        if isinstance(key, int):
            text = f"{text}[{key}]"
        elif _IDENT.fullmatch(key):
            text = f"{text}.{key}"
        else:
            text = f"{text}[{format_string(key)}]"
    return text


def _fail(where: _Where, problem: str) -> NormalizeError:
    """The error for the value at ``where``: `` `resource.x` <problem> ``."""
    path = _render(where)
    return NormalizeError(f"`{show(path)}` {problem}", path)


def _number(value: object, where: _Where) -> Decimal:
    if isinstance(value, int):
        return Decimal(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(where, "is not a finite number")
        # INVARIANT: repr() is the shortest text that reads back as the same float (§2).
        return Decimal(repr(float(value)))
    assert isinstance(value, Decimal)
    if not value.is_finite():
        raise _fail(where, "is not a finite number")
    return value


_EXIT: Final = object()
"""A frame of :func:`normalize` that closes the container whose id it carries."""


def normalize(value: object, where: str = "value") -> JsonValue:
    """Turn a request value (dict/list/str/int/float/bool/None) into the evaluation form.

    Lists and tuples become tuples, mappings become read-only mappings with string keys,
    numbers become :class:`~decimal.Decimal` (floats through ``repr``: the shortest decimal
    that prints them), booleans stay booleans. The input is copied, never shared. Works
    iteratively, so deep nesting cannot exhaust the Python stack.

    Args:
        value: the value to convert.
        where: a name for the value, used in error messages (``"resource"``).

    Returns:
        The value in the evaluation representation.

    Raises:
        NormalizeError: the value (or something inside it) is not JSON: a non-string key, a
            NaN or infinite number, or an object of another type.
    """
    root: list[JsonValue] = [None]
    # Each frame: (source value, where it sits, destination container, slot in it).
    # Containers are created before their children and filled in as these are converted.
    stack: list[tuple[object, _Where, list[JsonValue] | dict[str, JsonValue], int | str]] = [
        (value, where, root, 0)
    ]
    finishers: list[tuple[list[JsonValue] | dict[str, JsonValue], int | str, list[JsonValue]]] = []
    # INVARIANT: `open_` holds the ids of the containers on the path from the root to the item
    # being converted; each container pushes an exit frame below its children, which closes
    # it once they are done. A container met again while open is a cycle (JSON has none).
    open_: set[int] = set()
    while stack:
        item, at, dest, slot = stack.pop()
        converted: JsonValue
        if item is _EXIT:
            open_.discard(slot)
            continue
        if isinstance(item, Mapping | list | tuple):
            if id(item) in open_:
                raise _fail(at, "contains itself (a cycle is not a JSON value)")
            open_.add(id(item))
            stack.append((_EXIT, at, root, id(item)))
        if item is None or isinstance(item, bool):
            converted = item
        elif isinstance(item, str):
            converted = str(item)
        elif isinstance(item, int | float | Decimal):
            converted = _number(item, at)
        elif isinstance(item, Mapping):
            fields: dict[str, JsonValue] = {}
            for key, child in item.items():
                if not isinstance(key, str):
                    raise _fail(at, f"has a key that is not a string: `{show(safe_repr(key))}`")
                name = str(key)
                fields[name] = None
                stack.append((child, (at, name), fields, name))
            converted = MappingProxyType(fields)
        elif isinstance(item, list | tuple):
            items: list[JsonValue] = [None] * len(item)
            for index, child in enumerate(item):
                stack.append((child, (at, index), items, index))
            # Lists are turned into tuples once their items are filled in.
            finishers.append((dest, slot, items))
            continue
        else:
            raise _fail(at, f"is not a JSON value (a {type(item).__name__})")
        _store(dest, slot, converted)
    # Children of a list are converted before the list is frozen: freeze innermost first.
    for list_dest, list_slot, filled in reversed(finishers):
        _store(list_dest, list_slot, tuple(filled))
    return root[0]


def _store(dest: list[JsonValue] | dict[str, JsonValue], slot: int | str, value: JsonValue) -> None:
    if isinstance(dest, list):
        assert isinstance(slot, int)
        dest[slot] = value
    else:
        assert isinstance(slot, str)
        dest[slot] = value


# --------------------------------------------------------------------------- kinds


def kind_of(value: JsonValue) -> str:
    """The JSON kind of a value, as used in messages: ``null``, ``boolean``, ``number``…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, tuple):
        return "list"
    return "object"


def json_equal(left: JsonValue, right: JsonValue) -> bool:
    """Equality of JSON values (spec §5).

    Numbers compare by value, lists element-wise, objects by keys and values; values of
    different kinds are unequal (``true`` is not ``1``). Iterative, so deep values are safe.
    """
    pending: list[tuple[JsonValue, JsonValue]] = [(left, right)]
    while pending:
        a, b = pending.pop()
        kind = kind_of(a)
        if kind != kind_of(b):
            return False
        if kind == "list":
            assert isinstance(a, tuple)
            assert isinstance(b, tuple)
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif kind == "object":
            assert isinstance(a, Mapping)
            assert isinstance(b, Mapping)
            if len(a) != len(b) or a.keys() != b.keys():
                return False
            pending.extend((a[key], b[key]) for key in a)
        elif a != b:  # same scalar kind: None, bool, Decimal (exact) or str
            return False
    return True


def json_compare(left: JsonValue, right: JsonValue) -> int | None:
    """Order two numbers or two strings: -1, 0 or 1; ``None`` for any other pair (§5).

    Strings are ordered by code points (Python's native ``str`` order).
    """
    if isinstance(left, Decimal) and isinstance(right, Decimal):
        return (left > right) - (left < right)
    if isinstance(left, str) and isinstance(right, str):
        return (left > right) - (left < right)
    return None


# --------------------------------------------------------------------------- glob


def _glob_segments(pattern: str) -> list[str]:
    """Split a glob into the literal runs between wildcards.

    Scanned left to right: the pair ``\\*`` is a literal star, a lone ``*`` a wildcard, and
    every other character (a backslash not followed by a star included) itself. A pattern
    with ``k`` wildcards gives ``k + 1`` segments (some possibly empty).
    """
    segments: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and pattern.startswith("*", index + 1):
            current.append("*")
            index += 2
            continue
        if char == "*":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    segments.append("".join(current))
    return segments


def glob_match(subject: str, pattern: str) -> bool:
    """Whether ``subject`` matches the ``like`` glob ``pattern`` (spec §5).

    ``*`` matches any run of characters (also empty, also ``/``); ``\\*`` is a literal star;
    any other character, a lone backslash included, matches itself.

    No backtracking: the first segment must be a prefix, the last a suffix, and each middle
    segment is found at its leftmost position after the previous one (greedy leftmost
    placement is optimal when the only wildcard is ``*``). The cost is that of a few
    ``str.find`` calls, ``O(len(subject) * len(pattern))`` at worst, never exponential.
    """
    segments = _glob_segments(pattern)
    if len(segments) == 1:
        return subject == segments[0]
    first, *middle, last = segments
    if len(subject) < len(first) + len(last):
        return False
    if not subject.startswith(first) or not subject.endswith(last):
        return False
    position = len(first)
    end = len(subject) - len(last)
    for segment in middle:
        if not segment:
            continue
        found = subject.find(segment, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


# --------------------------------------------------------------------------- messages

_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _escape_code_point(code: int) -> str:
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def safe_repr(value: object) -> str:
    """``repr(value)``, or the type name when even that fails (a 5,000-digit int, deep nesting)."""
    try:
        return repr(value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def show(text: str, limit: int = 80) -> str:
    """User input made safe for a one-line message: control and other non-printable
    characters escaped as ``\\uXXXX``, and cut to ``limit`` characters with ``…``."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return "".join(
        char if char.isprintable() or char == " " else _escape_code_point(ord(char)) for char in cut
    )
