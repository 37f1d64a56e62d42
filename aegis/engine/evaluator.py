"""The policy engine: a loaded policy set that decides requests (spec §4–§6)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from aegis.engine import _snapshot
from aegis.engine._compiler import CompiledPolicySet, Ctx, prepare_request
from aegis.engine.cache import (
    DEFAULT_TTL,
    MAX_TTL,
    DecisionCache,
    DecisionDecoder,
    KeyBuilder,
    encode_decision,
)
from aegis.engine.cache._near import (
    MAX_KEY_BYTES,
    NearCache,
    carries_time,
    near_key,
    reads_clock,
)
from aegis.engine.cache.memory import MemoryDecisionCache
from aegis.engine.decision import Decision
from aegis.engine.errors import CacheUnavailableError, EngineError, InvalidRequestError
from aegis.engine.request import DOCUMENT_OPTIONS, as_document, parse_request
from aegis.lang._gc import paused_gc
from aegis.lang.diagnostics import Severity
from aegis.lang.errors import PolicyLoadError
from aegis.lang.loader import PolicySet, load_texts, read_paths

if TYPE_CHECKING:
    from aegis.engine.audit import AuditSink, Masker
    from aegis.lang.schema import Schema

__all__ = ["EngineStats", "PolicyEngine", "SchemaSource"]

_log = logging.getLogger("aegis.engine")
_write = orjson.dumps  # the near cache's key: the request's JSON document (DOCUMENT_OPTIONS)


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters of one engine since it was built (a snapshot).

    Attributes:
        decisions: decisions returned.
        cache_hits: decisions answered from the cache.
        cache_misses: cache lookups that found nothing (the decision was evaluated).
        cache_errors: cache failures, each bypassed (the decision was evaluated).
        audit_records: audit records appended.
    """

    decisions: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_errors: int = 0
    audit_records: int = 0

    @property
    def cache_hit_ratio(self) -> float:
        """Hits over lookups (0.0 before the first lookup)."""
        lookups = self.cache_hits + self.cache_misses + self.cache_errors
        return self.cache_hits / lookups if lookups else 0.0


class _Counters:
    """Thread-safe, exact counters behind :class:`EngineStats`, cheap to advance.

    Each counter is an ``itertools.count``: ``next()`` on it is atomic in CPython and takes
    no lock. A snapshot reads a counter by advancing it once more and subtracting the reads
    made so far (under the lock, so two snapshots never share a read). Amounts above one
    (a batch of audit records) go to a locked tally instead.
    """

    __slots__ = ("_bulk", "_lock", "_taken", "counts")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {name: itertools.count() for name in EngineStats.__slots__}
        self._taken = dict.fromkeys(EngineStats.__slots__, 0)
        self._bulk = dict.fromkeys(EngineStats.__slots__, 0)

    def add(self, name: str, amount: int = 1) -> None:
        if amount == 1:
            next(self.counts[name])
        else:
            with self._lock:
                self._bulk[name] += amount

    def snapshot(self, near_hits: int = 0) -> EngineStats:
        """The counters, with ``near_hits`` decisions answered by the near cache added."""
        with self._lock:
            values = {}
            for name, count in self.counts.items():
                # INVARIANT: `count` advanced once per add(name) and once per earlier snapshot
                taken = self._taken[name]
                values[name] = next(count) - taken + self._bulk[name]
                self._taken[name] = taken + 1
        values["decisions"] += near_hits
        values["cache_hits"] += near_hits
        return EngineStats(**values)


CompiledCacheSetting: TypeAlias = "bool | str | os.PathLike[str] | None"
"""What ``compiled_cache=`` accepts: ``True`` (the default: the directory named by
``AEGIS_COMPILED_CACHE``, else ``~/.cache/aegis/compiled``), a directory, or ``False`` /
``None`` for none. See :mod:`aegis.engine._snapshot` and docs/engine.md."""

SchemaSource: TypeAlias = "str | os.PathLike[str] | Schema | None"
"""What ``schema=`` accepts: a schema file path, a loaded :class:`~aegis.lang.schema.Schema`,
or ``None`` (no schema)."""


class PolicyEngine:
    """A loaded policy set that decides requests.

    An engine is immutable once built, so one instance may serve any number of threads at
    once. Build it from files, from texts, or from an already loaded
    :class:`~aegis.lang.loader.PolicySet`; a set that does not load raises
    :class:`~aegis.lang.errors.PolicyLoadError` carrying every diagnostic.

    With a schema (spec §7), the set is validated against it when the engine is built (every
    problem is a diagnostic of the ``PolicyLoadError``), and each request must conform to it
    (otherwise :class:`~aegis.engine.errors.InvalidRequestError`). A set that validates never
    yields an evaluation error on a conforming request.

    Usage::

        >>> from datetime import datetime, timezone
        >>> engine = PolicyEngine.from_texts({"ops.aegis": '''
        ... allow "sre-may-restart" {
        ...     action == "restart_pod"
        ...     "sre" in principal.roles
        ... }
        ... '''})
        >>> decision = engine.evaluate(
        ...     {"principal": {"id": "alice", "roles": ["sre"]}, "action": "restart_pod",
        ...      "resource": {"kind": "pod"}},
        ...     now=datetime(2026, 11, 26, 10, 15, tzinfo=timezone.utc))
        >>> decision.allowed, decision.reason
        (True, 'allowed by rule "sre-may-restart"')

    With a ``cache`` (a :class:`~aegis.engine.cache.DecisionCache`), decisions are looked up
    by the set's version and the request's projection onto the attributes the set reads; only
    decisions without errors are stored, and a cache failure is logged, counted and bypassed
    — it never changes a decision. With an ``audit`` sink, every decision's record is appended
    before the decision is returned (in the sink's ``sync`` mode: once it is durable); if it
    cannot be, :class:`~aegis.engine.errors.AuditError` is raised instead of a decision.

    Args:
        policy_set: the loaded set.
        schema: optional schema (a path or a loaded schema).
        cache: optional decision cache.
        cache_ttl: seconds a cached decision lives (``None``: the cache's default).
        audit: optional audit sink for decision records.
        audit_masker: what to mask in audited requests (default: the audit module's).
        audit_chain: the chain decision records go to.

    Raises:
        PolicyLoadError: the set does not validate against the schema.
        SchemaError: the schema file is unreadable or malformed.
    """

    __slots__ = (
        "_audit",
        "_audit_chain",
        "_cache",
        "_cache_ttl",
        "_compiled",
        "_counters",
        "_decode",
        "_inline_cache",
        "_keys",
        "_masker",
        "_near",
        "_schema",
    )

    def __init__(
        self,
        policy_set: PolicySet,
        schema: SchemaSource = None,
        *,
        cache: DecisionCache | None = None,
        cache_ttl: float | None = None,
        audit: AuditSink | None = None,
        audit_masker: Masker | None = None,
        audit_chain: str = "decisions",
        compiled_cache: CompiledCacheSetting = True,
    ) -> None:
        self._build(
            policy_set,
            schema,
            _snapshot_store(compiled_cache),
            cache=cache,
            cache_ttl=cache_ttl,
            audit=audit,
            audit_masker=audit_masker,
            audit_chain=audit_chain,
        )

    def _build(
        self,
        policy_set: PolicySet,
        schema: SchemaSource,
        store: _snapshot.SnapshotStore | None,
        *,
        missed: str | None = None,
        **options: Any,
    ) -> None:
        """Validate, compile (through ``store``; ``missed``: a snapshot key already looked up
        in vain) and set the engine up with ``options``."""
        loaded_schema = _load_schema(schema)
        if loaded_schema is not None:
            _validate(policy_set, loaded_schema)
        self._setup(_compile(policy_set, store, missed), loaded_schema, **options)

    def _setup(
        self,
        compiled: CompiledPolicySet,
        schema: Schema | None,
        *,
        cache: DecisionCache | None = None,
        cache_ttl: float | None = None,
        audit: AuditSink | None = None,
        audit_masker: Masker | None = None,
        audit_chain: str = "decisions",
    ) -> None:
        self._schema = schema
        self._compiled = compiled
        self._cache = cache
        self._cache_ttl = cache_ttl
        # INVARIANT: a memory cache does no I/O, so async callers may use it on the loop
        self._inline_cache = cache is None or isinstance(cache, MemoryDecisionCache)
        self._keys = KeyBuilder(self._compiled.reads) if cache is not None else None
        self._decode = DecisionDecoder()
        self._audit = audit
        self._masker = audit_masker
        self._audit_chain = audit_chain
        self._counters = _Counters()
        self._near = _near_cache(cache, cache_ttl, compiled.reads)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_paths(
        cls, paths: Iterable[str | os.PathLike[str]], schema: SchemaSource = None, **options: Any
    ) -> PolicyEngine:
        """An engine over ``.aegis`` files and directories (read recursively).

        Args:
            paths: files or directories.
            schema: optional schema (a path or a loaded schema).

        Raises:
            PolicyLoadError: the set does not load, or does not validate against the schema.
            SchemaError: the schema file is unreadable or malformed.
        """
        return cls.from_texts(read_paths(paths), schema=schema, **options)

    @classmethod
    def from_texts(
        cls, texts: Mapping[str, str], schema: SchemaSource = None, **options: Any
    ) -> PolicyEngine:
        """An engine over policy texts given as ``{file name: source text}``.

        A set compiled before from the same texts is restored from its snapshot (see
        ``compiled_cache``) without parsing: its rules are parsed when first needed, and
        :attr:`policy_set` when first asked for.

        Raises:
            PolicyLoadError: the set does not load, or does not validate against the schema.
            SchemaError: the schema file is unreadable or malformed.
        """
        store = _snapshot_store(options.pop("compiled_cache", True))
        engine = cls.__new__(cls)
        key = None
        if schema is None and store is not None:
            texts = dict(texts)
            key = _key(texts)
            compiled = _restore(key, texts, store, None) if key is not None else None
            if compiled is not None:
                engine._setup(compiled, None, **options)
                return engine
        engine._build(load_texts(texts), schema, store, missed=key, **options)
        return engine

    @classmethod
    def from_policy_set(
        cls, policy_set: PolicySet, schema: SchemaSource = None, **options: Any
    ) -> PolicyEngine:
        """An engine over an already loaded set.

        Raises:
            PolicyLoadError: the set does not validate against the schema.
            SchemaError: the schema file is unreadable or malformed.
        """
        return cls(policy_set, schema=schema, **options)

    # ------------------------------------------------------------------ properties

    @property
    def policy_set(self) -> PolicySet:
        """The loaded policy set (loaded now, for an engine restored from a snapshot)."""
        return self._compiled.policy_set

    @property
    def version(self) -> str:
        """The policy set's content hash (spec §6), as every decision carries it."""
        return self._compiled.version

    @property
    def schema(self) -> Schema | None:
        """The schema requests must conform to, if any."""
        return self._schema

    @property
    def reads(self) -> frozenset[tuple[str, ...]]:
        """Every attribute path the set reads (``("time", zone, field)`` for time fields)."""
        return self._compiled.reads

    @property
    def stats(self) -> EngineStats:
        """A snapshot of this engine's counters."""
        near = self._near
        return self._counters.snapshot(near.hit_count() if near is not None else 0)

    def __repr__(self) -> str:
        rules = self._compiled.rule_count
        return f"PolicyEngine(rules={rules}, version={self.version[:12]})"

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, request: Mapping[str, Any], now: datetime | None = None) -> Decision:
        """Decide one request (spec §6).

        Args:
            request: the request object of spec §4, as parsed from JSON.
            now: a timezone-aware datetime standing in for the clock when the request has
                no ``context.time``; ``None`` reads the system clock.

        Returns:
            The decision. Rules that cannot be evaluated are reported in
            ``decision.errors``; they never raise.

        Raises:
            InvalidRequestError: the request breaks spec §4 or does not conform to the
                engine's schema, or ``now`` is not timezone-aware.
            AuditError: an audit sink is configured and the record could not be written;
                no decision is returned.

        With a ``cache``, a request seen before as the same JSON text (and decided cleanly,
        without depending on the clock) is answered from the engine's near cache without
        being validated or keyed again; see ``docs/caching.md``.
        """
        near = self._near
        if now is None and near is not None:
            # The near cache (see _decide_near), inlined: this is the whole cost of a hit.
            key: bytes | None
            try:
                key = text = _write(request, None, DOCUMENT_OPTIONS)
            except TypeError:  # no JSON document: no key, the full path decides
                key = None
            else:
                entry = near.lookup(text)
                if entry is not None and entry[0] > near.clock():
                    next(near.hits)
                    if self._audit is None:
                        return entry[1]
                    self._record([(request, entry[1])])
                    return entry[1]
            decision = self._decide(request, None, key)
            if self._audit is not None:
                self._record([(request, decision)])
            return decision
        decision = self._decide(request, now)
        if self._audit is not None:
            self._record([(request, decision)])
        return decision

    def evaluate_many(
        self, requests: Sequence[Mapping[str, Any]], now: datetime | None = None
    ) -> list[Decision]:
        """Decide several requests; their audit records are appended together.

        Raises:
            InvalidRequestError: a request is invalid (the message names its position);
                nothing is decided or audited.
            AuditError: as for :meth:`evaluate`.
        """
        decisions: list[Decision] = []
        for position, request in enumerate(requests):
            try:
                decisions.append(self._decide_near(request, now))
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"request {position}: {exc}") from exc
        if self._audit is not None and decisions:
            self._record(list(zip(requests, decisions, strict=True)))
        return decisions

    async def aevaluate(self, request: Mapping[str, Any], now: datetime | None = None) -> Decision:
        """:meth:`evaluate` for asyncio code: the loop is held only for the evaluation.

        Network caches and audit writes run in a worker thread; the evaluation itself (tens
        of microseconds) and the near cache (in-process, no I/O) run on the loop.
        """
        key, decision = self._near_lookup(request, now)
        if decision is None:
            if self._inline_cache:
                decision = self._decide(request, now, key)
            else:
                decision = await asyncio.to_thread(self._decide, request, now, key)
        if self._audit is not None:
            await asyncio.to_thread(self._record, [(request, decision)])
        return decision

    # ------------------------------------------------------------------ internals

    def _near_lookup(
        self, request: Mapping[str, Any], now: datetime | None
    ) -> tuple[bytes | None, Decision | None]:
        """``(near key or None, the near cache's decision or None)``.

        With ``now`` given the near cache is skipped: ``now`` must still be validated, and
        the full path does that (the cost is one miss-priced decision, never a wrong one).
        """
        if now is not None:
            return None, None
        near = self._near
        if near is None:
            return None, None
        key = near_key(request)
        return key, near.get(key)

    def _decide_near(self, request: Mapping[str, Any], now: datetime | None) -> Decision:
        key, decision = self._near_lookup(request, now)
        if decision is None:
            decision = self._decide(request, now, key)
        return decision

    def _decide(
        self, request: Mapping[str, Any], now: datetime | None, near_key: bytes | None = None
    ) -> Decision:
        """Decide on the full path; ``near_key`` (the request's JSON text, taken before) lets
        the decision into the near cache when the near-cache rule allows it, and is looked up
        first among the near cache's keys holding ``null``."""
        if near_key is not None and b"null" in near_key and self._near is not None:
            held = self._near.get_guarded(near_key, request)
            if held is not None:
                return held
        if self._schema is not None:
            document = as_document(request)  # the request as every path reads it
            parse_request(document, now=now, read=False)  # spec §4 first: invalid is not judged
            problems = self._schema.check_request(document)
            if problems:
                raise InvalidRequestError(
                    "the request does not conform to the schema: " + "; ".join(problems)
                )
        # The compiled, indexed evaluator; the reference interpreter (aegis.engine._reference)
        # is its oracle in the differential tests (spec §8).
        ctx = prepare_request(request, now)
        if self._cache is None:
            decision = self._compiled.decide(ctx, request, now)
        else:
            decision = self._cached(ctx, request, now)
            if near_key is not None and not decision.errors:
                self._near_put(near_key, request, decision)
        next(self._counters.counts["decisions"])
        return decision

    def _near_put(self, key: bytes, request: Mapping[str, Any], decision: Decision) -> None:
        """Hold a validated request's clean decision in the near cache, if it cannot depend
        on the clock (CACHE-1: never a decision with errors, never an invalid request)."""
        near = self._near
        if near is None or len(key) > MAX_KEY_BYTES:
            return
        if not (near.timeless or carries_time(request, key)):
            return
        # the request may have changed under us (another thread): only what we decided
        if near_key(request) == key:
            near.put(key, decision)

    def _cached(self, ctx: Ctx, request: Mapping[str, Any], now: datetime | None) -> Decision:
        assert self._cache is not None
        assert self._keys is not None
        parts = {"principal": ctx[0], "action": ctx[1], "resource": ctx[2], "context": ctx[3]}
        key = self._keys.key(self.version, parts, time_view=ctx[4].view)
        try:
            stored = self._cache.get(key)
            if stored is not None:
                decision = self._decode(stored)
                if decision.version != self.version:
                    raise CacheUnavailableError("the cache answered for another policy version")
                next(self._counters.counts["cache_hits"])
                return decision
            next(self._counters.counts["cache_misses"])
        except (CacheUnavailableError, EngineError) as exc:
            self._cache_failed(exc)
            return self._compiled.decide(ctx, request, now)
        decision = self._compiled.decide(ctx, request, now)
        if not decision.errors:  # CACHE-1: only clean evaluations are cached
            try:
                self._cache.put(key, encode_decision(decision.to_dict()), self._cache_ttl)
            except CacheUnavailableError as exc:
                self._cache_failed(exc)
        return decision

    def _cache_failed(self, exc: Exception) -> None:
        self._counters.add("cache_errors")
        _log.warning("decision cache bypassed: %s", exc)

    def _record(self, decided: Sequence[tuple[Mapping[str, Any], Decision]]) -> None:
        from aegis.engine.audit import decision_record

        assert self._audit is not None
        records = [
            decision_record(decision, request, masker=self._masker, chain=self._audit_chain)
            for request, decision in decided
        ]
        self._audit.append(records)
        self._counters.add("audit_records", len(records))


def _near_cache(
    cache: DecisionCache | None, cache_ttl: float | None, reads: frozenset[tuple[str, ...]]
) -> NearCache | None:
    """The engine's near cache (``None``: the engine has no ``cache``, or no usable TTL)."""
    if cache is None:
        return None
    # the TTL the L2 entries get: ``cache_ttl``, else the backend's default
    ttl = cache_ttl if cache_ttl is not None else getattr(cache, "ttl", DEFAULT_TTL)
    try:
        seconds = min(float(ttl), MAX_TTL)  # CACHE-1 whatever a backend accepts
    except (TypeError, ValueError):
        return None
    if not seconds > 0:  # (NaN is not) a TTL the near cache can honour
        return None
    return NearCache(seconds, timeless=not reads_clock(reads))


def _snapshot_store(setting: CompiledCacheSetting) -> _snapshot.SnapshotStore | None:
    if setting is True:
        return _snapshot.default_store()
    if setting is False or setting is None:
        return None
    return _snapshot.SnapshotStore(setting)


def _key(texts: Mapping[str, str]) -> str | None:
    """The snapshot key of ``texts`` (``None``: the library's own sources are unreadable, so
    there are no snapshots)."""
    try:
        return _snapshot.snapshot_key(texts)
    except OSError:
        return None


def _restore(
    key: str, texts: Mapping[str, str], store: _snapshot.SnapshotStore, policy_set: PolicySet | None
) -> CompiledPolicySet | None:
    """The set compiled from ``texts``, restored from its snapshot, if there is a usable one."""
    with paused_gc(sum(map(len, texts.values()))):
        data = store.load(key)
        if data is None:
            return None
        try:
            return _snapshot.restore(data, texts, policy_set)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            store.discard(key, f"it does not restore ({type(exc).__name__}: {exc})")
            return None


def _compile(
    policy_set: PolicySet, store: _snapshot.SnapshotStore | None, missed: str | None = None
) -> CompiledPolicySet:
    """Compile a loaded set, through its snapshot when it has one (and leave one if not).

    ``missed``: the set's snapshot key, already looked up without success.
    """
    texts = policy_set.sources
    if (
        store is None
        or len(policy_set.rules) < _snapshot.MIN_RULES
        or not texts
        or set(texts) != {policy.name for policy in policy_set.files}
    ):
        return CompiledPolicySet(policy_set)
    key = missed if missed is not None else _key(texts)
    if key is None:
        return CompiledPolicySet(policy_set)
    compiled = None if missed is not None else _restore(key, texts, store, policy_set)
    if compiled is None:
        compiled = CompiledPolicySet(policy_set)
        with paused_gc(sum(map(len, texts.values()))):
            store.store(key, _snapshot.dump(compiled))
    return compiled


def _load_schema(schema: SchemaSource) -> Schema | None:
    if schema is None:
        return None
    from aegis.lang.schema import Schema, load_schema

    if isinstance(schema, Schema):
        return schema
    return load_schema(schema)


def _validate(policy_set: PolicySet, schema: Schema) -> None:
    from aegis.lang.validator import validate

    problems = [d for d in validate(policy_set, schema) if d.severity == Severity.ERROR]
    if problems:
        raise PolicyLoadError(problems)
