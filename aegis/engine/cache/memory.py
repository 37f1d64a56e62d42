"""In-process decision cache: bounded LRU with per-entry TTL."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aegis.engine.cache._core import DEFAULT_TTL, MAX_TTL, check_ttl
from aegis.errors import ConfigurationError

__all__ = ["CacheStats", "MemoryCacheConfig", "MemoryDecisionCache", "factory"]


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of a :class:`MemoryDecisionCache` since it was created.

    Attributes:
        hits: ``get`` calls that returned a value.
        misses: ``get`` calls that returned ``None`` (absent or expired).
        evictions: entries dropped to stay within ``max_entries``.
        expirations: entries dropped because their TTL had passed.
        size: entries held now.
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    size: int


class MemoryDecisionCache:
    """A thread-safe LRU cache of encoded decisions, bounded in entries, with TTLs.

    It implements :class:`~aegis.engine.cache.DecisionCache` and never raises
    ``CacheUnavailableError``: it holds the bytes it was given in this process.

    Args:
        max_entries: the most entries held; putting one more drops the least recently used.
        ttl: default seconds an entry lives (``0 < ttl <= 60``, CACHE-1).
        clock: monotonic seconds, injectable for tests (default :func:`time.monotonic`).

    Raises:
        ConfigurationError: ``max_entries < 1`` or ``ttl`` out of range.

    Usage::

        cache = MemoryDecisionCache(max_entries=50_000, ttl=30)
        cache.put(key, encoded_decision)
        assert cache.get(key) == encoded_decision
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError(f"max_entries `{max_entries}` must be at least 1")
        self._ttl = check_ttl(ttl, DEFAULT_TTL)
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (expires_at, value); most recently used last.
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._hits = self._misses = self._evictions = self._expirations = 0

    @property
    def max_entries(self) -> int:
        """The most entries held."""
        return self._max

    @property
    def ttl(self) -> float:
        """Seconds an entry lives when ``put`` is given no TTL."""
        return self._ttl

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None`` if absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            if entry[0] <= now:
                del self._entries[key]
                self._expirations += 1
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[1]

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: the default TTL).

        Raises:
            ConfigurationError: ``ttl`` is not in ``(0, 60]``.
        """
        expires = self._clock() + check_ttl(ttl, self._ttl)
        with self._lock:
            self._entries[key] = (expires, bytes(value))
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
                self._evictions += 1

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, self._evictions, self._expirations, len(self._entries)
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class MemoryCacheConfig(BaseModel):
    """Configuration of the ``memory`` entry point of ``aegis.caches``."""

    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(default=10_000, ge=1)
    ttl: float = Field(default=DEFAULT_TTL, gt=0, le=MAX_TTL)


class _MemoryFactory:
    """Entry-point factory (habit H11): validated config in, cache out."""

    config_model = MemoryCacheConfig

    def create(self, config: Any) -> MemoryDecisionCache:
        assert isinstance(config, MemoryCacheConfig)
        return MemoryDecisionCache(max_entries=config.max_entries, ttl=config.ttl)


factory = _MemoryFactory()
"""The ``aegis.caches`` entry point ``memory``."""
