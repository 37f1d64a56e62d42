"""Spec §8, cache transparency, through the engine's near cache: whatever the set and the
requests, and whatever the clock says between calls, a decision answered from the near cache
equals the uncached decision at that instant; and a request disguised in Python values with
the same JSON form is decided as the request itself, cached or not."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from unittest import mock

import orjson
from _strategies import outcome, requests, rule_sets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aegis.engine.request as request_module
from aegis.engine import PolicyEngine
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
                assert outcome(cached, req) == outcome(plain, req)
    stats = cached.stats
    assert stats.decisions == plain.stats.decisions
    assert stats.cache_hits + stats.cache_misses == stats.decisions


# --------------------------------------------------------------------------- disguises
#
# A Python caller may hand the engine values that are not JSON but have one JSON form (a
# tuple, a UUID, an enum member, an ``orjson.Fragment``, even one spliced across keys). The
# engine reads such a request as its JSON document on every path, and the near cache keys
# every request by that same text, so a request and its disguise are one request. The one
# value written as something it is not, a NaN (``null``), must stay invalid on every path.


def _enum_member(value: Any, mixin: type | None) -> Any:
    bases = (mixin, Enum) if mixin is not None else (Enum,)
    members = {"MEMBER": value}
    return Enum("Disguised", members, type=bases[0] if mixin is not None else None).MEMBER


@st.composite
def _disguised(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with some parts replaced by Python values orjson writes the same way."""
    how = draw(st.sampled_from(["keep", "keep", "fragment", "enum", "deep"]))
    if how == "fragment":
        return orjson.Fragment(orjson.dumps(value))
    if how == "enum" and type(value) is not bool and value is not None:
        mixin = type(value) if type(value) in (str, int) else None
        return _enum_member(value, draw(st.sampled_from([None, mixin])))
    if how == "deep" and type(value) is list:
        return tuple([draw(_disguised(item)) for item in value])
    if how == "deep" and type(value) is dict:
        items = [(key, draw(_disguised(item))) for key, item in value.items()]
        if len(items) >= 2 and draw(st.booleans()):  # a fragment spliced across two keys
            (k1, v1), (k2, v2) = items[0], items[1]
            spliced = orjson.dumps(v1) + b"," + orjson.dumps(k2) + b":" + orjson.dumps(v2)
            return {k1: orjson.Fragment(spliced), **dict(items[2:])}
        return dict(items)
    return value


@st.composite
def _twins(draw: st.DrawFn) -> tuple[dict[str, Any], Any, bool]:
    """(a valid request with a UUID string in it, its disguise, whether the disguise holds a
    NaN where the request holds ``null``: then it is invalid)."""
    original = draw(requests())
    uid = draw(st.uuids())
    original["principal"] = {**original["principal"], "uid": str(uid)}
    twin = draw(_disguised(original))
    if isinstance(twin, dict) and isinstance(twin.get("principal"), dict):
        twin["principal"] = {**twin["principal"], "uid": uid}
    poisoned = False
    if draw(st.booleans()):  # a NaN where the original has null
        original["resource"] = {**original["resource"], "note": None}
        twin = {**orjson.loads(orjson.dumps(original)), "resource": {
            **original["resource"], "note": draw(st.sampled_from([math.nan, math.inf]))}}
        poisoned = True
    return original, twin, poisoned


@given(rule_sets(max_size=5), st.lists(_twins(), min_size=1, max_size=6), st.booleans())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_disguised_requests_are_their_documents_on_every_path(
    rules: list[ast.Rule], pairs: list[tuple[dict[str, Any], Any, bool]], twin_first: bool
) -> None:
    text = _engine_text(rules, "")
    cached = PolicyEngine.from_texts(text, cache=MemoryDecisionCache())
    plain = PolicyEngine.from_texts(text)
    for _ in range(2):  # the second round answers from the near cache where it may
        for original, twin, poisoned in pairs:
            order = (twin, original) if twin_first else (original, twin)
            for req in order:
                assert outcome(cached, req) == outcome(plain, req)
            if poisoned:
                assert outcome(plain, twin)[0] == "invalid"
            else:
                assert outcome(plain, twin) == outcome(plain, original)
