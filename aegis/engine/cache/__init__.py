"""Decision caches: the :class:`DecisionCache` protocol, cache keys and the decision codec.

A decision is a pure function of the policy set and of the request's *projection*: the values
of the attribute paths the set reads (and nothing else). The cache key is therefore the SHA-256
of the canonical JSON of ``(version, projection)`` (requirement CACHE-1), so that

* requests that differ only in attributes no rule reads share one entry;
* a new policy set (a new ``version``) never reaches the old set's entries;
* no choice of attribute values can make two different projections collide, because the key
  is a hash of an unambiguous encoding, never a delimiter-joined string.

How the engine uses a cache (the contract the engine keeps, see ``docs/caching.md``):

1. build the projection with :func:`project` and the key with :func:`cache_key`;
2. ``cache.get(key)``; on bytes, :func:`decode_decision` them and answer from them;
3. otherwise evaluate, and only if the evaluation succeeded (a valid request, no rule
   errored) ``cache.put(key, encode_decision(decision.to_dict()))``;
4. any :class:`~aegis.engine.errors.CacheUnavailableError` from steps 2-3 is logged and
   counted, and the request is evaluated without the cache: a cache failure never changes a
   decision;
5. in front of all this, the engine keeps a *near cache* (``_near.NearCache``): the request's
   JSON text (as ``orjson`` writes it) to the decision, for validated requests decided
   without errors and without depending on the clock, with the same TTL; a hit skips 1-3.

Usage::

    from aegis.engine.cache import MemoryDecisionCache, cache_key, project

    cache = MemoryDecisionCache(max_entries=10_000, ttl=30)
    key = cache_key(policy_set.version, project(parts, {("action",), ("principal", "roles")}))

Backends shipped: :class:`MemoryDecisionCache` (here) and
``aegis.engine.cache.redis.RedisDecisionCache`` (needs the ``redis`` extra; import that module
yourself: ``aegis.engine.cache`` never imports redis). Both are also registered under the
``aegis.caches`` entry points as ``memory`` and ``redis``.
"""

from __future__ import annotations

from aegis.engine.cache._core import (
    DEFAULT_TTL,
    MAX_TTL,
    DecisionCache,
    DecisionDecoder,
    KeyBuilder,
    cache_key,
    canonical_json,
    check_ttl,
    decode_decision,
    encode_decision,
    project,
    projector,
)
from aegis.engine.cache.memory import MemoryDecisionCache

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "DecisionCache",
    "DecisionDecoder",
    "KeyBuilder",
    "MemoryDecisionCache",
    "cache_key",
    "canonical_json",
    "check_ttl",
    "decode_decision",
    "encode_decision",
    "project",
    "projector",
]
