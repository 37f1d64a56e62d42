"""Schema loading (spec §7): the model, every error with its position, request conformance."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from aegis.lang.errors import SchemaError
from aegis.lang.schema import (
    BOOL,
    DECIMAL,
    INT,
    STRING,
    TIME,
    Attribute,
    ListType,
    MapType,
    ObjectType,
    Schema,
    load_schema,
    parse_schema,
)

SPEC_EXAMPLE = """\
principal:
  id: string
  roles: [string]
  mfa?: bool                 # trailing ? = optional attribute
action: [restart_pod, scale_deployment, rollback_deployment, read_logs]
resource:
  kind: string
  namespace: string
  name: string
  labels: {string: string}   # a map
  replicas?: int
context:
  source?: string
"""


def _errors(text: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(SchemaError) as info:
        parse_schema(textwrap.dedent(text), file="s.yaml")
    return [(d.code, d.span.line, d.span.column, d.message) for d in info.value.diagnostics]


# --- the model ------------------------------------------------------------------------------


def test_the_spec_example_loads_into_the_expected_model() -> None:
    schema = parse_schema(SPEC_EXAMPLE, file="s.yaml")
    assert schema == Schema(
        principal=ObjectType(
            (
                Attribute("id", STRING),
                Attribute("roles", ListType(STRING)),
                Attribute("mfa", BOOL, optional=True),
            )
        ),
        resource=ObjectType(
            (
                Attribute("kind", STRING),
                Attribute("namespace", STRING),
                Attribute("name", STRING),
                Attribute("labels", MapType(STRING)),
                Attribute("replicas", INT, optional=True),
            )
        ),
        context=ObjectType((Attribute("source", STRING, optional=True),)),
        actions=("restart_pod", "scale_deployment", "rollback_deployment", "read_logs"),
    )
    assert schema.file == "s.yaml"
    mfa = schema.root_type("principal")
    assert isinstance(mfa, ObjectType)
    attribute = mfa.attribute("mfa")
    assert attribute is not None
    assert (attribute.span.line, attribute.span.column) == (4, 3)


def test_a_schema_is_immutable() -> None:
    schema = parse_schema(SPEC_EXAMPLE)
    with pytest.raises(AttributeError):
        schema.actions = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: string", STRING),
        ("a: int", INT),
        ("a: decimal", DECIMAL),
        ("a: bool", BOOL),
        ('a: "string"', STRING),
        ("a: [int]", ListType(INT)),
        ("a: [[string]]", ListType(ListType(STRING))),
        ("a: {string: decimal}", MapType(DECIMAL)),
        ("a: {string: [bool]}", MapType(ListType(BOOL))),
        ("a: {string: {string: int}}", MapType(MapType(INT))),
        ("a: {}", ObjectType()),
        ("a: {x: int}", ObjectType((Attribute("x", INT),))),
        # a mapping with `string` and another key is an object, per "any other mapping"
        ("a: {string: int, x: int}", ObjectType((Attribute("string", INT), Attribute("x", INT)))),
        ("a:\n  b:\n    c?: int", ObjectType((Attribute("b", ObjectType(
            (Attribute("c", INT, optional=True),))),))),
    ],
)
def test_every_type_form(text: str, expected: object) -> None:
    schema = parse_schema(textwrap.indent(text, "  ").replace("  a:", "principal:\n  a:", 1))
    principal = schema.principal
    assert isinstance(principal, ObjectType)
    attribute = principal.attribute("a")
    assert attribute is not None
    assert attribute.type == expected


def test_optional_keys_in_block_style_and_quoted() -> None:
    schema = parse_schema('resource:\n  mfa?: bool\n  "lead?": string\n  plain: int\n')
    resource = schema.resource
    assert isinstance(resource, ObjectType)
    assert [(a.name, a.optional) for a in resource.attributes] == [
        ("mfa", True), ("lead", True), ("plain", False),
    ]


def test_action_forms() -> None:
    assert parse_schema("action: string").actions is None
    assert parse_schema("principal: {}").actions is None
    assert parse_schema("action: []").actions == ()
    # scalars are names as written: YAML 1.1 would read `yes` as a boolean
    assert parse_schema("action: [yes, 'no', 3]").actions == ("yes", "no", "3")


def test_an_empty_document_is_the_empty_schema() -> None:
    assert parse_schema("") == Schema()
    assert parse_schema("# nothing declared\n") == Schema()


def test_a_top_level_map_declares_every_key_optional() -> None:
    schema = parse_schema("context: {string: string}")
    assert schema.context == MapType(STRING)


def test_root_types() -> None:
    schema = parse_schema(SPEC_EXAMPLE)
    assert schema.root_type("action") == STRING
    assert schema.root_type("time") == TIME
    time = schema.root_type("time")
    assert isinstance(time, ObjectType)
    assert time.names() == (
        "year", "month", "day", "hour", "minute", "weekday", "date", "clock", "epoch"
    )
    with pytest.raises(KeyError):
        schema.root_type("other")


def test_describe_in_schema_notation() -> None:
    assert MapType(ListType(INT)).describe() == "{string: [int]}"
    assert ObjectType().describe() == "object"


# --- errors, each with its position ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "principal:\n  id: strin\n",
            [("schema-invalid", 2, 7, "unknown type `strin`")],
            id="unknown-type",
        ),
        pytest.param(
            "principal:\n  id:\n",
            [("schema-invalid", 2, 6, "missing type")],
            id="missing-type",
        ),
        pytest.param(
            "principal:\n  roles: [string, int]\n",
            [("schema-invalid", 2, 10,
              "a list type names exactly one element type, as in `[string]`")],
            id="list-with-two-types",
        ),
        pytest.param(
            "principal:\n  roles: []\n",
            [("schema-invalid", 2, 10,
              "a list type names exactly one element type, as in `[string]`")],
            id="empty-list-type",
        ),
        pytest.param(
            "principal:\n  labels: {string: strng}\n",
            [("schema-invalid", 2, 20, "unknown type `strng`")],
            id="map-value-type",
        ),
        pytest.param(
            "principal:\n  mfa?: bool\n  mfa: int\n",
            [("schema-invalid", 3, 3, "attribute `mfa` is declared twice (first at s.yaml:2:3)")],
            id="duplicate-attribute",
        ),
        pytest.param(
            "principal:\n  '?': bool\n",
            [("schema-invalid", 2, 3, "an attribute name cannot be empty")],
            id="empty-attribute-name",
        ),
        pytest.param(
            "principal:\n  ? [a]\n  : bool\n",
            [("schema-invalid", 2, 5, "a key must be a plain name")],
            id="non-scalar-key",
        ),
        pytest.param(
            "resources:\n  kind: string\n",
            [("schema-invalid", 1, 1, "unknown top-level key `resources`")],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "time:\n  hour: int\n",
            [("schema-invalid", 1, 1,
              "`time` cannot be declared: its nine attributes are built in")],
            id="time-declared",
        ),
        pytest.param(
            "principal: {}\nprincipal: {}\n",
            [("schema-invalid", 2, 1, "`principal` is declared twice (first at s.yaml:1:1)")],
            id="duplicate-top-level-key",
        ),
        pytest.param(
            "context: [string]\n",
            [("schema-invalid", 1, 10, "`context` must be a mapping of attributes")],
            id="root-not-a-mapping",
        ),
        pytest.param(
            "principal:\n",
            [("schema-invalid", 1, 11, "`principal` must be a mapping of attributes")],
            id="root-null",
        ),
        pytest.param(
            "action: any\n",
            [("schema-invalid", 1, 9,
              "`action` must be a list of action names, or `string` for any")],
            id="action-scalar",
        ),
        pytest.param(
            "action: [read, read]\n",
            [("schema-invalid", 1, 16, "action `read` is listed twice (first at s.yaml:1:10)")],
            id="duplicate-action",
        ),
        pytest.param(
            "action: [read, [write]]\n",
            [("schema-invalid", 1, 16, "an action name must be a non-empty string")],
            id="action-not-a-name",
        ),
        pytest.param(
            "- principal\n",
            [("schema-invalid", 1, 1, "a schema is a mapping with the keys `principal`, "
              "`action`, `resource` and `context`")],
            id="not-a-mapping",
        ),
        pytest.param(
            "principal:\n  id: [string\n",
            [("schema-syntax", 3, 1, "invalid yaml: expected ',' or ']', but got '<stream end>'")],
            id="yaml-syntax",
        ),
        pytest.param(
            "principal:\n  mfa?: {a?: bool}\n",
            [("schema-syntax", 2, 11, "invalid yaml: expected ',' or '}', but got '?'")],
            id="optional-key-inside-flow-mapping",
        ),
        pytest.param(
            "principal: {}\n---\nresource: {}\n",
            [("schema-syntax", 2, 1, "invalid yaml: expected a single document in the stream, "
              "but found another document")],
            id="two-documents",
        ),
        pytest.param(
            "principal:\n  id: \x01\n",
            [("schema-syntax", 2, 7, "invalid yaml: special characters are not allowed (#x0001)")],
            id="control-character",
        ),
        pytest.param(
            "principal:\n  a: &t string\n  b: *t\n",
            [
                ("schema-invalid", 2, 6, "anchors and aliases are not supported in a schema"),
                ("schema-invalid", 3, 6, "anchors and aliases are not supported in a schema"),
            ],
            id="anchors-and-aliases",
        ),
    ],
)
def test_schema_errors_with_positions(text: str, expected: list[tuple[str, int, int, str]]) -> None:
    assert _errors(text) == expected


def test_every_problem_is_reported_not_only_the_first() -> None:
    errors = _errors(
        """\
        principal:
          id: strin
          roles: [string, int]
        action: [a, a]
        resources: {}
        context:
          x: {string: foo}
        """
    )
    assert [(line, column) for _, line, column, _ in errors] == [
        (2, 7), (3, 10), (4, 13), (5, 1), (7, 15)
    ]


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    errors = _errors("principal:\n  a: " + "[" * 5000 + "int" + "]" * 5000 + "\n")
    assert errors == [("schema-invalid", 2, 68, "the schema nests deeper than 64 levels")]


def test_error_rendering_names_the_file_and_shows_the_line() -> None:
    with pytest.raises(SchemaError) as info:
        parse_schema("principal:\n  id: strin\n", file="s.yaml")
    rendered = info.value.render()
    assert rendered.startswith("s.yaml:2:7: error[schema-invalid]: unknown type `strin`")
    assert "2 |   id: strin" in rendered
    assert "did you mean `string`?" in rendered


def test_load_schema_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    assert load_schema(path) == parse_schema(SPEC_EXAMPLE)
    assert load_schema(str(path)).file == str(path)


def test_load_schema_missing_file_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as info:
        load_schema(tmp_path / "absent.yaml")
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "schema-unreadable"
    assert diagnostic.message == "cannot read the schema: no such file or directory"


def test_load_schema_invalid_utf8_points_at_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_bytes(b"principal:\n  id: str\xffing\n")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "schema-syntax"
    assert (diagnostic.span.line, diagnostic.span.column) == (2, 10)


def test_yaml_tags_never_construct_objects() -> None:
    # SafeLoader only composes nodes: a python tag is just an unknown type name
    assert _errors("principal:\n  a: !!python/object:os.system echo\n") == [
        ("schema-invalid", 2, 6, "unknown type `echo`")
    ]


# --- request conformance --------------------------------------------------------------------

SCHEMA = parse_schema(SPEC_EXAMPLE)


def _request(**changes: object) -> dict[str, object]:
    request: dict[str, object] = {
        "principal": {"id": "alice", "roles": ["sre"]},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "prod", "name": "api", "labels": {}},
    }
    for key, value in changes.items():
        if value is None:
            request.pop(key, None)
        else:
            request[key] = value
    return request


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(_request(), id="minimal"),
        pytest.param(_request(context={"source": "detector", "extra": [1, None]}), id="context"),
        pytest.param(_request(principal={"id": "a", "roles": [], "mfa": False, "x": None}),
                     id="optional-present-and-undeclared-extra"),
        pytest.param(_request(resource={"kind": "pod", "namespace": "n", "name": "x",
                                         "labels": {"a": "b"}, "replicas": 3}), id="int"),
        pytest.param(_request(resource={"kind": "pod", "namespace": "n", "name": "x",
                                         "labels": {}, "replicas": Decimal("3")}),
                     id="decimal-written-as-an-integer-is-an-int"),
    ],
)
def test_conforming_requests(request_: dict[str, object]) -> None:
    assert SCHEMA.check_request(request_) == ()
    assert SCHEMA.conforms(request_)


@pytest.mark.parametrize(
    ("request_", "problems"),
    [
        pytest.param(_request(action="delete_pod"),
                     ("action `delete_pod` is not one of the schema's actions",), id="action"),
        pytest.param(_request(principal={"roles": ["sre"]}),
                     ("`principal.id` is missing",), id="required-missing"),
        pytest.param(_request(principal={"id": None, "roles": ["sre"]}),
                     ("`principal.id` must be a string, not null",), id="null-matches-nothing"),
        pytest.param(_request(principal={"id": "a", "roles": ["sre", 1]}),
                     ("`principal.roles[1]` must be a string, not a number",), id="list-element"),
        pytest.param(_request(principal={"id": "a", "roles": [], "mfa": None}),
                     ("`principal.mfa` must be a boolean, not null",), id="optional-null"),
        pytest.param(_request(principal={"id": "a", "roles": [], "mfa": 1}),
                     ("`principal.mfa` must be a boolean, not a number",), id="bool-not-number"),
        pytest.param(_request(resource={"kind": "pod", "namespace": "n", "name": "x",
                                        "labels": {"app.io/name": 1}}),
                     ('`resource.labels["app.io/name"]` must be a string, not a number',),
                     id="map-value"),
        pytest.param(_request(resource={"kind": "pod", "namespace": "n", "name": "x",
                                        "labels": {}, "replicas": 1.5}),
                     ("`resource.replicas` must be an integer, not a number",), id="int-not-float"),
        pytest.param(_request(resource={"kind": "pod", "namespace": "n", "name": "x",
                                        "labels": {}, "replicas": Decimal("2.0")}),
                     ("`resource.replicas` must be an integer, not a number",),
                     id="int-not-decimal-fraction"),
        pytest.param(_request(resource={"kind": "pod", "namespace": "n", "name": "x",
                                        "labels": {}, "replicas": True}),
                     ("`resource.replicas` must be an integer, not a boolean",), id="int-not-bool"),
        pytest.param(_request(context={"source": ["x"]}),
                     ("`context.source` must be a string, not a list",), id="context-attribute"),
        pytest.param(_request(resource=None),
                     ("`resource` is missing",), id="root-missing"),
    ],
)
def test_non_conforming_requests(request_: dict[str, object], problems: tuple[str, ...]) -> None:
    assert SCHEMA.check_request(request_) == problems
    assert not SCHEMA.conforms(request_)


def test_decimal_accepts_every_json_number_but_not_bool() -> None:
    schema = parse_schema("principal:\n  score: decimal\n")
    base = {"action": "a", "resource": {}}
    for value in (1, 1.5, Decimal("0.1"), -3):
        assert schema.conforms({**base, "principal": {"score": value}})
    for bad in (True, None, "1", float("nan")):
        assert not schema.conforms({**base, "principal": {"score": bad}})


def test_missing_context_is_the_empty_object() -> None:
    schema = parse_schema("context:\n  ticket: string\n")
    assert schema.check_request({"principal": {}, "action": "a", "resource": {}}) == (
        "`context.ticket` is missing",
    )
    assert parse_schema("context:\n  ticket?: string\n").conforms(
        {"principal": {}, "action": "a", "resource": {}}
    )


def test_a_request_that_is_not_an_object_does_not_conform() -> None:
    assert SCHEMA.check_request([1, 2]) == ("the request is not an object",)
    assert Schema().check_request({"principal": {}, "resource": {}}) == (
        "`action` is not a string",
    )


def test_any_action_when_the_schema_lists_none() -> None:
    assert Schema().conforms({"principal": {}, "action": "anything", "resource": {}})
