"""Rate limits shared through Redis (``limits``, sliding-window counter) with an in-process
fallback, and the login throttle built on them.

The sliding-window counter runs as one Lua script in Redis and takes time from Redis key TTLs,
so replicas share one clock and one count (RL-1). When Redis fails, the decision is taken by a
per-process limiter instead, the failure is counted in ``ratelimit_fail_open_total`` and logged
at most once a minute, and Redis is skipped for a few seconds (a circuit breaker, RL-3/RL-4).
Auth routes get half their budget while in fallback, since each process then counts alone.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from aegis.server.metrics import Metrics

__all__ = ["ClientAddress", "RateLimiter", "Verdict", "parse_limits"]

_log = logging.getLogger("aegis.server.ratelimit")
_BREAKER_SECONDS = 5.0
_LOG_INTERVAL = 60.0


def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """Parse ``"20/minute;100/hour"`` into ``limits`` items."""
    return tuple(parse_many(text))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one rate-limit check.

    Attributes:
        allowed: whether the request may proceed.
        limit: the tightest limit's amount.
        remaining: requests left in that limit's window.
        reset_after: seconds until that window frees a slot (≥ 1 when refused).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers, plus ``Retry-After`` when refused."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(self.reset_after, 1))
        return out


class ClientAddress:
    """Works out the client address: the socket peer, unless it is a trusted proxy (BF-3).

    Args:
        trusted_proxies: addresses or networks whose ``X-Forwarded-For`` is believed.
    """

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    def __call__(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client address for a peer and its ``X-Forwarded-For`` header (if any)."""
        address = peer or "unknown"
        if not forwarded_for or not self._trusted(address):
            return address
        # Walk from the right: the first hop that is not one of our proxies is the client.
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return address
            if not self._trusted(hop):
                return hop
            address = hop
        return address


class RateLimiter:
    """Sliding-window limits in Redis (when configured) with an in-process fallback.

    Args:
        redis_url: ``redis://`` URL, or ``None`` for in-process limits only.
        prefix: namespace of the keys in Redis.
        metrics: where fallbacks are counted.
    """

    def __init__(self, redis_url: str | None, prefix: str, metrics: Metrics) -> None:
        self._metrics = metrics
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis_storage: Storage | None = None
        self._redis: SlidingWindowCounterRateLimiter | None = None
        self._pool: Any = None
        if redis_url:
            import redis.asyncio as aioredis
            from limits.aio.storage import RedisStorage

            # We own the pool (RL-4 timeouts) so that shutdown can close its connections.
            self._pool = aioredis.ConnectionPool.from_url(
                redis_url, socket_connect_timeout=0.1, socket_timeout=0.2
            )
            self._redis_storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                key_prefix=prefix + "rl",
                wrap_exceptions=True,
                connection_pool=self._pool,
            )
            self._redis = SlidingWindowCounterRateLimiter(self._redis_storage)
        self._breaker_until = 0.0
        self._last_log = 0.0
        self.last_error: str | None = None

    @property
    def shared(self) -> bool:
        """Whether limits are shared through Redis."""
        return self._redis is not None

    def _fallback(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._breaker_until = now + _BREAKER_SECONDS
        self._metrics.ratelimit_fail_open.inc()
        self.last_error = type(exc).__name__
        if now - self._last_log >= _LOG_INTERVAL:
            self._last_log = now
            _log.error("rate-limit storage failed, using in-process limits: %s", type(exc).__name__)

    async def _run(
        self, op: str, items: Sequence[RateLimitItem], key: str, strict_fallback: bool
    ) -> Verdict:
        if self._redis is not None and time.monotonic() >= self._breaker_until:
            try:
                return await self._apply(self._redis, op, items, key)
            except Exception as exc:  # any storage failure: fall back, never a 500 (RL-3)
                self._fallback(exc)
        elif self._redis is not None:
            self._metrics.ratelimit_fail_open.inc()
        if strict_fallback and self._redis is not None:
            items = tuple(type(i)(max(i.amount // 2, 1), i.multiples) for i in items)
        return await self._apply(self._memory, op, items, key)

    @staticmethod
    async def _apply(
        limiter: SlidingWindowCounterRateLimiter,
        op: str,
        items: Sequence[RateLimitItem],
        key: str,
    ) -> Verdict:
        allowed = True
        best: Verdict | None = None
        for item in items:
            if op == "hit":
                ok = await limiter.hit(item, key)
            else:
                ok = await limiter.test(item, key)
            stats = await limiter.get_window_stats(item, key)
            reset_after = max(int(stats.reset_time - time.time() + 0.999), 0)
            verdict = Verdict(ok, item.amount, stats.remaining, reset_after)
            allowed = allowed and ok
            if (
                best is None
                or (not ok and best.allowed)
                or (ok == best.allowed and verdict.remaining < best.remaining)
            ):
                best = verdict
        assert best is not None
        return Verdict(allowed, best.limit, best.remaining, best.reset_after)

    async def hit(
        self, items: Sequence[RateLimitItem], key: str, *, strict_fallback: bool = False
    ) -> Verdict:
        """Count one request against every item for ``key``; refused if any is exhausted."""
        return await self._run("hit", items, key, strict_fallback)

    async def test(
        self, items: Sequence[RateLimitItem], key: str, *, strict_fallback: bool = False
    ) -> Verdict:
        """Check, without counting, whether one more request for ``key`` would be allowed."""
        return await self._run("test", items, key, strict_fallback)

    async def ping(self) -> bool:
        """Whether the Redis storage answers (``True`` when none is configured)."""
        if self._redis_storage is None:
            return True
        try:
            return bool(await self._redis_storage.check())
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close the Redis connections (at application shutdown)."""
        if self._pool is not None:
            await self._pool.aclose()

    async def reset(self) -> None:
        """Forget every in-process counter (tests)."""
        await self._memory.storage.reset()
