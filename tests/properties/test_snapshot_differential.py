"""Spec §8 through compiled-set snapshots: a set restored from its snapshot gives the same
whole decision object as the same set compiled from its texts (generated sets and requests,
errors and invalid requests included)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from _strategies import index_requests, large_rule_sets, outcome, requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.engine import PolicyEngine, _snapshot
from aegis.lang import PolicySet, ast, load_texts
from aegis.lang.formatter import format_rule, format_string


@pytest.fixture(autouse=True)
def _every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_snapshot, "MIN_RULES", 0)


def _texts(rules: list[ast.Rule]) -> dict[str, str]:
    """The rules as policy files, one per time zone (rules keep their zone)."""
    by_zone: dict[str, list[str]] = {}
    for rule in rules:
        by_zone.setdefault(rule.timezone, []).append(format_rule(rule))
    return {
        f"{zone.replace('/', '-')}.aegis": f"timezone {format_string(zone)}\n\n"
        + "\n\n".join(body)
        + "\n"
        for zone, body in by_zone.items()
    }



@given(
    large_rule_sets(max_rules=300),
    st.lists(index_requests() | requests(), min_size=1, max_size=15),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_restored_equals_compiled_on_generated_sets(
    tmp_path: Path, rules: list[ast.Rule], stream: list[dict[str, Any]]
) -> None:
    if not rules:
        return
    texts = _texts(rules)
    fresh = PolicyEngine(load_texts(texts), compiled_cache=False)
    directory = tmp_path / hashlib.sha256(repr(sorted(texts.items())).encode()).hexdigest()
    PolicyEngine.from_texts(texts, compiled_cache=directory)
    restored = PolicyEngine.from_texts(texts, compiled_cache=directory)
    assert not isinstance(restored._compiled._source, PolicySet)
    for request in stream:
        assert outcome(restored, request) == outcome(fresh, request)
