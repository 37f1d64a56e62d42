"""The canonical formatter: one spelling, comments kept, idempotent, round-trips (spec §8)."""

from __future__ import annotations

from aegis.lang import format_policy, load_texts, parse_policy


def fmt(text: str) -> str:
    return format_policy(parse_policy(text, "f.aegis"))


def test_canonical_layout() -> None:
    text = (
        'timezone   "Europe/Berlin"\n@owner("x") allow "a" { action in ["a","b",]  '
        'resource["kind"]=="pod" reason "why" time.hour in 8 .. 19 }\ndeny "b" {}'
    )
    assert fmt(text) == (
        'timezone "Europe/Berlin"\n'
        "\n"
        '@owner("x")\n'
        'allow "a" {\n'
        '    action in ["a", "b"]\n'
        '    resource.kind == "pod"\n'
        "    time.hour in 8..19\n"
        '    reason "why"\n'
        "}\n"
        "\n"
        'deny "b" {}\n'
    )


def test_parentheses_exactly_where_the_structure_needs_them() -> None:
    text = (
        'allow "a" { (resource.a or resource.b) and resource.c '
        "resource.a or (resource.b and resource.c) "
        "not (resource.a and resource.b) "
        "(not resource.a) == false "
        "resource.a and (resource.b and resource.c) }"
    )
    assert fmt(text).splitlines()[1:-1] == [
        "    (resource.a or resource.b) and resource.c",
        "    resource.a or resource.b and resource.c",
        "    not (resource.a and resource.b)",
        "    (not resource.a) == false",
        "    resource.a and (resource.b and resource.c)",
    ]


def test_keys_of_other_shapes_keep_brackets_and_strings_are_minimally_escaped() -> None:
    text = 'allow "a" { resource.labels["app.kubernetes.io/name"] == "caf\\u00e9 \\"q\\"\\u0007" }'
    assert fmt(text).splitlines()[1] == (
        '    resource.labels["app.kubernetes.io/name"] == "café \\"q\\"\\u0007"'
    )


def test_comments_are_kept_where_they_belong() -> None:
    text = (
        "# header\n"
        'timezone "UTC"  # zone\n'
        "# about a\n"
        'allow "a" {  # opening\n'
        "  # before the condition\n"
        '  action == "read"   # after the condition\n'
        "  # before the end\n"
        "}  # closing\n"
        "# the end\n"
    )
    assert fmt(text) == (
        "# header\n"
        "\n"
        'timezone "UTC"  # zone\n'
        "\n"
        "# about a\n"
        'allow "a" {  # opening\n'
        "    # before the condition\n"
        '    action == "read"  # after the condition\n'
        "    # before the end\n"
        "}  # closing\n"
        "\n"
        "# the end\n"
    )


def test_formatting_is_idempotent_on_a_realistic_file() -> None:
    text = (
        "# ops\n"
        '@owner("sre") @severity("high")\n'
        'deny "freeze" { action in ["scale"] time.date >= "2026-12-21" '
        'not "ic" in principal.roles reason "frozen" }  # end\n'
    )
    once = fmt(text)
    assert fmt(once) == once
    assert parse_policy(once).rules == parse_policy(text).rules


def test_version_ignores_comments_layout_file_names_and_order() -> None:
    a = load_texts(
        {"a.aegis": 'allow "x" { action == "r" }\ndeny "y" {}', "b.aegis": 'allow "z" {}'}
    )
    b = load_texts(
        {
            "other.aegis": '# c\ndeny "y" {\n}\nallow "z" {}',
            "more.aegis": 'allow "x" {\n  action=="r" # c\n}',
        }
    )
    assert a.version == b.version
    c = load_texts(
        {
            "a.aegis": 'timezone "Europe/Berlin"\nallow "x" { action == "r" }\n'
            'deny "y" {}\nallow "z" {}'
        }
    )
    assert c.version != a.version  # the zone is part of the content
