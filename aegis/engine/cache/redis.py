"""Redis decision cache, shared by the replicas of a deployment (needs the ``redis`` extra).

Every Redis call has a short connect timeout (100 ms) and operation timeout (200 ms), no
retries, and goes through a small circuit breaker (requirement RL-4): after
``failure_threshold`` consecutive failures the cache fails fast for ``reset_after`` seconds,
then lets one trial call through. Every failure — a redis error, a timeout, an open breaker,
or a value that is not a decision — is raised as
:class:`~aegis.engine.errors.CacheUnavailableError`, which the engine turns into a bypass.

Keys are ``<prefix><policy version>:<sha256>`` (see :func:`aegis.engine.cache.cache_key`), so
deployments sharing one Redis separate by prefix, and one policy set's entries can be found
with ``SCAN MATCH <prefix><version>:*``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from aegis.engine.cache._core import DEFAULT_TTL, MAX_TTL, check_ttl, decode_decision
from aegis.engine.errors import CacheUnavailableError
from aegis.errors import ConfigurationError, require

if TYPE_CHECKING:
    import redis as redis_module

__all__ = ["RedisCacheConfig", "RedisDecisionCache", "factory"]


class _CircuitBreaker:
    """Closed -> open after N consecutive failures -> half-open after a pause -> closed."""

    def __init__(self, threshold: int, reset_after: float, clock: Callable[[], float]) -> None:
        self._threshold = threshold
        self._reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open state only one trial call at a time."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial_running or self._clock() - self._opened_at < self._reset_after:
                return False
            self._trial_running = True
            return True

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self._threshold:
                self._opened_at = self._clock()
            self._trial_running = False


class RedisDecisionCache:
    """A :class:`~aegis.engine.cache.DecisionCache` in Redis.

    Args:
        url: a ``redis://`` or ``rediss://`` URL (ignored when ``client`` is given).
        prefix: prepended to every key; give each deployment (and each test) its own.
        ttl: default seconds an entry lives (``0 < ttl <= 60``, CACHE-1); Redis expires it.
        connect_timeout: seconds to connect (RL-4: at most 0.1).
        op_timeout: seconds per operation (RL-4: at most 0.2).
        failure_threshold: consecutive failures that open the circuit breaker.
        reset_after: seconds the breaker stays open before one trial call.
        client: an existing ``redis.Redis`` (its own timeouts apply); for tests and for
            sharing a connection pool.
        clock: monotonic seconds for the breaker, injectable for tests.

    Raises:
        ConfigurationError: an argument is out of range, or neither ``url`` nor ``client``.
        MissingDependencyError: the ``redis`` package is not installed.

    Usage::

        from aegis.engine.cache.redis import RedisDecisionCache

        cache = RedisDecisionCache("redis://127.0.0.1:6379/0", prefix="aegis:prod:dc:")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "aegis:dc:",
        ttl: float = DEFAULT_TTL,
        connect_timeout: float = 0.1,
        op_timeout: float = 0.2,
        failure_threshold: int = 5,
        reset_after: float = 5.0,
        client: redis_module.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = check_ttl(ttl, DEFAULT_TTL)
        if not 0 < connect_timeout <= 0.1:
            raise ConfigurationError(f"connect_timeout `{connect_timeout}` must be in (0, 0.1]")
        if not 0 < op_timeout <= 0.2:
            raise ConfigurationError(f"op_timeout `{op_timeout}` must be in (0, 0.2]")
        if failure_threshold < 1:
            raise ConfigurationError(f"failure_threshold `{failure_threshold}` must be >= 1")
        if reset_after <= 0:
            raise ConfigurationError(f"reset_after `{reset_after}` must be positive")
        redis = require("redis", "redis")
        self._errors: tuple[type[BaseException], ...] = (
            redis.RedisError,  # type: ignore[attr-defined]
            OSError,
        )
        if client is None:
            if not url:
                raise ConfigurationError("a redis cache needs a `url` or a `client`")
            backoff: Any = require("redis.backoff", "redis")
            retry: Any = require("redis.retry", "redis")
            try:
                client = redis.Redis.from_url(  # type: ignore[attr-defined]
                    url,
                    socket_connect_timeout=connect_timeout,
                    socket_timeout=op_timeout,
                    retry=retry.Retry(backoff.NoBackoff(), 0),
                    retry_on_timeout=False,
                )
            except ValueError as exc:
                raise ConfigurationError(f"invalid redis url: {exc}") from exc
        self._client: Any = client
        self._prefix = prefix
        self._breaker = _CircuitBreaker(failure_threshold, reset_after, clock)

    @property
    def prefix(self) -> str:
        """The prefix of every key this cache writes."""
        return self._prefix

    @property
    def breaker_open(self) -> bool:
        """Whether the circuit breaker is open (calls fail fast)."""
        return self._breaker.is_open

    def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        if not self._breaker.allow():
            raise CacheUnavailableError("redis cache circuit breaker is open")
        try:
            result = fn()
        except self._errors as exc:
            self._breaker.failure()
            raise CacheUnavailableError(f"redis cache `{op}` failed: {exc}") from exc
        self._breaker.success()
        return result

    @property
    def ttl(self) -> float:
        """Seconds an entry lives when ``put`` is given no TTL."""
        return self._ttl

    def get(self, key: str) -> bytes | None:
        """Return the decision bytes under ``key``, or ``None``.

        Raises:
            CacheUnavailableError: Redis failed, the breaker is open, or the stored value is
                not a decision (garbage is never returned).
        """
        value = self._call("get", lambda: self._client.get(self._prefix + key))
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise CacheUnavailableError("redis cache returned a non-bytes value")
        decode_decision(value)
        return value

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; Redis expires it after ``ttl`` seconds.

        Raises:
            CacheUnavailableError: Redis failed or the breaker is open.
            ConfigurationError: ``ttl`` is not in ``(0, 60]``.
        """
        millis = max(1, round(check_ttl(ttl, self._ttl) * 1000))
        self._call("put", lambda: self._client.set(self._prefix + key, bytes(value), px=millis))

    def close(self) -> None:
        """Release the connection pool."""
        with contextlib.suppress(*self._errors):  # a dead connection is not worth an error
            self._client.close()


class RedisCacheConfig(BaseModel):
    """Configuration of the ``redis`` entry point of ``aegis.caches``."""

    model_config = ConfigDict(extra="forbid")

    url: str
    prefix: str = "aegis:dc:"
    ttl: float = Field(default=DEFAULT_TTL, gt=0, le=MAX_TTL)
    connect_timeout: float = Field(default=0.1, gt=0, le=0.1)
    op_timeout: float = Field(default=0.2, gt=0, le=0.2)
    failure_threshold: int = Field(default=5, ge=1)
    reset_after: float = Field(default=5.0, gt=0)


class _RedisFactory:
    """Entry-point factory (habit H11); importing it does not import redis."""

    config_model = RedisCacheConfig

    def create(self, config: Any) -> RedisDecisionCache:
        assert isinstance(config, RedisCacheConfig)
        return RedisDecisionCache(
            config.url,
            prefix=config.prefix,
            ttl=config.ttl,
            connect_timeout=config.connect_timeout,
            op_timeout=config.op_timeout,
            failure_threshold=config.failure_threshold,
            reset_after=config.reset_after,
        )


factory = _RedisFactory()
"""The ``aegis.caches`` entry point ``redis``."""
