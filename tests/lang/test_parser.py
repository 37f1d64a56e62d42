"""The parser: AST shapes, lexical rules of spec §2, diagnostics with file:line:col (H7)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from aegis.lang import PolicyLoadError, ast, load_texts, parse_policy
from aegis.lang._parser import MAX_DEPTH


def conditions(body: str) -> tuple[ast.Expr, ...]:
    return parse_policy(f'allow "r" {{ {body} }}').rules[0].conditions


def diagnostics(text: str, file: str = "p.aegis") -> list[tuple[str, int, int, str]]:
    with pytest.raises(PolicyLoadError) as info:
        parse_policy(text, file)
    return [(d.code, d.span.line, d.span.column, d.message) for d in info.value.diagnostics]


def test_spec_example_parses_to_the_expected_rules() -> None:
    policy = parse_policy(
        'timezone "Europe/Berlin"\n'
        '@owner("platform")\n'
        'allow "sre-may-restart" {\n'
        '    action in ["restart_pod", "rollback_deployment"]\n'
        '    "sre" in principal.roles\n'
        "    time.hour in 8..19\n"
        "}\n"
        'deny "freeze" { action == "scale" reason "frozen" }\n'
    )
    allow, deny = policy.rules
    assert policy.timezone == "Europe/Berlin"
    assert allow.timezone == deny.timezone == "Europe/Berlin"
    assert allow.annotations == (ast.Annotation("owner", "platform"),)
    assert allow.conditions == (
        ast.Membership(
            ast.Path("action"),
            ast.ListLit((ast.StringLit("restart_pod"), ast.StringLit("rollback_deployment"))),
        ),
        ast.Membership(ast.StringLit("sre"), ast.Path("principal", ("roles",))),
        ast.Membership(
            ast.Path("time", ("hour",)),
            ast.RangeLit(ast.NumberLit(Decimal(8)), ast.NumberLit(Decimal(19))),
        ),
    )
    assert deny.reason == "frozen"
    assert deny.conditions == (ast.Compare("==", ast.Path("action"), ast.StringLit("scale")),)


def test_spans_point_at_the_source_and_take_no_part_in_equality() -> None:
    one = parse_policy('allow "a" {\n  resource.kind == "x"\n}', "one.aegis")
    two = parse_policy('allow "a" { resource.kind=="x" }', "two.aegis")
    assert one.rules == two.rules
    compare = one.rules[0].conditions[0]
    assert isinstance(compare, ast.Compare)
    assert (compare.span.file, compare.span.line, compare.span.column) == ("one.aegis", 2, 3)
    assert isinstance(compare.left, ast.Path)
    assert compare.left.key_spans[0].column == 11  # the `.kind` step


def test_precedence_or_and_not_comparison() -> None:
    (expr,) = conditions("not resource.a == 1 and resource.b or resource.c")
    assert isinstance(expr, ast.Or)
    first, second = expr.operands
    assert isinstance(first, ast.And)
    assert isinstance(first.operands[0], ast.Not)
    assert isinstance(first.operands[0].operand, ast.Compare)
    assert second == ast.Path("resource", ("c",))


def test_parentheses_only_group() -> None:
    assert conditions("(resource.a)") == conditions("resource.a")
    (expr,) = conditions("resource.a and (resource.b and resource.c)")
    assert isinstance(expr, ast.And)
    assert isinstance(expr.operands[1], ast.And)  # the nesting as written is kept


def test_conditions_need_no_separator_even_on_one_line() -> None:
    exprs = conditions('resource.a == 1 resource.b "x" in principal.roles true -2')
    assert len(exprs) == 5
    assert exprs[-1] == ast.NumberLit(Decimal(-2))


def test_keywords_are_attribute_keys_after_a_dot() -> None:
    (expr,) = conditions("context.time.in == resource.not")
    assert expr == ast.Compare(
        "==", ast.Path("context", ("time", "in")), ast.Path("resource", ("not",))
    )


def test_bracket_keys_are_one_key_and_equal_to_dotted_keys() -> None:
    (expr,) = conditions('resource.labels["app.kubernetes.io/name"] == resource["kind"]')
    assert expr == ast.Compare(
        "==",
        ast.Path("resource", ("labels", "app.kubernetes.io/name")),
        ast.Path("resource", ("kind",)),
    )


@pytest.mark.parametrize(
    "text",
    ["resource.a not in [1]", "resource.a not\n   in [1]", "resource.a not\tin [1]"],
)
def test_not_in_is_one_token_across_whitespace(text: str) -> None:
    (expr,) = conditions(text)
    assert isinstance(expr, ast.Membership)
    assert expr.negated


def test_not_followed_by_something_else_starts_a_negation() -> None:
    exprs = conditions("resource.a not resource.b")
    assert exprs == (ast.Path("resource", ("a",)), ast.Not(ast.Path("resource", ("b",))))


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r'"C:\\tmp"', "C:\\tmp"),
        (r'"a\nb\tc"', "a\nb\tc"),
        (r'"caf\u00e9"', "café"),
        (r'"caf\u00E9"', "café"),
        (r'"\ud83d\ude80"', "\U0001f680"),
        ('"Zürich"', "Zürich"),
        ('"#1"', "#1"),
    ],
)
def test_string_escapes(source: str, value: str) -> None:
    (expr,) = conditions(f"resource.a == {source}")
    assert isinstance(expr, ast.Compare)
    assert expr.right == ast.StringLit(value)


@pytest.mark.parametrize(
    "source", [r'"\q"', r'"ab\x41"', r'"\ud83d"', r'"\ude80"', r'"\u12"', r'"\ud83dx"', r'"\/"']
)
def test_bad_escapes_are_errors_at_the_backslash(source: str) -> None:
    text = f'allow "r" {{ resource.a == {source} }}'
    found = diagnostics(text)
    column = text.index("\\") + 1
    assert [(code, line, col) for code, line, col, _ in found] == [("invalid-escape", 1, column)]


@pytest.mark.parametrize(
    ("number", "value"),
    [
        ("42", Decimal(42)),
        ("-3", Decimal(-3)),
        ("0.75", Decimal("0.75")),
        ("-1.5", -Decimal("1.5")),
    ],
)
def test_numbers(number: str, value: Decimal) -> None:
    (expr,) = conditions(f"resource.a == {number}")
    assert isinstance(expr, ast.Compare)
    assert expr.right == ast.NumberLit(value)


@pytest.mark.parametrize("number", [".5", "1.", "1e3", "+3", "1.2.3", "0x10"])
def test_malformed_numbers_are_syntax_errors(number: str) -> None:
    found = diagnostics(f'allow "r" {{ resource.a == {number} }}')
    assert [(code, line, col) for code, line, col, _ in found] == [("syntax", 1, 27)]


def test_a_decimal_next_to_a_range() -> None:
    (expr,) = conditions("resource.a in 0.5..19")
    assert isinstance(expr, ast.Membership)
    assert expr.container == ast.RangeLit(ast.NumberLit(Decimal("0.5")), ast.NumberLit(Decimal(19)))


# -- H7: labelled syntax errors, each with its code, message and line:col -------------------
@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('allow "a" {\n  action == "x"\nallow "b" {}', 3, 1, "missing its closing `}`"),
        ('allow "a" {\n  resource.kind = "doc"\n}', 2, 17, "unexpected `=`"),
        ('allow "a" { action !in ["x"] }', 1, 20, "`!in` is not an operator"),
        ('allow "a" { ["x"] }', 1, 13, "a list can only appear on the right of `in`"),
        ('allow "a" { resource.a == "abc\n }', 1, 27, "unterminated string"),
        ('allow "a" { action == "x"', 1, 26, "unexpected end of file"),
        ('allow "a" { action == "x" == "y" }', 1, 27, "unexpected `==`"),
        ("allow a { }", 1, 7, "unexpected `a`"),
        ('allow "a" { resource.0 }', 1, 22, "unexpected"),
    ],
)
def test_syntax_errors_point_at_the_first_token_that_cannot_continue(
    text: str, line: int, column: int, message: str
) -> None:
    found = diagnostics(text)
    assert found[0][:3] == ("syntax", line, column)
    assert message in found[0][3]


def test_reason_twice_and_timezone_twice_and_unknown_zone() -> None:
    found = diagnostics(
        'timezone "UTC"\ntimezone "Mars/Olympus"\nallow "a" { reason "x" reason "y" }'
    )
    assert [(c, line, col) for c, line, col, _ in found] == [
        ("duplicate-timezone", 2, 10),
        ("unknown-timezone", 2, 10),
        ("duplicate-reason", 3, 24),
    ]


def test_a_directive_after_a_rule_is_an_error() -> None:
    found = diagnostics('allow "a" {}\ntimezone "UTC"')
    assert found[0][:3] == ("syntax", 2, 1)


def test_every_error_of_a_file_is_reported_not_only_the_first() -> None:
    text = (
        'allow "a" { resource.a = 1 }\n'
        'allow "ok" {}\n'
        'deny "b" { action !in ["x"] }\n'
        'allow "c" { resource.a == "\\q" }\n'
    )
    found = diagnostics(text)
    assert [(line, col) for _, line, col, _ in found] == [(1, 24), (3, 19), (4, 28)]


def test_every_error_of_every_file_of_a_set_is_reported() -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_texts(
            {
                "a.aegis": 'allow "x" {}',
                "b.aegis": 'deny "x" {}\nallow "y" { resource.a = 1 }',
                "c.aegis": 'deny "y" { resource.b == "\\z" }',
                "d.aegis": 'deny "x" {}',
            }
        )
    found = [(d.code, str(d.span)) for d in info.value.diagnostics]
    assert found == [
        ("syntax", "b.aegis:2:24"),
        ("invalid-escape", "c.aegis:1:27"),
        ("duplicate-rule", "d.aegis:1:6"),
    ]
    assert "already defined at a.aegis:1:7" in info.value.diagnostics[2].message


def test_duplicate_names_compare_decoded_names() -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_texts({"a.aegis": 'allow "ab" {}\ndeny "a\\u0062" {}'})
    (diagnostic,) = info.value.diagnostics
    assert diagnostic.code == "duplicate-rule"
    assert str(diagnostic.span) == "a.aegis:2:6"


def test_diagnostics_render_file_line_col_code_message_and_a_caret() -> None:
    with pytest.raises(PolicyLoadError) as info:
        parse_policy('allow "a" {\n    resource.kind = "doc"\n}', "prod.aegis")
    text = str(info.value.diagnostics[0])
    assert text.splitlines() == [
        "prod.aegis:2:19: error[syntax]: unexpected `=`",
        "  |",
        '2 |     resource.kind = "doc"',
        "  |                   ^",
        "  = help: compare with `==`",
    ]


# -- robustness (INP-5): deep nesting and huge files give a diagnostic, fast -----------------
def test_INP5_ten_thousand_nested_parentheses_give_a_clear_diagnostic_quickly() -> None:
    text = 'allow "a" { ' + "(" * 10_000 + "true" + ")" * 10_000 + " }"
    started = time.perf_counter()
    found = diagnostics(text)
    assert time.perf_counter() - started < 1.0
    assert found[0][0] == "too-deep"
    assert found[0][1:3] == (1, 13 + MAX_DEPTH)


def test_INP5_ten_thousand_nots_give_a_clear_diagnostic_quickly() -> None:
    started = time.perf_counter()
    found = diagnostics('allow "a" { ' + "not " * 10_000 + "true }")
    assert time.perf_counter() - started < 2.0
    assert found[0][0] == "too-deep"


def test_INP5_a_five_mebibyte_file_gives_a_clear_diagnostic_quickly() -> None:
    text = ('allow "r" { action == "x" }\n' * 200_000)[: 5 * 1024 * 1024]
    started = time.perf_counter()
    found = diagnostics(text)
    assert time.perf_counter() - started < 1.0
    assert found[0][0] == "file-too-large"


def test_parentheses_inside_strings_and_comments_do_not_count() -> None:
    text = 'allow "a" { resource.a == "' + "(" * 100 + '" }  # ' + "(" * 100
    assert parse_policy(text).rules[0].name == "a"


def test_loading_the_same_content_again_returns_the_same_set() -> None:
    texts = {"a.aegis": 'allow "a" { action == "a" }', "b.aegis": 'deny "b" { action == "b" }'}
    first = load_texts(texts)
    assert load_texts(dict(reversed(list(texts.items())))) is first  # order does not matter
    other = load_texts({**texts, "b.aegis": 'deny "b" { action == "c" }'})
    assert other is not first
    assert other.version != first.version
    renamed = load_texts({"x.aegis": texts["a.aegis"], "b.aegis": texts["b.aegis"]})
    assert renamed is not first  # file names are part of the set (spans, diagnostics)
    assert renamed.version == first.version  # …but not of its version (spec §6)


def test_a_set_that_does_not_load_fails_every_time() -> None:
    texts = {"bad.aegis": 'allow "a" { action == }'}
    for _ in range(2):
        with pytest.raises(PolicyLoadError):
            load_texts(texts)
