"""Spec §8, cache transparency: with any cache backend — working, failing, or answering garbage
— the decision equals the uncached one, and a change of the set is never answered from the old
set's entries."""

from __future__ import annotations

from typing import Any

from _strategies import requests, rule_sets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.engine import CacheUnavailableError, PolicyEngine
from aegis.engine.cache import MemoryDecisionCache
from aegis.lang import ast, format_rule


class FlakyCache:
    """A memory cache that can be down or answer garbage."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.inner = MemoryDecisionCache(max_entries=100)

    def get(self, key: str) -> bytes | None:
        if self.mode == "down":
            raise CacheUnavailableError("cache down")
        if self.mode == "garbage":
            return b'{"decision": "ALLOW", "allowed": true}'
        return self.inner.get(key)

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if self.mode == "down":
            raise CacheUnavailableError("cache down")
        self.inner.put(key, value, ttl)


def _engine_text(rules: list[ast.Rule]) -> dict[str, str]:
    return {"p.aegis": "\n".join(format_rule(r) for r in rules)}


@given(
    st.lists(rule_sets(max_size=5), min_size=1, max_size=3),
    st.lists(requests(), min_size=1, max_size=8),
    st.sampled_from(["ok", "down", "garbage"]),
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_cached_decision_equals_uncached_across_policy_changes_and_failures(
    sets: list[list[ast.Rule]], stream: list[dict[str, Any]], mode: str
) -> None:
    cache = FlakyCache(mode)
    for rules in sets:  # each set replaces the previous one, sharing the cache
        cached = PolicyEngine.from_texts(_engine_text(rules), cache=cache)
        plain = PolicyEngine.from_texts(_engine_text(rules))
        for req in stream + stream:  # the second pass hits the cache
            assert cached.evaluate(req) == plain.evaluate(req)
