"""The in-process LRU + TTL decision cache."""

from __future__ import annotations

import threading

import pytest

from aegis import _plugins
from aegis.engine.cache import DecisionCache, MemoryDecisionCache
from aegis.errors import ConfigurationError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_is_a_decision_cache() -> None:
    assert isinstance(MemoryDecisionCache(), DecisionCache)


def test_get_returns_what_was_put_until_the_ttl_passes() -> None:
    clock = FakeClock()
    cache = MemoryDecisionCache(ttl=10, clock=clock)
    cache.put("k", b"v")
    cache.put("short", b"s", ttl=1)
    assert cache.get("k") == b"v"
    assert cache.get("short") == b"s"
    clock.now += 1
    assert cache.get("short") is None
    assert cache.get("k") == b"v"
    clock.now += 9
    assert cache.get("k") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.size) == (3, 2, 2, 0)


def test_lru_eviction_keeps_the_recently_used() -> None:
    cache = MemoryDecisionCache(max_entries=2)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # a is now more recent than b
    cache.put("c", b"3")
    assert cache.get("b") is None
    assert cache.get("a") == b"1"
    assert cache.get("c") == b"3"
    assert len(cache) == 2
    assert cache.stats().evictions == 1


def test_put_replaces_and_clear_empties() -> None:
    cache = MemoryDecisionCache()
    cache.put("a", b"1")
    cache.put("a", b"2")
    assert cache.get("a") == b"2"
    cache.clear()
    assert cache.get("a") is None


@pytest.mark.parametrize("ttl", [0, -1, 61, float("nan")])
def test_CACHE1_ttl_is_at_most_60_seconds(ttl: float) -> None:
    with pytest.raises(ConfigurationError):
        MemoryDecisionCache(ttl=ttl)
    with pytest.raises(ConfigurationError):
        MemoryDecisionCache().put("k", b"v", ttl=ttl)


def test_bad_size_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        MemoryDecisionCache(max_entries=0)


def test_concurrent_use_stays_bounded_and_consistent() -> None:
    cache = MemoryDecisionCache(max_entries=50)
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(2000):
            key = f"{n}-{i % 80}"
            value = key.encode()
            cache.put(key, value)
            got = cache.get(key)
            if got is not None and got != value:
                errors.append(key)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) == 50


def test_entry_point_validates_then_creates() -> None:
    cache = _plugins.create("aegis.caches", "memory", {"max_entries": 5, "ttl": 30})
    assert isinstance(cache, MemoryDecisionCache)
    assert cache.max_entries == 5
    with pytest.raises(ConfigurationError, match="ttl"):
        _plugins.create("aegis.caches", "memory", {"ttl": 600})
