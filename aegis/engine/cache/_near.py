"""The near cache: an in-process map from a request's exact bytes to its decision.

An L1 in front of any :class:`~aegis.engine.cache.DecisionCache` (the L2). The L2 key is a
projection hashed with SHA-256 (CACHE-1), which needs the request validated and walked first;
the near cache skips all of that for a request seen before, byte for byte:

* the key is ``marshal.dumps(request, 2)``. ``marshal`` checks exact types (``dict list str
  int float bool None`` and a few others; a subclass or any other object raises
  ``ValueError``) and writes a type tag before every value, so equal bytes mean equal values
  of identical exact types, in the same key order: ``True`` and ``1``, ``1`` and ``1.0``,
  ``0.0`` and ``-0.0``, a list and a tuple all write differently. Version 2 never writes
  back-references, so the bytes do not depend on which objects are shared or interned;
* an entry is only put by the engine, for a request it validated (spec §4 and its schema) and
  decided without errors (CACHE-1), and only when the decision cannot depend on the clock.
  Same bytes then mean the same verdict: the engine and its decisions are immutable;
* entries live ``ttl`` seconds at most (the L2's TTL, at most 60 s, CACHE-1) on a monotonic
  clock, and the map is bounded in entries and in key bytes (oldest put evicted first).

Reads take no lock (one ``dict.get``, atomic in CPython and in free-threaded builds); puts
and evictions take one. The engine calls :attr:`NearCache.lookup` directly on its hot path.
"""

from __future__ import annotations

import itertools
import marshal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from aegis.engine.decision import Decision

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "MAX_KEY_BYTES",
    "NearCache",
    "carries_time",
    "near_key",
    "reads_clock",
]

DEFAULT_MAX_ENTRIES = 65_536
"""The most requests a near cache holds."""

DEFAULT_MAX_BYTES = 32 * 1024 * 1024
"""The most key bytes (the requests' ``marshal`` form) a near cache holds in total."""

MAX_KEY_BYTES = 16 * 1024
"""A request whose key is longer is never near-cached (its evaluation dwarfs the saving)."""

_dumps: Callable[[Any, int], bytes] = marshal.dumps  # typeshed: only marshallables
_monotonic = time.monotonic  # the default clock, looked up when a cache is built (tests patch it)


def near_key(request: Any) -> bytes | None:
    """The near-cache key of ``request``, or ``None`` if it has none (a type ``marshal``
    refuses: a ``Mapping`` that is not a ``dict``, a subclass, a ``Decimal``, a cycle)."""
    try:
        return _dumps(request, 2)
    except ValueError:
        return None


class NearCache:
    """A bounded, TTL-limited map from request bytes to decisions; see the module docstring.

    Args:
        ttl: seconds an entry lives (the engine passes its L2 TTL, ``0 < ttl <= 60``).
        timeless: the policy set reads no ``time`` path, so requests without
            ``context.time`` may be held too (see :func:`reads_clock`).
        max_entries: the most entries held.
        max_bytes: the most key bytes held in total.
        clock: monotonic seconds (default :func:`time.monotonic`), injectable for tests.

    Attributes:
        entries: ``key -> (expires_at, decision)``, oldest put first. Read it without a lock;
            write it only through :meth:`put`.
        lookup: ``entries.get``, bound once (one attribute lookup less per hit).
        hits: an ``itertools.count`` the engine advances on every hit (``next`` is atomic).
        clock: the clock.
        timeless: as given.
    """

    __slots__ = (
        "_bytes",
        "_lock",
        "_max_bytes",
        "_max_entries",
        "_taken",
        "_ttl",
        "clock",
        "entries",
        "hits",
        "lookup",
        "timeless",
    )

    def __init__(
        self,
        ttl: float,
        *,
        timeless: bool = False,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.entries: dict[bytes, tuple[float, Decision]] = {}
        self.lookup = self.entries.get
        self.hits = itertools.count()
        self.clock = clock if clock is not None else _monotonic
        self.timeless = timeless
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._taken = 0
        self._lock = threading.Lock()

    def get(self, key: bytes | None) -> Decision | None:
        """The live decision put under ``key`` (counted as a hit), or ``None``."""
        if key is None:
            return None
        entry = self.entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return None
        next(self.hits)
        return entry[1]

    def put(self, key: bytes, decision: Decision) -> None:
        """Hold ``decision`` under ``key`` for the TTL, evicting the oldest entries as needed.

        The caller guarantees the near-cache rule: ``key`` is the bytes of a request the engine
        validated, ``decision`` has no errors and does not depend on the clock.
        """
        size = len(key)
        if size > MAX_KEY_BYTES:
            return
        expires = self.clock() + self._ttl
        entries = self.entries
        with self._lock:
            # pop first, so that a renewed entry moves to the end (evicted last)
            if entries.pop(key, None) is not None:
                self._bytes -= size
            entries[key] = (expires, decision)
            self._bytes += size
            while len(entries) > self._max_entries or self._bytes > self._max_bytes:
                oldest = next(iter(entries))
                del entries[oldest]
                self._bytes -= len(oldest)

    def hit_count(self) -> int:
        """Hits so far (read without consuming a hit)."""
        with self._lock:
            # INVARIANT: ``hits`` has been advanced once per hit plus once per earlier read
            value = next(self.hits) - self._taken
            self._taken += 1
        return value

    def __len__(self) -> int:
        return len(self.entries)


def reads_clock(reads: Any) -> bool:
    """Whether a set with these read paths reads ``time`` (so a request without
    ``context.time`` is decided differently at different instants)."""
    return any(path and path[0] == "time" for path in reads)


def carries_time(request: Mapping[str, Any]) -> bool:
    """Whether a (validated) request fixes its own instant with ``context.time``."""
    context = request.get("context")
    return type(context) is dict and "time" in context
