"""The near cache: an in-process map from a request's JSON text to its decision.

An L1 in front of any :class:`~aegis.engine.cache.DecisionCache` (the L2). The L2 key is a
projection hashed with SHA-256 (CACHE-1), which needs the request validated and walked first;
the near cache skips all of that for a request seen before, as the same JSON text:

* the key is the request's JSON document as ``orjson`` writes it
  (:func:`~aegis.engine.request.write_document`): exact types matter (``true`` and ``1``,
  ``1`` and ``1.0``, ``0.0`` and ``-0.0`` all write differently), key order too, and a value
  of a subclass, a ``Decimal``, a non-``dict`` mapping, a datetime or a cycle has no key;
* equal text means the same request: every path of the engine reads a request that is not
  plain JSON as that same document (:func:`~aegis.engine.request.as_document`: a tuple as an
  array, a UUID as its string, an enum member as its value, an ``orjson.Fragment`` as the
  text it holds). The one value written as something it is not, a NaN or infinite float
  (``orjson`` writes ``null``; the engine rejects it), cannot hit: a key holding ``null`` is
  put in a separate map, consulted off the hot path and only for a request checked to hold
  no such number;
* an entry is only put by the engine, for a request it validated (spec §4 and its schema) and
  decided without errors (CACHE-1), and only when the decision cannot depend on the clock.
  Same text then means the same verdict: the engine and its decisions are immutable;
* entries live ``ttl`` seconds at most (the L2's TTL, at most 60 s, CACHE-1) on a monotonic
  clock, and the map is bounded in entries and in key bytes (oldest put evicted first).

Reads take no lock (one ``dict.get``, atomic in CPython and in free-threaded builds); puts
and evictions take one. The engine calls :attr:`NearCache.lookup` directly on its hot path.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from aegis.engine.decision import Decision
from aegis.engine.request import finite, write_document

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
"""The most key bytes (the requests' JSON text) a near cache holds in total."""

MAX_KEY_BYTES = 16 * 1024
"""A request whose key is longer is never near-cached (its evaluation dwarfs the saving)."""

_monotonic = time.monotonic  # the default clock, looked up when a cache is built (tests patch it)


def near_key(request: Any) -> bytes | None:
    """The near-cache key of ``request``: its JSON text, or ``None`` if it has none (see
    :func:`~aegis.engine.request.write_document`)."""
    return write_document(request)


class NearCache:
    """A bounded, TTL-limited map from request text to decisions; see the module docstring.

    Keys holding ``null`` live in a second, smaller map (:attr:`guarded`), off the hot path:
    ``orjson`` writes a NaN or an infinity as ``null`` too, so a hit there is taken only after
    the request is checked to hold no such number (:meth:`get_guarded`).

    Args:
        ttl: seconds an entry lives (the engine passes its L2 TTL, ``0 < ttl <= 60``).
        timeless: the policy set reads no ``time`` path, so requests without
            ``context.time`` may be held too (see :func:`reads_clock`).
        max_entries: the most entries held (the guarded map holds at most an eighth more).
        max_bytes: the most key bytes held in total (likewise).
        clock: monotonic seconds (default :func:`time.monotonic`), injectable for tests.

    Attributes:
        entries: ``key -> (expires_at, decision)`` for keys without ``null``, oldest put
            first. Read it without a lock; write it only through :meth:`put`.
        guarded: the same for keys holding ``null``; read it through :meth:`get_guarded`.
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
        "guarded",
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
        self.guarded: dict[bytes, tuple[float, Decision]] = {}
        self.lookup = self.entries.get
        self.hits = itertools.count()
        self.clock = clock if clock is not None else _monotonic
        self.timeless = timeless
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = {False: 0, True: 0}  # key bytes held, by "the key holds null"
        self._taken = 0
        self._lock = threading.Lock()

    def get(self, key: bytes | None) -> Decision | None:
        """The live decision put under ``key`` (counted as a hit), or ``None``; keys holding
        ``null`` are not looked up here (see :meth:`get_guarded`)."""
        if key is None:
            return None
        entry = self.entries.get(key)
        if entry is None or entry[0] <= self.clock():
            return None
        next(self.hits)
        return entry[1]

    def get_guarded(self, key: bytes, request: object) -> Decision | None:
        """The live decision put under ``key``, a key holding ``null``, if ``request`` (whose
        key it is) holds no NaN or infinity; counted as a hit. ``None`` otherwise."""
        entry = self.guarded.get(key)
        if entry is None or entry[0] <= self.clock() or not finite(request):
            return None
        next(self.hits)
        return entry[1]

    def put(self, key: bytes, decision: Decision) -> None:
        """Hold ``decision`` under ``key`` for the TTL, evicting the oldest entries as needed.

        The caller guarantees the near-cache rule: ``key`` is the text of a request the engine
        validated, ``decision`` has no errors and does not depend on the clock. A key longer
        than :data:`MAX_KEY_BYTES` is not held; a key holding ``null`` goes to
        :attr:`guarded`.
        """
        size = len(key)
        if size > MAX_KEY_BYTES:
            return
        nulls = b"null" in key  # a NaN or an infinity is written so too: see get_guarded
        entries = self.guarded if nulls else self.entries
        most_entries = max(1, self._max_entries // 8) if nulls else self._max_entries
        most_bytes = self._max_bytes // 8 if nulls else self._max_bytes
        expires = self.clock() + self._ttl
        held = self._bytes
        with self._lock:
            # pop first, so that a renewed entry moves to the end (evicted last)
            if entries.pop(key, None) is not None:
                held[nulls] -= size
            entries[key] = (expires, decision)
            held[nulls] += size
            while len(entries) > most_entries or held[nulls] > most_bytes:
                oldest = next(iter(entries))
                del entries[oldest]
                held[nulls] -= len(oldest)

    def hit_count(self) -> int:
        """Hits so far (read without consuming a hit)."""
        with self._lock:
            # INVARIANT: ``hits`` has been advanced once per hit plus once per earlier read
            value = next(self.hits) - self._taken
            self._taken += 1
        return value

    def __len__(self) -> int:
        return len(self.entries) + len(self.guarded)


def reads_clock(reads: Any) -> bool:
    """Whether a set with these read paths reads ``time`` (so a request without
    ``context.time`` is decided differently at different instants)."""
    return any(path and path[0] == "time" for path in reads)


def carries_time(request: Any, key: bytes) -> bool:
    """Whether a validated request, whose near-cache key is ``key``, fixes its own instant
    with ``context.time`` (a disguised request is looked at as its document, the key)."""
    context = request.get("context") if type(request) is dict else None
    if type(context) is dict:
        return "time" in context  # a key cannot be hidden in a fragment, only added
    document = orjson.loads(key)
    context = document.get("context") if type(document) is dict else None
    return type(context) is dict and "time" in context
