"""Spec §8 cache transparency through ``PolicyEngine(cache=...)``, as a Hypothesis property.

Several policy sets (versions) share one cache, requests are decided in a random order by
random versions, and the cache may fail in every way a backend can: raise
``CacheUnavailableError`` on ``get`` or ``put``, return garbage, return a valid decision
stored under another version, or forget entries. Every decision must equal the uncached
decision of the same set, and failures must be counted.
"""

from __future__ import annotations

import functools
import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine import PolicyEngine
from aegis.engine.cache import MemoryDecisionCache
from aegis.engine.errors import CacheUnavailableError
from aegis.lang import PolicySet, load_texts

POOL = {
    "sre": 'allow "sre" { action in ["restart_pod", "read_logs"] "sre" in principal.roles }',
    "hours": 'allow "hours" { action == "scale" time.hour in 8..17 }',
    "owner": 'allow "owner" { has resource.owner resource.owner == principal.id }',
    "replicas": 'deny "replicas" { resource.replicas > 2 reason "too many" }',
    "prod": 'deny "prod" { resource.namespace like "prod*" action != "read_logs" }',
    "mfa": 'deny "mfa" { action == "exec" not principal.mfa }',
    "any": 'allow "any" { }',
}

_requests = st.fixed_dictionaries(
    {
        "principal": st.fixed_dictionaries(
            {"id": st.sampled_from(["alice", "bob"]),
             "roles": st.sampled_from([["sre"], ["dev"], []])},
            optional={"mfa": st.sampled_from([True, False, None, 1])},
        ),
        "action": st.sampled_from(["restart_pod", "read_logs", "scale", "exec"]),
        "resource": st.fixed_dictionaries(
            {"namespace": st.sampled_from(["prod", "prod-eu", "dev"])},
            optional={
                "owner": st.sampled_from(["alice", "bob", None]),
                "replicas": st.sampled_from([1, 3, 3.0, "3", True]),
            },
        ),
        "context": st.fixed_dictionaries(
            {"time": st.sampled_from([1_795_680_000, 1_795_683_600, 1_795_712_400])}
        ),
    }
)  # fmt: skip


class UnreliableCache:
    """A memory cache that fails, lies and forgets at random (a DecisionCache)."""

    def __init__(self, rng: random.Random, foreign: bytes) -> None:
        self.inner = MemoryDecisionCache()
        self.rng = rng
        self.foreign = foreign
        self.injected = 0  # failures the engine must notice, count and bypass

    def get(self, key: str) -> bytes | None:
        roll = self.rng.random()
        if roll < 0.35:
            self.injected += 1
        if roll < 0.15:
            raise CacheUnavailableError("injected get failure")
        if roll < 0.25:
            return b'{"decision": "ALLOW", "allowed": true}'  # garbage, not a decision
        if roll < 0.35:
            return self.foreign  # a real decision, of another policy version
        if roll < 0.40:
            return None  # forgot
        return self.inner.get(key)

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if self.rng.random() < 0.15:
            self.injected += 1
            raise CacheUnavailableError("injected put failure")
        self.inner.put(key, value, ttl)


_sets = st.lists(
    st.sets(st.sampled_from(sorted(POOL)), min_size=0, max_size=len(POOL)),
    min_size=1,
    max_size=3,
)


@functools.cache
def _policy_set(chosen: frozenset[str]) -> PolicySet:
    return load_texts({"p.aegis": "\n".join(POOL[name] for name in sorted(chosen))})


@functools.cache
def _plain(chosen: frozenset[str]) -> PolicyEngine:
    return PolicyEngine(_policy_set(chosen))


def _engines(sets: list[set[str]], cache: Any) -> tuple[list[PolicyEngine], list[PolicyEngine]]:
    keys = [frozenset(chosen) for chosen in sets]
    cached = [PolicyEngine(_policy_set(k), cache=cache) for k in keys]
    return cached, [_plain(k) for k in keys]


_OTHER = PolicyEngine.from_texts({"o.aegis": 'allow "other" { }'})
FOREIGN = json.dumps(
    _OTHER.evaluate({"principal": {}, "action": "x", "resource": {}}).to_dict()
).encode()


@settings(max_examples=100, deadline=None)
@given(_sets, st.lists(st.tuples(st.integers(0, 2), _requests), min_size=1, max_size=12))
def test_cached_decision_equals_uncached_across_policy_changes(
    sets: list[set[str]], steps: list[tuple[int, dict[str, Any]]]
) -> None:
    cached, plain = _engines(sets, MemoryDecisionCache())
    for which, request in steps:
        i = which % len(sets)
        assert cached[i].evaluate(request).to_dict() == plain[i].evaluate(request).to_dict()
        # asking twice answers from the cache when the decision was clean
        assert cached[i].evaluate(request).to_dict() == plain[i].evaluate(request).to_dict()


@settings(max_examples=100, deadline=None)
@given(
    _sets,
    st.lists(st.tuples(st.integers(0, 2), _requests), min_size=1, max_size=12),
    st.randoms(use_true_random=False),
)
def test_CACHE2_cached_decision_equals_uncached_with_the_cache_failing(
    sets: list[set[str]], steps: list[tuple[int, dict[str, Any]]], rng: random.Random
) -> None:
    cache = UnreliableCache(rng, FOREIGN)
    cached, plain = _engines(sets, cache)
    for which, request in steps:
        i = which % len(sets)
        assert cached[i].evaluate(request).to_dict() == plain[i].evaluate(request).to_dict()
    stats = [engine.stats for engine in cached]
    assert sum(s.cache_errors for s in stats) == cache.injected  # CACHE-2: each one counted
    assert sum(s.cache_hits + s.cache_misses for s in stats) + cache.injected >= len(steps)
