"""The Redis decision cache against the machine's real Redis (RL-4, CACHE-1, CACHE-2)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aegis import _plugins
from aegis.engine.cache import DecisionCache, cache_key, encode_decision, project
from aegis.engine.cache.redis import RedisDecisionCache
from aegis.engine.errors import CacheUnavailableError
from aegis.errors import ConfigurationError

pytestmark = pytest.mark.redis

VERSION = "c" * 64
DECISION = encode_decision(
    {
        "decision": "ALLOW",
        "allowed": True,
        "reason": 'allowed by rule "a"',
        "allow": ["a"],
        "deny": [],
        "errors": [],
        "version": VERSION,
    }
)
KEY = cache_key(VERSION, project({"action": "read"}, {("action",)}))


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cache(redis_url: str, redis_prefix: str, raw: redis.Redis) -> Iterator[RedisDecisionCache]:
    c = RedisDecisionCache(redis_url, prefix=redis_prefix, ttl=5)
    yield c
    c.close()
    for key in raw.scan_iter(match=redis_prefix + "*"):
        raw.delete(key)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_round_trip_with_namespaced_key_and_ttl(
    cache: RedisDecisionCache, raw: redis.Redis, redis_prefix: str
) -> None:
    assert isinstance(cache, DecisionCache)
    assert cache.get(KEY) is None
    cache.put(KEY, DECISION)
    assert cache.get(KEY) == DECISION
    stored = raw.keys(redis_prefix + "*")
    assert stored == [f"{redis_prefix}{VERSION}:".encode() + KEY.split(":")[1].encode()]
    assert 0 < raw.pttl(stored[0]) <= 5000


def test_CACHE1_default_ttl_at_most_60_seconds(
    redis_url: str, redis_prefix: str, raw: redis.Redis
) -> None:
    cache = RedisDecisionCache(redis_url, prefix=redis_prefix)
    try:
        cache.put(KEY, DECISION)
        assert 0 < raw.pttl(redis_prefix + KEY) <= 60_000
        with pytest.raises(ConfigurationError):
            cache.put(KEY, DECISION, ttl=3600)
    finally:
        raw.delete(redis_prefix + KEY)
        cache.close()


def test_entries_expire(cache: RedisDecisionCache) -> None:
    cache.put(KEY, DECISION, ttl=0.05)
    time.sleep(0.15)
    assert cache.get(KEY) is None


def test_CACHE2_garbage_value_is_unavailable(
    cache: RedisDecisionCache, raw: redis.Redis, redis_prefix: str
) -> None:
    raw.set(redis_prefix + KEY, b"\x00garbage\xff")
    with pytest.raises(CacheUnavailableError):
        cache.get(KEY)
    raw.set(redis_prefix + KEY, b'{"decision": "ALLOW"}')
    with pytest.raises(CacheUnavailableError):
        cache.get(KEY)
    # garbage is not an outage: the breaker stays closed and a put repairs the entry
    assert not cache.breaker_open
    cache.put(KEY, DECISION)
    assert cache.get(KEY) == DECISION


def test_CACHE2_wrong_type_under_key_is_unavailable(
    cache: RedisDecisionCache, raw: redis.Redis, redis_prefix: str
) -> None:
    raw.rpush(redis_prefix + KEY, b"x")
    with pytest.raises(CacheUnavailableError):
        cache.get(KEY)


def test_RL4_redis_down_is_unavailable_fast_then_breaker_opens() -> None:
    now = [0.0]
    cache = RedisDecisionCache(
        f"redis://127.0.0.1:{_closed_port()}/0",
        failure_threshold=2,
        reset_after=5,
        clock=lambda: now[0],
    )
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(CacheUnavailableError):
            cache.get(KEY)
    with pytest.raises(CacheUnavailableError):
        cache.put(KEY, DECISION)
    assert cache.breaker_open
    with pytest.raises(CacheUnavailableError, match="circuit breaker"):
        cache.get(KEY)
    assert time.monotonic() - started < 2.0  # no retries, short timeouts
    now[0] += 6  # half-open: one trial goes to Redis, fails, and reopens
    with pytest.raises(CacheUnavailableError, match="get"):
        cache.get(KEY)
    with pytest.raises(CacheUnavailableError, match="circuit breaker"):
        cache.get(KEY)
    cache.close()


def test_breaker_closes_again_when_redis_answers(
    redis_url: str, redis_prefix: str, raw: redis.Redis
) -> None:
    now = [0.0]
    broken = redis.Redis(
        port=_closed_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0)
    )
    cache = RedisDecisionCache(
        prefix=redis_prefix, client=broken, failure_threshold=1, clock=lambda: now[0]
    )
    with pytest.raises(CacheUnavailableError):
        cache.get(KEY)
    assert cache.breaker_open
    cache._client = raw  # the server "comes back"
    now[0] += 10
    assert cache.get(KEY) is None
    assert not cache.breaker_open


def test_RL4_timeouts_are_bounded(redis_url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisDecisionCache(redis_url, connect_timeout=1)
    with pytest.raises(ConfigurationError):
        RedisDecisionCache(redis_url, op_timeout=5)
    with pytest.raises(ConfigurationError):
        RedisDecisionCache()


def test_entry_point_validates_then_creates(redis_url: str, redis_prefix: str) -> None:
    cache = _plugins.create("aegis.caches", "redis", {"url": redis_url, "prefix": redis_prefix})
    assert isinstance(cache, RedisDecisionCache)
    cache.close()
    with pytest.raises(ConfigurationError, match="op_timeout"):
        _plugins.create("aegis.caches", "redis", {"url": redis_url, "op_timeout": 1})
