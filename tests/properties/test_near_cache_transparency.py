"""Spec §8, cache transparency, through the engine's near cache: whatever the set and the
requests, and whatever the clock says between calls, a decision answered from the near cache
equals the uncached decision at that instant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock

from _strategies import requests, rule_sets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aegis.engine.request as request_module
from aegis.engine import InvalidRequestError, PolicyEngine
from aegis.engine.cache import MemoryDecisionCache
from aegis.lang import ast, format_rule

CLOCK_RULES = [
    "",
    'allow "t-hour" { time.hour < 12 }',
    'deny "t-day" { time.day == 28 reason "weekend freeze" }',
    'allow "t-minute" { time.minute > 30 }',
]
"""Rules that read the clock: with them, a request without ``context.time`` must never be
answered from an earlier instant's decision."""

INSTANTS = [
    datetime(2026, 11, 26, 10, 15, tzinfo=UTC),
    datetime(2026, 11, 28, 23, 59, 30, tzinfo=UTC),
    datetime(2027, 1, 1, 0, 0, tzinfo=UTC),
]


class WallClock(datetime):
    """``datetime`` for ``aegis.engine.request``, with a settable ``now()``."""

    current = INSTANTS[0]

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return cls.current.astimezone(tz)


def _engine_text(rules: list[ast.Rule], clock_rule: str) -> dict[str, str]:
    return {"p.aegis": "\n".join([*(format_rule(r) for r in rules), clock_rule])}


def _outcome(engine: PolicyEngine, request: dict[str, Any]) -> Any:
    try:
        return engine.evaluate(request)
    except InvalidRequestError as exc:
        return ("invalid", str(exc))


@given(
    rule_sets(max_size=5),
    st.sampled_from(CLOCK_RULES),
    st.lists(requests(), min_size=1, max_size=8),
    st.lists(st.sampled_from(INSTANTS), min_size=2, max_size=4),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_near_cached_decisions_equal_uncached_ones_at_every_instant(
    rules: list[ast.Rule],
    clock_rule: str,
    stream: list[dict[str, Any]],
    instants: list[datetime],
) -> None:
    text = _engine_text(rules, clock_rule)
    cached = PolicyEngine.from_texts(text, cache=MemoryDecisionCache())
    plain = PolicyEngine.from_texts(text)
    with mock.patch.object(request_module, "datetime", WallClock):
        for instant in instants:  # the same stream again, maybe at another instant
            WallClock.current = instant
            for req in stream:
                assert _outcome(cached, req) == _outcome(plain, req)
    stats = cached.stats
    assert stats.decisions == plain.stats.decisions
    assert stats.cache_hits + stats.cache_misses == stats.decisions
