"""The engine's near cache: an in-process L1 from a request's JSON text to its decision.

What is checked: the key (the text ``orjson`` writes) tells apart every pair of values Python
equates but the engine may not (``True``/``1``, ``1``/``1.0``, ``-0.0``/``0.0``) and refuses
what it cannot write; values written alike (a tuple and a list, a UUID and its string, an enum
member and its value, a fragment and its text) are read alike on every path, and a NaN, which
``orjson`` writes as ``null``, never meets a ``null``'s decision; only validated, clean,
clock-independent decisions enter (CACHE-1); entries expire with the cache's TTL and the map
stays bounded; hits are counted exactly and audited; a broken or lying L2 never reaches it
(CACHE-2); it is safe under threads.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum, IntEnum
from types import MappingProxyType
from typing import Any

import orjson
import pytest

import aegis.engine.cache._near as near_module
import aegis.engine.request as request_module
from aegis.engine import CacheUnavailableError, Decision, InvalidRequestError, PolicyEngine
from aegis.engine.audit import MemoryAuditSink
from aegis.engine.cache import MemoryDecisionCache
from aegis.engine.cache._near import MAX_KEY_BYTES, NearCache, near_key
from aegis.lang.schema import parse_schema

TIMED = """
allow "office-hours" { action == "restart_pod" "sre" in principal.roles time.hour in 8..17 }
deny "no-prod" { resource.namespace == "prod" reason "not prod" }
"""

TIMELESS = """
allow "sre" { action == "restart_pod" "sre" in principal.roles }
deny "no-prod" { resource.namespace == "prod" reason "not prod" }
"""

SCHEMA = """\
principal:
  id: string
  roles: [string]
action: [restart_pod, scale]
resource:
  kind: string
  namespace: string
"""


def request(time: Any = "2026-11-26T10:15:00Z", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "principal": {"id": "alice", "roles": ["sre"]},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "staging"},
        "context": {"ticket": "T-1"} if time is None else {"time": time, "ticket": "T-1"},
    }
    base.update(changes)
    return base


def engine(text: str = TIMED, **options: Any) -> PolicyEngine:
    options.setdefault("cache", MemoryDecisionCache())
    return PolicyEngine.from_texts({"p.aegis": text}, **options)


def near_of(subject: PolicyEngine) -> NearCache:
    near = subject._near  # the engine builds it on first use
    assert near is not None
    return near


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeWallClock(datetime):
    """Stands in for ``datetime`` in ``aegis.engine.request``: ``now()`` is settable."""

    current = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return cls.current.astimezone(tz)


# --------------------------------------------------------------------------- the key


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (True, 1),
        (False, 0),
        (1, 1.0),
        (0.0, -0.0),
        (1e16, 10**16),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # equal dicts, other order: only a miss
        ("1", 1),
        (None, 0),
        ({"x": [True]}, {"x": [1]}),
    ],
)
def test_keys_differ_for_values_python_may_equate(left: Any, right: Any) -> None:
    assert near_key(left) != near_key(right)
    assert near_key(request(action=left)) != near_key(request(action=right))


def test_keys_do_not_depend_on_sharing_or_interning() -> None:
    built = "".join(["res", "tart_pod"])
    assert built is not sys.intern("restart_pod")
    shared_roles = ["sre"]
    one = request(action=built, principal={"id": "alice", "roles": shared_roles})
    two = request(action=sys.intern("restart_pod"), principal={"id": "alice", "roles": ["sre"]})
    two["resource"]["extra"] = shared_roles
    one["resource"]["extra"] = ["sre"]
    assert near_key(one) == near_key(two)


class Text(str):
    pass


class Number(int):
    pass


@dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        Text("restart_pod"),
        Number(3),
        Decimal("1.5"),
        OrderedDict(a=1),
        MappingProxyType({"a": 1}),
        datetime(2026, 1, 1, tzinfo=UTC),
        Point(1),
        b"pod",
        2**64,
        "\ud800",
        {1: "a"},
        object(),
    ],
)
def test_values_orjson_does_not_write_as_json_have_no_key(value: Any) -> None:
    assert near_key(value) is None
    assert near_key(request(resource={"kind": value})) is None


def test_cycles_and_deep_nesting_have_no_key() -> None:
    looped: list[Any] = []
    looped.append(looped)
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert near_key(looped) is None
    assert near_key(deep) is None
    subject, plain = engine(), engine(cache=None)
    nested = request(resource={"kind": "pod", "namespace": "x", "v": deep})
    assert subject.evaluate(nested) == plain.evaluate(nested)  # the full path, keyless
    assert len(near_of(subject)) == 0


def test_foreign_types_take_the_full_path_every_time() -> None:
    subject, plain = engine(), engine(cache=None)
    odd = request(resource={"kind": Text("pod"), "namespace": "staging", "size": Decimal("2")})
    for _ in range(3):
        assert subject.evaluate(odd) == plain.evaluate(odd)
    assert len(near_of(subject)) == 0
    assert subject.stats.cache_hits == 2  # answered by the L2 (keyed on the projection)


def test_bytes_like_values_have_no_key_and_are_never_valid() -> None:
    subject = engine()
    for value in (b"pod", bytearray(b"pod"), memoryview(b"pod")):
        for _ in range(2):
            with pytest.raises(InvalidRequestError):
                subject.evaluate(request(resource={"kind": value, "namespace": "x"}))
    assert len(near_of(subject)) == 0


# --------------------------------------------------------------------------- documents


class Role(Enum):
    SRE = "sre"


class Action(str, Enum):  # noqa: UP042 (a mixin: str() is "Action.RESTART", not its value)
    RESTART = "restart_pod"


class Replicas(IntEnum):
    THREE = 3


def _disguises() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    uid = uuid.UUID("5f0c6a8e-9a55-4c6b-9d43-2b0e8f6f1a10")
    plain = request(principal={"id": str(uid), "roles": ["sre"]})
    plain["resource"]["replicas"] = 3
    return [
        (plain, {**plain, "principal": {"id": uid, "roles": ("sre",)}}),
        (plain, {**plain, "principal": {"id": str(uid), "roles": [Role.SRE]}}),
        (plain, {**plain, "action": Action.RESTART}),
        (plain, {**plain, "resource": {**plain["resource"], "replicas": Replicas.THREE}}),
        (plain, {**plain, "resource": orjson.Fragment(orjson.dumps(plain["resource"]))}),
        (
            plain,  # a fragment spliced across two keys: the document is what counts
            {
                **plain,
                "resource": {
                    "kind": orjson.Fragment(b'"pod","namespace":"staging"'),
                    "replicas": 3,
                },
            },
        ),
    ]


@pytest.mark.parametrize(("plain", "disguised"), _disguises())
def test_python_values_with_a_json_form_are_read_as_their_document(
    plain: dict[str, Any], disguised: dict[str, Any]
) -> None:
    assert near_key(disguised) == near_key(plain)
    uncached = engine(cache=None)
    assert uncached.evaluate(disguised) == uncached.evaluate(plain)
    assert request_module.parse_request(disguised) == request_module.parse_request(plain)
    subject = engine()
    first = subject.evaluate(disguised)  # put by the disguise, hit by the plain request
    assert subject.evaluate(plain) == first == uncached.evaluate(plain)
    assert subject.stats.cache_hits == 1


def test_a_mixin_enum_is_read_as_its_value_not_as_its_str() -> None:
    assert str(Action.RESTART) != "restart_pod"
    assert (
        PolicyEngine.from_texts({"p.aegis": TIMELESS})
        .evaluate(request(action=Action.RESTART))
        .allowed
    )


@pytest.mark.parametrize("poison", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_never_meets_the_decision_of_a_null(poison: float) -> None:
    subject, uncached = engine(), engine(cache=None)
    with_null = request(resource={"kind": "pod", "namespace": "staging", "note": None})
    poisoned = request(resource={"kind": "pod", "namespace": "staging", "note": poison})
    assert near_key(with_null) == near_key(poisoned)  # orjson writes both as null
    for _ in range(2):
        assert subject.evaluate(with_null) == uncached.evaluate(with_null)
        for engine_ in (subject, uncached):
            with pytest.raises(InvalidRequestError, match="not a finite number"):
                engine_.evaluate(poisoned)
    hidden = Enum("Hidden", {"X": poison}).X  # a NaN inside an enum member
    with pytest.raises(InvalidRequestError):
        subject.evaluate(request(resource={"kind": "pod", "namespace": "staging", "note": hidden}))
    near = near_of(subject)
    assert (len(near.entries), len(near.guarded)) == (0, 1)  # the null request, off the hot path
    assert subject.stats.cache_hits == 1  # its second call, from the guarded map


def test_requests_holding_null_are_near_cached_off_the_hot_path() -> None:
    subject, uncached = engine(), engine(cache=None)
    with_null = request(resource={"kind": "pod", "namespace": "staging", "owner": None})
    for _ in range(3):
        assert subject.evaluate(with_null) == uncached.evaluate(with_null)
    assert subject.evaluate_many([with_null]) == [uncached.evaluate(with_null)]
    assert asyncio.run(subject.aevaluate(with_null)) == uncached.evaluate(with_null)
    near = near_of(subject)
    assert (len(near.entries), len(near.guarded)) == (0, 1)
    stats = subject.stats
    assert (stats.decisions, stats.cache_hits) == (5, 4)


@pytest.mark.parametrize("broken", [b"", b"{", b'"pod"}', b"NaN", b'"a" "b"'])
def test_a_fragment_that_is_not_json_is_invalid_on_every_path(broken: bytes) -> None:
    subject, uncached = engine(), engine(cache=None)
    bad = request(resource={"kind": orjson.Fragment(broken), "namespace": "staging"})
    for _ in range(2):
        for engine_ in (subject, uncached):
            with pytest.raises(InvalidRequestError):
                engine_.evaluate(bad)
    assert len(near_of(subject)) == 0


def test_a_disguised_request_is_checked_against_the_schema_as_its_document() -> None:
    subject = engine(TIMELESS, schema=parse_schema(SCHEMA))
    disguised = request(action=Action.RESTART, principal={"id": "a", "roles": (Role.SRE,)})
    assert subject.evaluate(disguised).allowed
    assert subject.evaluate(disguised).allowed  # from the near cache
    with pytest.raises(InvalidRequestError, match="schema"):
        subject.evaluate(request(principal={"id": uuid.uuid4(), "roles": 7}))


def test_a_disguised_request_is_audited_as_its_document() -> None:
    sink = MemoryAuditSink()
    subject = engine(audit=sink)
    uid = uuid.uuid4()
    subject.evaluate(request(principal={"id": uid, "roles": (Role.SRE,)}))
    subject.evaluate(request(principal={"id": uid, "roles": (Role.SRE,)}))  # a near hit
    records = sink.records("decisions")
    assert len(records) == 2
    for record in records:
        assert record.request["principal"] == {"id": str(uid), "roles": ["sre"]}


# --------------------------------------------------------------------------- what enters


def test_a_near_hit_returns_the_decision_of_the_full_path() -> None:
    subject, plain = engine(), engine(cache=None)
    req = request()
    first = subject.evaluate(req)
    second = subject.evaluate(req)
    third = subject.evaluate(request())  # an equal request, other objects
    assert first == second == third == plain.evaluate(req)
    assert second is first and third is first  # decisions are immutable: shared
    assert len(near_of(subject)) == 1
    stats = subject.stats
    assert (stats.decisions, stats.cache_hits, stats.cache_misses) == (3, 2, 1)


def test_CACHE1_invalid_requests_raise_on_every_call_and_never_enter() -> None:
    subject = engine()
    broken = [
        request(action=3),
        request(time="yesterday"),
        request(principal=None),
        {**request(), "extra": 1},
    ]
    for _ in range(3):
        for req in broken:
            with pytest.raises(InvalidRequestError):
                subject.evaluate(req)
    assert len(near_of(subject)) == 0
    assert subject.stats.decisions == 0


def test_CACHE1_schema_nonconforming_requests_raise_on_every_call() -> None:
    subject = engine(schema=parse_schema(SCHEMA))
    conforming = request()
    assert subject.evaluate(conforming) == subject.evaluate(conforming)
    assert subject.stats.cache_hits == 1
    for req in (request(action="delete"), request(resource={"kind": "pod", "namespace": 3})):
        for _ in range(3):
            with pytest.raises(InvalidRequestError, match="does not conform to the schema"):
                subject.evaluate(req)
    assert len(near_of(subject)) == 1


def test_CACHE1_decisions_with_errors_never_enter_the_near_cache() -> None:
    subject = engine()
    broken = request(principal={"id": "x"})  # roles missing: the allow rule errors
    for _ in range(3):
        assert subject.evaluate(broken).errors
    assert len(near_of(subject)) == 0
    assert subject.stats.cache_hits == 0


def test_requests_without_time_are_never_near_cached_when_the_set_reads_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(request_module, "datetime", FakeWallClock)
    subject, plain = engine(TIMED), engine(TIMED, cache=None)
    req = request(time=None)
    for hour, allowed in ((10, True), (20, False), (10, True), (20, False)):
        monkeypatch.setattr(FakeWallClock, "current", datetime(2026, 11, 26, hour, tzinfo=UTC))
        assert subject.evaluate(req).allowed is allowed
        assert subject.evaluate(req) == plain.evaluate(req)
    assert len(near_of(subject)) == 0


def test_clock_dependent_requests_follow_now() -> None:
    subject = engine(TIMED)
    req = request(time=None)
    morning = datetime(2026, 11, 26, 10, tzinfo=UTC)
    evening = datetime(2026, 11, 26, 20, tzinfo=UTC)
    for _ in range(2):
        assert subject.evaluate(req, now=morning).allowed
        assert not subject.evaluate(req, now=evening).allowed


def test_requests_with_their_own_time_are_near_cached_whatever_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(request_module, "datetime", FakeWallClock)
    subject = engine(TIMED)
    req = request(time="2026-11-26T10:15:00Z")
    assert subject.evaluate(req).allowed
    monkeypatch.setattr(FakeWallClock, "current", datetime(2026, 11, 26, 23, tzinfo=UTC))
    assert subject.evaluate(req).allowed  # decided by context.time, not by the clock
    assert len(near_of(subject)) == 1


def test_a_set_that_reads_no_time_near_caches_requests_without_time() -> None:
    subject = engine(TIMELESS)
    req = request(time=None)
    for _ in range(3):
        assert subject.evaluate(req).allowed
    assert len(near_of(subject)) == 1
    assert subject.stats.cache_hits == 2


def test_now_skips_the_near_cache_and_is_validated_on_every_call() -> None:
    subject = engine(TIMELESS)
    req = request()
    subject.evaluate(req)
    assert subject.evaluate(req, now=datetime(2026, 11, 26, 10, tzinfo=UTC)).allowed
    for _ in range(2):
        with pytest.raises(InvalidRequestError, match="timezone-aware"):
            subject.evaluate(req, now=datetime(2026, 11, 26, 10))  # naive
    assert near_of(subject).hit_count() == 0
    assert subject.stats.cache_hits == 1  # the L2 answered the call with `now`


def test_an_engine_without_a_cache_has_no_near_cache() -> None:
    subject = engine(cache=None)
    req = request()
    subject.evaluate(req)
    subject.evaluate(req)
    assert subject._near is None
    assert subject.stats.cache_hits == 0


# --------------------------------------------------------------------------- CACHE-2


class LyingCache:
    """An L2 that is down, or answers well-formed lies and garbage."""

    def __init__(self, mode: str, lie: bytes = b"") -> None:
        self.mode = mode
        self.lie = lie

    def get(self, key: str) -> bytes | None:
        if self.mode == "down":
            raise CacheUnavailableError("cache down")
        return self.lie

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if self.mode == "down":
            raise CacheUnavailableError("cache down")


@pytest.mark.parametrize(
    "lie",
    [
        b'{"decision": "ALLOW", "allowed": true}',
        b"\xff garbage",
        # a well-formed decision of another policy version
        b'{"decision":"ALLOW","allowed":true,"reason":"x","allow":[],"deny":[],"errors":[],'
        b'"version":"0000"}',
    ],
)
def test_CACHE2_garbage_in_the_l2_never_reaches_the_near_cache(lie: bytes) -> None:
    subject, plain = engine(cache=LyingCache("garbage", lie)), engine(cache=None)
    denied = request(resource={"kind": "pod", "namespace": "prod"})
    for _ in range(3):
        assert subject.evaluate(denied) == plain.evaluate(denied)
    stats = subject.stats
    assert (stats.cache_errors, stats.cache_hits) == (1, 2)  # then the engine's own decision


def test_CACHE2_an_l2_that_is_down_still_fills_the_near_cache() -> None:
    subject, plain = engine(cache=LyingCache("down")), engine(cache=None)
    for _ in range(3):
        assert subject.evaluate(request()) == plain.evaluate(request())
    stats = subject.stats
    assert (stats.decisions, stats.cache_errors, stats.cache_hits) == (3, 1, 2)


# --------------------------------------------------------------------------- TTL and bounds


def test_CACHE1_near_entries_expire_with_the_cache_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeMonotonic()
    monkeypatch.setattr(near_module, "_monotonic", clock)
    subject = engine(cache=MemoryDecisionCache(clock=clock), cache_ttl=5)
    req = request()
    subject.evaluate(req)
    clock.now += 4.9
    subject.evaluate(req)
    assert subject.stats.cache_hits == 1
    clock.now += 0.1  # 5 s after the put: both levels have expired
    subject.evaluate(req)
    stats = subject.stats
    assert (stats.cache_hits, stats.cache_misses) == (1, 2)
    clock.now += 1
    subject.evaluate(req)  # renewed by the miss
    assert subject.stats.cache_hits == 2


def test_CACHE1_the_near_ttl_is_the_backends_default_and_never_above_60_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(near_module, "_monotonic", FakeMonotonic())
    subject = engine(cache=MemoryDecisionCache(ttl=2))
    subject.evaluate(request())
    assert near_of(subject)._ttl == 2

    class Lenient(LyingCache):
        ttl = 3600.0

    other = engine(cache=Lenient("garbage", b""), cache_ttl=None)
    other.evaluate(request())
    assert near_of(other)._ttl == 60


def test_the_near_cache_is_bounded_in_entries_and_bytes() -> None:
    decision = engine(cache=None).evaluate(request())
    near = NearCache(10, max_entries=3, max_bytes=1000, clock=FakeMonotonic())
    for i in range(5):
        near.put(b"k%d" % i, decision)
    assert list(near.entries) == [b"k2", b"k3", b"k4"]
    near.put(b"k2", decision)  # renewed: now the newest
    near.put(b"k5", decision)
    assert list(near.entries) == [b"k4", b"k2", b"k5"]
    by_bytes = NearCache(10, max_entries=100, max_bytes=1000, clock=FakeMonotonic())
    for key in (b"a", b"b", b"x" * 600, b"y" * 600):  # 1,202 key bytes > 1,000
        by_bytes.put(key, decision)
    assert list(by_bytes.entries) == [b"y" * 600]  # the oldest went until it fitted
    by_bytes.put(b"z" * (MAX_KEY_BYTES + 1), decision)  # longer than any request we keep
    assert list(by_bytes.entries) == [b"y" * 600]
    assert by_bytes._bytes[False] == 600
    for i in range(3):  # keys holding null: a separate map, an eighth of the bounds
        by_bytes.put(b'{"n":null,"i":%d}' % i + b" " * 40, decision)
    assert len(by_bytes.guarded) == 2  # 2 x 56 bytes fit in 125, 3 do not
    assert list(by_bytes.entries) == [b"y" * 600]


def test_the_engine_near_cache_never_holds_more_than_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = near_module.NearCache

    def small(ttl: float, **options: Any) -> NearCache:
        return real(ttl, **{**options, "max_entries": 10})

    monkeypatch.setattr("aegis.engine.evaluator.NearCache", small)
    subject, plain = engine(TIMELESS), engine(TIMELESS, cache=None)
    stream = [request(time=None, principal={"id": f"u{i}", "roles": ["sre"]}) for i in range(30)]
    for req in stream + stream:
        assert subject.evaluate(req) == plain.evaluate(req)
        assert len(near_of(subject)) <= 10


# --------------------------------------------------------------------------- counting, audit


def test_stats_count_every_decision_exactly() -> None:
    subject = engine()
    stream = [request(), request(action="scale"), request(resource={"kind": "a", "namespace": "b"})]
    for n in range(1, 31):
        subject.evaluate(stream[n % 3])
        snapshot = subject.stats  # reading never changes the counts
        assert snapshot == subject.stats
        assert snapshot.decisions == n
        assert snapshot.cache_hits + snapshot.cache_misses == n
    assert subject.stats.cache_misses == 3


def test_audit_records_every_near_hit() -> None:
    sink = MemoryAuditSink()
    subject = engine(audit=sink)
    req = request()
    for _ in range(5):
        subject.evaluate(req)
    subject.evaluate_many([req, req])
    asyncio.run(subject.aevaluate(req))
    assert len(sink.records("decisions")) == 8
    stats = subject.stats
    assert (stats.audit_records, stats.decisions, stats.cache_hits) == (8, 8, 7)


def test_evaluate_many_and_aevaluate_use_the_near_cache() -> None:
    subject, plain = engine(), engine(cache=None)
    stream = [request(), request(action="scale"), request()]
    assert subject.evaluate_many(stream) == plain.evaluate_many(stream)
    assert asyncio.run(subject.aevaluate(stream[1])) == plain.evaluate(stream[1])
    assert near_of(subject).hit_count() == 2
    with pytest.raises(InvalidRequestError, match="request 1"):
        subject.evaluate_many([request(), request(action=3)])


# --------------------------------------------------------------------------- threads


def test_eight_threads_share_one_engine_and_count_exactly() -> None:
    subject, plain = engine(TIMELESS), engine(TIMELESS, cache=None)
    stream = [
        request(time=None, principal={"id": f"u{i}", "roles": ["sre"] if i % 2 else []})
        for i in range(40)
    ]
    expected = [plain.evaluate(req) for req in stream]
    rounds = 25

    def work(offset: int) -> bool:
        ok = True
        for r in range(rounds):
            for i in range(len(stream)):
                j = (i + offset + r) % len(stream)
                ok = ok and subject.evaluate(stream[j]) == expected[j]
        return ok

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, range(8)))
    stats = subject.stats
    total = 8 * rounds * len(stream)
    assert stats.decisions == total
    assert stats.cache_hits + stats.cache_misses + stats.cache_errors == total


def test_eight_threads_racing_puts_and_evictions_never_raise() -> None:
    decision = engine(cache=None).evaluate(request())
    near = NearCache(60, max_entries=16, max_bytes=200)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            barrier.wait()
            for i in range(3000):
                key = b"%d:%d" % (seed, i % 50)
                near.put(key, decision)
                got = near.get(key)
                assert got is None or got is decision
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(near) <= 16
    assert near._bytes[False] == sum(len(k) for k in near.entries) <= 200


def test_hit_counts_are_exact_under_concurrent_reads() -> None:
    decision: Decision = engine(cache=None).evaluate(request())
    near = NearCache(60)
    near.put(b"k", decision)
    seen: list[int] = []

    def work() -> None:
        for _ in range(2000):
            near.get(b"k")
        seen.append(near.hit_count())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert near.hit_count() == 16000
    assert max(seen) == 16000
