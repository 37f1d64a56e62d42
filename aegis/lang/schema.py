"""Schemas (spec §7): the attributes a policy set may read, loaded from YAML.

A schema is a YAML mapping with up to four top-level keys::

    principal:
      id: string
      roles: [string]
      mfa?: bool                 # trailing ? = optional attribute
    action: [restart_pod, scale_deployment]
    resource:
      labels: {string: string}   # a map: every key optional, every value a string
      replicas?: int
    context:
      source?: string

:func:`load_schema` reads a file and :func:`parse_schema` a text; both return an immutable
:class:`Schema` or raise :class:`~aegis.lang.errors.SchemaError` carrying a diagnostic, with
``file:line:col``, for every problem found. :meth:`Schema.check_request` tells whether a request
conforms; :func:`aegis.lang.validator.validate` checks a policy set against a schema.

Only :class:`yaml.SafeLoader` is used, and only to *compose* nodes (nothing is constructed), so
a schema can never run code. Scalars are read as written: ``yes`` is the name ``yes``, not a
boolean. Anchors and aliases are refused (a schema needs none, and refusing them rules out
alias bombs).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal, Protocol, TypeAlias

import yaml

from aegis.lang.diagnostics import UNKNOWN_SPAN, Diagnostic, Span
from aegis.lang.errors import SchemaError
from aegis.lang.formatter import format_string

__all__ = [
    "BOOL",
    "DECIMAL",
    "INT",
    "STRING",
    "TIME",
    "Attribute",
    "ListType",
    "MapType",
    "ObjectType",
    "PrimitiveType",
    "Schema",
    "SchemaType",
    "load_schema",
    "parse_schema",
]

SCHEMA_SYNTAX: Final = "schema-syntax"
"""Diagnostic code: the file is not well-formed YAML (or not UTF-8)."""
SCHEMA_INVALID: Final = "schema-invalid"
"""Diagnostic code: well-formed YAML that is not a schema (unknown key or type, duplicate…)."""
SCHEMA_UNREADABLE: Final = "schema-unreadable"
"""Diagnostic code: the schema file cannot be read."""

MAX_DEPTH: Final = 64
"""The deepest nesting of YAML collections a schema may use."""

PrimitiveName: TypeAlias = Literal["string", "int", "decimal", "bool"]


@dataclass(frozen=True, slots=True)
class PrimitiveType:
    """``string``, ``int``, ``decimal`` or ``bool``."""

    name: PrimitiveName

    def describe(self) -> str:
        """The type in schema notation (``int``)."""
        return self.name


STRING: Final = PrimitiveType("string")
INT: Final = PrimitiveType("int")
DECIMAL: Final = PrimitiveType("decimal")
BOOL: Final = PrimitiveType("bool")
_PRIMITIVES: Final[Mapping[str, PrimitiveType]] = {
    t.name: t for t in (STRING, INT, DECIMAL, BOOL)
}


@dataclass(frozen=True, slots=True)
class ListType:
    """``[T]``: a list whose every element has type ``element``."""

    element: SchemaType

    def describe(self) -> str:
        """The type in schema notation (``[string]``)."""
        return f"[{self.element.describe()}]"


@dataclass(frozen=True, slots=True)
class MapType:
    """``{string: T}``: an object with any keys, each optional, each value of type ``value``."""

    value: SchemaType

    def describe(self) -> str:
        """The type in schema notation (``{string: int}``)."""
        return f"{{string: {self.value.describe()}}}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """One declared attribute of an object.

    Attributes:
        name: the key, without the ``?`` marker.
        type: its type.
        optional: declared with a trailing ``?``: the key may be absent.
        span: where the key is written in the schema file (no part in equality).
    """

    name: str
    type: SchemaType
    optional: bool = False
    span: Span = field(default=UNKNOWN_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ObjectType:
    """A nested object: the declared attributes, in schema order; others are allowed, unread."""

    attributes: tuple[Attribute, ...] = ()

    def attribute(self, name: str) -> Attribute | None:
        """The attribute called ``name``, or ``None`` when it is not declared."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        return None

    def names(self) -> tuple[str, ...]:
        """The declared attribute names, in schema order."""
        return tuple(a.name for a in self.attributes)

    def describe(self) -> str:
        """``object`` (the attributes are not spelled out)."""
        return "object"


SchemaType: TypeAlias = PrimitiveType | ListType | MapType | ObjectType
"""Any attribute type."""

TIME_ATTRIBUTES: Final = (
    "year", "month", "day", "hour", "minute", "weekday", "date", "clock", "epoch"
)
"""The nine attributes of ``time`` (spec §4), always present."""

TIME: Final = ObjectType(
    tuple(
        Attribute(name, STRING if name in ("weekday", "date", "clock") else INT)
        for name in TIME_ATTRIBUTES
    )
)
"""The type of the derived ``time`` root: an object of exactly the nine attributes of §4."""

_EMPTY: Final = ObjectType()
_ROOTS: Final = ("principal", "action", "resource", "context")


@dataclass(frozen=True, slots=True)
class Schema:
    """An immutable schema (spec §7).

    Attributes:
        principal: the type of ``principal`` (an object, or a map when written ``{string: T}``).
        resource: the type of ``resource``.
        context: the type of ``context``.
        actions: the allowed action names in schema order, or ``None`` when any is allowed.
        file: the file the schema was read from, for messages.

    The default ``Schema()`` declares no attribute and allows every action.
    """

    principal: ObjectType | MapType = _EMPTY
    resource: ObjectType | MapType = _EMPTY
    context: ObjectType | MapType = _EMPTY
    actions: tuple[str, ...] | None = None
    file: str = field(default="<schema>", compare=False)

    def root_type(self, root: str) -> SchemaType:
        """The type of a path root: the declared ones, ``action`` a string, ``time`` :data:`TIME`.

        Raises:
            KeyError: ``root`` is not one of the five roots of spec §3.
        """
        match root:
            case "principal":
                return self.principal
            case "resource":
                return self.resource
            case "context":
                return self.context
            case "action":
                return STRING
            case "time":
                return TIME
        raise KeyError(root)

    def allows_action(self, name: str) -> bool:
        """Whether ``name`` is an action the schema allows."""
        return self.actions is None or name in self.actions

    def check_request(self, request: object) -> tuple[str, ...]:
        """Why a request does not conform to the schema (spec §7); empty when it conforms.

        The request is taken as valid (spec §4); a request that is not gets problems too, never
        an exception. Undeclared attributes are allowed; a missing ``context`` is ``{}``.
        Integers are ``int`` (never ``bool``) or a :class:`~decimal.Decimal` written without a
        fraction (``Decimal("3")``); every finite ``int``, ``float`` or ``Decimal`` is a
        ``decimal``; ``None`` (JSON ``null``) matches no type.

        Args:
            request: the request as a JSON-like mapping (anything else does not conform).

        Returns:
            One lowercase sentence per problem, the offending path in backticks.
        """
        if not isinstance(request, Mapping):
            return ("the request is not an object",)
        problems: list[str] = []
        for root in ("principal", "resource", "context"):
            if root in request:
                _check_value(self.root_type(root), request[root], root, problems)
            elif root == "context":
                _check_value(self.context, {}, root, problems)
            else:
                problems.append(f"`{root}` is missing")
        action = request.get("action")
        if not isinstance(action, str):
            problems.append("`action` is not a string")
        elif not self.allows_action(action):
            problems.append(f"action `{action}` is not one of the schema's actions")
        return tuple(problems)

    def conforms(self, request: object) -> bool:
        """Whether :meth:`check_request` finds nothing."""
        return not self.check_request(request)


# --- request conformance -------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _render_key(key: str) -> str:
    """One request path step in source spelling: ``.name`` or ``["other key"]``."""
    return f".{key}" if _IDENT.match(key) else f"[{format_string(key)}]"


def _is_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, Decimal) and value.is_finite() and value.as_tuple().exponent == 0


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, Decimal) and value.is_finite()


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a `{type(value).__name__}`"


_EXPECTED: Final[Mapping[str, str]] = {
    "string": "a string",
    "int": "an integer",
    "decimal": "a number",
    "bool": "a boolean",
}


def _check_value(expected: SchemaType, value: object, where: str, problems: list[str]) -> None:
    match expected:
        case PrimitiveType(name=name):
            ok = {
                "string": isinstance(value, str),
                "int": _is_int(value),
                "decimal": _is_number(value),
                "bool": isinstance(value, bool),
            }[name]
            if not ok:
                problems.append(f"`{where}` must be {_EXPECTED[name]}, not {_json_kind(value)}")
        case ListType(element=element):
            if not isinstance(value, list | tuple):
                problems.append(f"`{where}` must be a list, not {_json_kind(value)}")
                return
            for index, item in enumerate(value):
                _check_value(element, item, f"{where}[{index}]", problems)
        case MapType(value=value_type):
            if not isinstance(value, Mapping):
                problems.append(f"`{where}` must be an object, not {_json_kind(value)}")
                return
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append(f"`{where}` has a key that is not a string")
                    continue
                _check_value(value_type, item, where + _render_key(key), problems)
        case ObjectType(attributes=attributes):
            if not isinstance(value, Mapping):
                problems.append(f"`{where}` must be an object, not {_json_kind(value)}")
                return
            for attribute in attributes:
                inner = where + _render_key(attribute.name)
                if attribute.name in value:
                    _check_value(attribute.type, value[attribute.name], inner, problems)
                elif not attribute.optional:
                    problems.append(f"`{inner}` is missing")


# --- loading ---------------------------------------------------------------------------------


def load_schema(path: str | os.PathLike[str]) -> Schema:
    """Read and check a schema file (UTF-8 YAML).

    Args:
        path: the schema file; diagnostics name it as given.

    Returns:
        The schema.

    Raises:
        SchemaError: the file cannot be read, or is not a valid schema; ``diagnostics`` holds
            every problem with its ``file:line:col``.

    Usage::

        schema = load_schema("schema.yaml")
        problems = validate(load_paths(["policies/"]), schema)
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SchemaError(
            [_diagnostic(SCHEMA_UNREADABLE, f"cannot read the schema: {reason.lower()}",
                         Span.point(name, 1, 1))]
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SchemaError(
            [_diagnostic(SCHEMA_SYNTAX, "the schema is not valid utf-8",
                         Span.point(name, line, column))]
        ) from exc
    return parse_schema(text, file=name)


def parse_schema(text: str, file: str = "<schema>") -> Schema:
    """Check a schema given as YAML text.

    An empty document (only comments, or nothing) is the empty schema: no attribute declared,
    every action allowed.

    Args:
        text: the YAML text.
        file: the name used in diagnostics.

    Returns:
        The schema.

    Raises:
        SchemaError: the text is not a valid schema; ``diagnostics`` holds every problem.
    """
    builder = _Builder(file, text)
    schema = builder.build()
    if builder.diagnostics:
        raise SchemaError(builder.diagnostics)
    assert schema is not None
    return schema


def _diagnostic(code: str, message: str, span: Span, help: str | None = None) -> Diagnostic:
    return Diagnostic(code=code, message=message, span=span, help=help)


def _suggest(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean `{close[0]}`?" if close else None


_TYPE_HELP: Final = (
    "a type is string, int, decimal, bool, [T], {string: T} or a mapping of attributes"
)


class _Mark(Protocol):
    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...


class _Builder:
    """Turns composed YAML nodes into a :class:`Schema`, collecting every problem."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.lines = text.splitlines()
        self.diagnostics: list[Diagnostic] = []

    # positions ---------------------------------------------------------------------------

    def span(self, node: yaml.Node) -> Span:
        start, end = node.start_mark, node.end_mark
        return Span(self.file, start.line + 1, start.column + 1, end.line + 1, end.column + 1)

    def mark_span(self, mark: _Mark | None) -> Span:
        if mark is None:
            return Span.point(self.file, 1, 1)
        return Span.point(self.file, mark.line + 1, mark.column + 1)

    def error(self, message: str, span: Span, help: str | None = None, *,
              code: str = SCHEMA_INVALID) -> None:
        line = self.lines[span.line - 1] if 0 < span.line <= len(self.lines) else None
        self.diagnostics.append(
            Diagnostic(code=code, message=message, span=span, help=help, source_line=line)
        )

    def yaml_error(self, exc: yaml.YAMLError) -> None:
        if isinstance(exc, yaml.reader.ReaderError):
            before = self.text[: exc.position]
            line = before.count("\n") + 1
            column = exc.position - (before.rfind("\n") + 1) + 1
            self.error(f"invalid yaml: {exc.reason} (#x{exc.character:04x})",
                       Span.point(self.file, line, column), code=SCHEMA_SYNTAX)
            return
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            problem = exc.problem or exc.context or "malformed yaml"
            if exc.context and problem.startswith("but "):
                problem = f"{exc.context}, {problem}"
            self.error(f"invalid yaml: {problem}", self.mark_span(exc.problem_mark),
                       code=SCHEMA_SYNTAX)
            return
        self.error("invalid yaml", Span.point(self.file, 1, 1), code=SCHEMA_SYNTAX)

    # reading -----------------------------------------------------------------------------

    def build(self) -> Schema | None:
        if not self.prescan():
            return None
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            self.yaml_error(exc)
            return None
        if root is None:
            return Schema(file=self.file)
        if not isinstance(root, yaml.MappingNode):
            self.error("a schema is a mapping with the keys `principal`, `action`, `resource` "
                       "and `context`", self.span(root))
            return None
        parts: dict[str, ObjectType | MapType] = {}
        actions: tuple[str, ...] | None = None
        seen: dict[str, Span] = {}
        for key_node, value_node in root.value:
            key = self.key_name(key_node)
            if key is None:
                continue
            key_span = self.span(key_node)
            if key in seen:
                self.error(f"`{key}` is declared twice (first at {seen[key]})", key_span)
                continue
            seen[key] = key_span
            if key == "action":
                actions = self.actions(value_node)
            elif key in ("principal", "resource", "context"):
                declared = self.root_attributes(key, value_node)
                if declared is not None:
                    parts[key] = declared
            elif key == "time":
                self.error("`time` cannot be declared: its nine attributes are built in",
                           key_span)
            else:
                self.error(f"unknown top-level key `{key}`", key_span,
                           _suggest(key, _ROOTS) or
                           "the top-level keys are `principal`, `action`, `resource` and "
                           "`context`")
        return Schema(
            principal=parts.get("principal", _EMPTY),
            resource=parts.get("resource", _EMPTY),
            context=parts.get("context", _EMPTY),
            actions=actions,
            file=self.file,
        )

    def prescan(self) -> bool:
        """Refuse syntax errors, aliases and deep nesting before composing (no recursion)."""
        depth = 0
        ok = True
        try:
            for event in yaml.parse(self.text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                    self.error("anchors and aliases are not supported in a schema",
                               self.mark_span(event.start_mark))
                    ok = False
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        self.error(f"the schema nests deeper than {MAX_DEPTH} levels",
                                   self.mark_span(event.start_mark))
                        return False
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
        except yaml.YAMLError as exc:
            self.yaml_error(exc)
            return False
        return ok

    def key_name(self, node: yaml.Node) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.error("a key must be a plain name", self.span(node))
            return None
        return str(node.value)

    def root_attributes(self, root: str, node: yaml.Node) -> ObjectType | MapType | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(f"`{root}` must be a mapping of attributes", self.span(node),
                       "write `{}` to declare none")
            return None
        parsed = self.type_of(node)
        assert parsed is None or isinstance(parsed, ObjectType | MapType)
        return parsed

    def actions(self, node: yaml.Node) -> tuple[str, ...] | None:
        if isinstance(node, yaml.ScalarNode) and node.value == "string":
            return None
        if not isinstance(node, yaml.SequenceNode):
            self.error("`action` must be a list of action names, or `string` for any",
                       self.span(node))
            return None
        names: list[str] = []
        first: dict[str, Span] = {}
        for item in node.value:
            span = self.span(item)
            if not isinstance(item, yaml.ScalarNode) or item.value == "":
                self.error("an action name must be a non-empty string", span)
                continue
            name = str(item.value)
            if name in first:
                self.error(f"action `{name}` is listed twice (first at {first[name]})", span)
                continue
            first[name] = span
            names.append(name)
        return tuple(names)

    def type_of(self, node: yaml.Node) -> SchemaType | None:
        """The type a node spells, or ``None`` after reporting why it spells none."""
        span = self.span(node)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:null" and node.style is None:
                self.error("missing type", span, _TYPE_HELP)
                return None
            primitive = _PRIMITIVES.get(str(node.value))
            if primitive is None:
                self.error(f"unknown type `{node.value}`", span,
                           _suggest(str(node.value), tuple(_PRIMITIVES)) or _TYPE_HELP)
            return primitive
        if isinstance(node, yaml.SequenceNode):
            if len(node.value) != 1:
                self.error("a list type names exactly one element type, as in `[string]`", span)
                for item in node.value:
                    self.type_of(item)
                return None
            element = self.type_of(node.value[0])
            return None if element is None else ListType(element)
        assert isinstance(node, yaml.MappingNode)
        pairs: list[tuple[yaml.Node, yaml.Node]] = node.value
        if (
            len(pairs) == 1
            and isinstance(pairs[0][0], yaml.ScalarNode)
            and pairs[0][0].value == "string"
        ):
            value = self.type_of(pairs[0][1])
            return None if value is None else MapType(value)
        attributes: list[Attribute] = []
        seen: dict[str, Span] = {}
        failed = False
        for key_node, value_node in pairs:
            raw = self.key_name(key_node)
            value = self.type_of(value_node)
            if raw is None:
                failed = True
                continue
            key_span = self.span(key_node)
            optional = raw.endswith("?")
            name = raw[:-1] if optional else raw
            if not name:
                self.error("an attribute name cannot be empty", key_span)
                failed = True
                continue
            if name in seen:
                self.error(f"attribute `{name}` is declared twice (first at {seen[name]})",
                           key_span)
                failed = True
                continue
            seen[name] = key_span
            if value is None:
                failed = True
                continue
            attributes.append(Attribute(name, value, optional, key_span))
        return None if failed else ObjectType(tuple(attributes))
