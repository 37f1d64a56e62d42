"""Validation against a schema (spec §7): the four checks, each diagnostic at its line:col."""

from __future__ import annotations

import textwrap

import pytest

from aegis.lang import ast, load_texts, parse_policy
from aegis.lang.schema import Schema, parse_schema
from aegis.lang.validator import validate

SCHEMA = parse_schema(
    """\
principal:
  id: string
  roles: [string]
  mfa?: bool
  level: int
  score?: decimal
  manager?:
    phone?: string
    name: string
  teams: {string: [string]}
action: [restart_pod, scale_deployment, rollback_deployment, read_logs]
resource:
  kind: string
  namespace: string
  name: string
  labels: {string: string}
  replicas?: int
  owner: {id: string}
  limits: {string: {string: int}}
context:
  source?: string
  ticket?: {id: string}
""",
    file="schema.yaml",
)


def _found(body: str, schema: Schema = SCHEMA) -> list[tuple[str, int, int]]:
    """Validate one rule whose body starts on line 2 (so a body line N is file line N + 1)."""
    text = 'allow "r" {\n' + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n}\n"
    policy = parse_policy(text, "p.aegis")
    return [(d.code, d.span.line, d.span.column) for d in validate(policy, schema)]


# Each case: the rule body (line 2 onwards, indented by 4 so column = 5 + offset) and the
# diagnostics expected as (code, line, column).
CASES: dict[str, tuple[str, list[tuple[str, int, int]]]] = {
    # --- 1. unknown attribute paths ---------------------------------------------------
    "undeclared key": ('principal.nope == "x"', [("unknown-attribute", 2, 5)]),
    "undeclared nested key": ('resource.owner.name == "x"', [("unknown-attribute", 2, 5)]),
    "undeclared key under has": ("has principal.nope", [("unknown-attribute", 2, 9)]),
    "undeclared key under not has": ("not has context.user", [("unknown-attribute", 2, 13)]),
    "key into a string": ('resource.name.first == "x"', [("unknown-attribute", 2, 5)]),
    "key into a list": ('principal.roles.first == "x"', [("unknown-attribute", 2, 5)]),
    "key into action": ('action.kind == "x"', [("unknown-attribute", 2, 5)]),
    "key into a time attribute": ("time.hour.x == 1", [("unknown-attribute", 2, 5)]),
    "unknown time attribute": ("time.second == 1", [("unknown-attribute", 2, 5)]),
    "key into a bool under has": ("has principal.mfa.x", [("unknown-attribute", 2, 9)]),
    "unknown key on the right of in": ('"x" in resource.tags', [("unknown-attribute", 2, 12)]),
    "unknown key as like subject": ('context.user like "a*"', [("unknown-attribute", 2, 5)]),
    "unknown key in a map value object": (
        'has resource.limits["cpu"]["max"] and resource.limits["cpu"]["max"].x == 1',
        [("unknown-attribute", 2, 43)],
    ),
    "one diagnostic per mistake, no cascade": (
        "principal.nope < 3 and principal.nope",
        [("unknown-attribute", 2, 5), ("unknown-attribute", 2, 28)],
    ),
    "every time attribute is known": (
        """
        time.year > 2000 and time.month in 1..12 and time.day >= 1 and time.hour < 24
        time.minute <= 59 and time.epoch > 0 and time.weekday in ["sat", "sun"]
        time.date >= "2026-01-01" and time.clock like "0*"
        """,
        [],
    ),
    "bracket and dot spellings are one key": (
        'resource["kind"] == "pod" and resource.owner["id"] == principal.id',
        [],
    ),
    # --- 2. unknown actions -----------------------------------------------------------
    "action == unknown": ('action == "delete_pod"', [("unknown-action", 2, 15)]),
    "unknown != action": ('"delete_pod" != action', [("unknown-action", 2, 5)]),
    "action in list": (
        'action in ["restart_pod", "delete_pod", "read_logs", "nuke"]',
        [("unknown-action", 2, 31), ("unknown-action", 2, 58)],
    ),
    "action not in list": ('action not in ["drop"]', [("unknown-action", 2, 20)]),
    "known actions": ('action == "read_logs" or action in ["restart_pod"]', []),
    "like on action is not checked": ('action like "restart_*"', []),
    "a non-string compared with action is a type error": (
        "action == 3",
        [("type-error", 2, 5)],
    ),
    # --- 3. type errors --------------------------------------------------------------
    "ordering a string and a number": ('resource.name < 3', [("type-error", 2, 5)]),
    "ordering two literals of different kinds": ('"a" <= 1', [("type-error", 2, 5)]),
    "ordering a bool": ("principal.mfa > false and has principal.mfa",
                        [("type-error", 2, 5), ("type-error", 2, 21)]),
    "ordering a list": ("principal.roles >= 1", [("type-error", 2, 5)]),
    "ordering an object": ('resource.owner < "a"', [("type-error", 2, 5)]),
    "ordering a boolean expression": ("(time.hour > 1) < 3", [("type-error", 2, 6)]),
    "ordering int and decimal mix": (
        "has principal.score and principal.score > principal.level and 1.5 < 2",
        [],
    ),
    "ordering two strings": ('resource.name > resource.kind and time.clock < "12:00"', []),
    "like on a number": ('principal.level like "1*"', [("type-error", 2, 5)]),
    "like on a list": ('principal.roles like "a*"', [("type-error", 2, 5)]),
    "like on a string": ('resource.labels like "a*"', [("type-error", 2, 5)]),
    "range on a string": ("resource.kind in 1..3", [("type-error", 2, 5)]),
    "range on a literal string": ('"a" not in 1..3', [("type-error", 2, 5)]),
    "range on a number": ("principal.level in 1..3 and time.hour not in 0..7", []),
    "in a string path": ('"a" in resource.name', [("type-error", 2, 12)]),
    "in an int path": ("1 in principal.level", [("type-error", 2, 10)]),
    "in a list, a map and an object": (
        '"sre" in principal.roles and "app" in resource.labels and "id" in resource.owner',
        [],
    ),
    "in a list of another kind": ("1 in principal.roles", [("type-error", 2, 5)]),
    "a non-string looked up in a map": ("1 not in resource.labels", [("type-error", 2, 5)]),
    "list literal element of another kind": (
        'resource.kind in ["pod", 1, true]',
        [("type-error", 2, 30), ("type-error", 2, 33)],
    ),
    "== between kinds that can never be equal": (
        """
        principal.level == "3"
        resource.name != 3
        principal.roles == "sre"
        resource.owner == resource.kind
        (1 == 1) == "true"
        """,
        [
            ("type-error", 2, 5),
            ("type-error", 3, 5),
            ("type-error", 4, 5),
            ("type-error", 5, 5),
            ("type-error", 6, 6),  # the comparison starts at its left operand, inside `(`
        ],
    ),
    "== within a kind": (
        """
        principal.level == 3.0
        resource.labels == resource.owner
        principal.roles != principal.teams["x"] and has principal.teams["x"]
        (time.hour > 3) == false
        """,
        [],
    ),
    "a non-boolean condition": ("resource.name", [("type-error", 2, 5)]),
    "a literal condition": ("1", [("type-error", 2, 5)]),
    "true and false literal conditions": ("true\nfalse", []),
    "a non-boolean operand of not": ("not principal.level", [("type-error", 2, 9)]),
    "a non-boolean operand of and": ('true and "yes"', [("type-error", 2, 14)]),
    "a non-boolean operand of or": ("principal.roles or false", [("type-error", 2, 5)]),
    "an object as condition": ("time", [("type-error", 2, 5)]),
    "boolean paths and expressions": (
        "has principal.mfa and principal.mfa and not (time.hour > 3 or false)",
        [],
    ),
    # --- 4. unguarded optional reads -------------------------------------------------
    "unguarded optional attribute": ("principal.mfa", [("unguarded-optional", 2, 5)]),
    "unguarded map entry": ('resource.labels["app"] == "api"', [("unguarded-optional", 2, 5)]),
    "guarded in the same and": ("has principal.mfa and principal.mfa", []),
    "guarded by another condition of the rule": ("has principal.mfa\nprincipal.mfa", []),
    "guarded after the read": ("principal.mfa\nhas principal.mfa", []),
    "guarded through nested ands": ("(has principal.mfa and true) and (false and principal.mfa)",
                                    []),
    "the guard reaches into or and not": (
        "has principal.mfa and (not principal.mfa or false)",
        [],
    ),
    "has inside or does not guard": (
        "has principal.mfa or principal.mfa",
        [("unguarded-optional", 2, 26)],
    ),
    "has under not does not guard": (
        "not has principal.mfa or principal.mfa",
        [("unguarded-optional", 2, 30)],
    ),
    "has in a nested and does not guard outside it": (
        "(has principal.mfa and true) or principal.mfa",
        [("unguarded-optional", 2, 37)],
    ),
    "has of a longer path guards its prefix": (
        'has principal.manager.phone and principal.manager.phone == "1" and '
        'principal.manager.name == "n"',
        [],
    ),
    "has of a prefix does not guard a longer optional path": (
        'has principal.manager and principal.manager.phone == "1"',
        [("unguarded-optional", 2, 31)],
    ),
    "nested optionals: first unguarded step reported once": (
        'principal.manager.phone == "1"',
        [("unguarded-optional", 2, 5)],
    ),
    "a required attribute under an optional object": (
        'has principal.manager and principal.manager.name == "n"',
        [],
    ),
    "has of the map does not guard its entries": (
        'has resource.labels and resource.labels.app == "x"',
        [("unguarded-optional", 2, 29)],
    ),
    "has of the entry guards it, whatever the spelling": (
        'has resource.labels["app"] and resource.labels.app == "x"',
        [],
    ),
    "nested map entries need the deepest guard": (
        'has resource.limits["cpu"] and resource.limits["cpu"]["max"] > 1',
        [("unguarded-optional", 2, 36)],
    ),
    "nested map entries guarded": (
        'has resource.limits["cpu"]["max"] and resource.limits["cpu"]["max"] > 1',
        [],
    ),
    "optional read on the right of in": (
        '"x" in principal.teams["a"]',
        [("unguarded-optional", 2, 12)],
    ),
    "optional object on the right of in": (
        '"id" in context.ticket',
        [("unguarded-optional", 2, 13)],
    ),
    "optional subject of like": ('context.source like "d*"', [("unguarded-optional", 2, 5)]),
    "has needs no guard": ("has context.ticket.id and not has principal.mfa", []),
    "an unguarded read beside an unknown key": (
        "principal.mfa.x",
        [("unguarded-optional", 2, 5), ("unknown-attribute", 2, 5)],
    ),
}


@pytest.mark.parametrize(("body", "expected"), CASES.values(), ids=CASES.keys())
def test_validation_cases(body: str, expected: list[tuple[str, int, int]]) -> None:
    assert _found(body) == expected


def test_a_guard_in_another_rule_does_not_guard() -> None:
    text = 'allow "a" { has principal.mfa }\ndeny "b" {\n    principal.mfa\n}\n'
    found = validate(parse_policy(text, "p.aegis"), SCHEMA)
    assert [(d.code, d.span.line, d.span.column) for d in found] == [
        ("unguarded-optional", 3, 5)
    ]


def test_the_spec_example_validates_against_the_spec_schema() -> None:
    schema = parse_schema(
        """\
principal:
  id: string
  roles: [string]
  mfa?: bool
action: [restart_pod, scale_deployment, rollback_deployment, read_logs]
resource:
  kind: string
  namespace: string
  name: string
  labels: {string: string}
  replicas?: int
context:
  source?: string
"""
    )
    text = """\
timezone "Europe/Berlin"

@owner("platform")
allow "sre-may-restart" {
    action in ["restart_pod", "rollback_deployment"]
    "sre" in principal.roles
    resource.namespace in ["staging", "prod"]
    time.hour in 8..19
}

deny "prod-weekend-freeze" {
    action == "scale_deployment"
    resource.namespace like "prod*"
    time.weekday in ["sat", "sun"]
    reason "production is frozen at weekends"
}
"""
    assert validate(load_texts({"example.aegis": text}), schema) == ()


def test_messages_name_the_path_and_carry_the_source_line() -> None:
    policy_set = load_texts({"p.aegis": 'allow "a" {\n    principal.levl == 1\n}\n'})
    (diagnostic,) = validate(policy_set, SCHEMA)
    assert diagnostic.headline == (
        "p.aegis:2:5: error[unknown-attribute]: unknown attribute `principal.levl`: "
        "the schema does not declare it"
    )
    assert diagnostic.help == "did you mean `principal.level`?"
    assert diagnostic.source_line == "    principal.levl == 1"
    assert "2 |     principal.levl == 1\n  |     ^^^^^^^^^^^^^^\n" in str(diagnostic)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('action == "restrat_pod"', "unknown action `restrat_pod`: the schema does not list it"),
        ('resource.labels["app.kubernetes.io/name"] == "x"',
         '`resource.labels["app.kubernetes.io/name"]` is optional and read without a guard'),
        ("resource.name < 1",
         '`<` cannot order a string (`resource.name`) and a number (`1`)'),
        ('principal.level != "1"',
         '`!=` compares a number (`principal.level`) with a string (`"1"`): it is always true'),
        ("1 in principal.roles",
         "`in` looks for a number (`1`) in a list `[string]` (`principal.roles`): "
         "it is never found"),
        ("resource.name", "a condition must be boolean, but `resource.name` is a string"),
        ("action.x", "unknown attribute `action.x`: `action` is a string, not an object or map"),
    ],
)
def test_messages(body: str, message: str) -> None:
    policy = parse_policy('allow "r" {\n    ' + body + "\n}\n", "p.aegis")
    (diagnostic,) = validate(policy, SCHEMA)
    assert diagnostic.message == message


def test_help_suggests_the_guard_and_close_names() -> None:
    policy = parse_policy('allow "r" { principal.manager.phone == "1" }', "p.aegis")
    (diagnostic,) = validate(policy, SCHEMA)
    assert diagnostic.help is not None
    assert "`has principal.manager.phone`" in diagnostic.help
    policy = parse_policy('allow "r" { action == "restrat_pod" }', "p.aegis")
    (diagnostic,) = validate(policy, SCHEMA)
    assert diagnostic.help == "did you mean `restart_pod`?"


def test_any_action_is_known_without_an_action_list() -> None:
    schema = parse_schema("principal: {}")
    assert validate(parse_policy('allow "r" { action == "anything" }'), schema) == ()
    empty = parse_schema("action: []")
    (diagnostic,) = validate(parse_policy('allow "r" { action == "x" }'), empty)
    assert diagnostic.help == "the schema lists no action"


def test_a_top_level_map_makes_every_root_key_optional() -> None:
    schema = parse_schema("context: {string: string}")
    assert _found('has context.x and context.x == "y"', schema) == []
    assert _found('context.x == "y"', schema) == [("unguarded-optional", 2, 5)]


def test_the_empty_schema_declares_nothing() -> None:
    assert _found('resource.kind == "pod"', Schema()) == [("unknown-attribute", 2, 5)]
    assert _found("time.hour > 3 and action != \"x\"", Schema()) == []


def test_validate_accepts_files_rules_and_sets() -> None:
    text = 'allow "a" { principal.nope }\ndeny "b" { resource.nope }\n'
    policy = parse_policy(text, "p.aegis")
    expected = [(1, 13), (2, 12)]
    for source in (policy, [policy], list(policy.rules), load_texts({"p.aegis": text})):
        assert [(d.span.line, d.span.column) for d in validate(source, SCHEMA)] == expected


def test_hand_built_asts_without_spans_validate() -> None:
    rule = ast.Rule(
        "allow",
        "r",
        (ast.Compare("==", ast.Path("principal", ("mfa",)), ast.BoolLit(True)),),
    )
    (diagnostic,) = validate([rule], SCHEMA)
    assert diagnostic.code == "unguarded-optional"
    guarded = ast.Rule(
        "allow", "r", (ast.Has(ast.Path("principal", ("mfa",))), ast.Path("principal", ("mfa",)))
    )
    assert validate([guarded], SCHEMA) == ()


def test_diagnostics_are_sorted_across_files() -> None:
    policy_set = load_texts(
        {"b.aegis": 'allow "b" { principal.x }', "a.aegis": 'allow "a" {\n resource.y }'}
    )
    assert [(d.span.file, d.span.line) for d in validate(policy_set, SCHEMA)] == [
        ("a.aegis", 2), ("b.aegis", 1)
    ]
