"""The managed policy set behind ``/api/v1/evaluate``: loading, invalidation, roll-ups.

The *active set* is the union of the enabled documents of ``policy_documents`` (each loaded
as ``<name>.aegis``); its version is the engine's content hash. It is separate from the
route-authorization policies of :mod:`aegis.server.permissions`.

Every replica keeps one :class:`aegis.engine.PolicyEngine` over the active set, with a
decision cache (Redis when ``AEGIS_REDIS_URL`` is set, else in process) and the SQL audit sink
on the server's own database (chain ``decisions``, ``sync`` mode: a decision is answered only
once its record is durable). A change bumps ``service_state.revision`` in the transaction
that makes it; after the commit the replica publishes the revision on Redis, and every replica
marks its engine stale. Independently of Redis, each replica compares its revision with the
database at most every :data:`CHECK_INTERVAL` seconds, on the next request, so a lost message
delays a change by at most that much.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from aegis.server.db.models import DecisionRollup, PolicyDocument, ServiceState

if TYPE_CHECKING:
    from aegis.engine import Decision, PolicyEngine
    from aegis.server.db.database import Database
    from aegis.server.metrics import Metrics
    from aegis.server.settings import Settings

__all__ = [
    "CHECK_INTERVAL",
    "DECISION_CHAIN",
    "PolicyService",
    "RuntimeSettingsV1",
    "document_file",
    "import_documents",
]

_log = logging.getLogger("aegis.server.policies")

#: Seconds between two revision checks against the database (the fallback to pub/sub).
CHECK_INTERVAL = 0.5
#: The audit chain of decision records.
DECISION_CHAIN = "decisions"
#: Seconds between two flushes of the per-minute roll-ups to the database.
ROLLUP_FLUSH_INTERVAL = 10.0
_POLICIES = "policies"
_SETTINGS = "settings"
_LOCK_KEY = 0x0AE6150C1E  # pg advisory lock serialising changes of the active set

MaskPath = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_*.-]+$")
]


class RuntimeSettingsV1(BaseModel):
    """Settings administrators change at run time (``GET/PUT /api/v1/settings``).

    Attributes:
        evaluate_batch_max: most requests in one ``POST /api/v1/evaluate/batch``.
        decision_cache_ttl: seconds a cached decision lives (1..60, CACHE-1).
        audit_mask_paths: request paths masked in decision records (``principal.email``,
            ``resource.labels.*``), besides the sensitive key names always masked.
        rollup_retention_days: how long per-minute roll-ups are kept.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    evaluate_batch_max: int = Field(default=100, ge=1, le=1000)
    decision_cache_ttl: int = Field(default=60, ge=1, le=60)  # CACHE-1: at most 60 s
    audit_mask_paths: Annotated[list[MaskPath], Field(max_length=64)] = []
    rollup_retention_days: int = Field(default=30, ge=1, le=3650)


def document_file(name: str) -> str:
    """The file name a document is loaded under (``name.aegis``)."""
    return f"{name}.aegis"


def minute(at: datetime) -> datetime:
    """The start of the UTC minute of ``at``."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class _Totals:
    """Engine counters carried over engine rebuilds."""

    decisions: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_errors: int = 0
    audit_records: int = 0

    def add(self, stats: Any) -> None:
        for name in ("decisions", "cache_hits", "cache_misses", "cache_errors", "audit_records"):
            setattr(self, name, getattr(self, name) + getattr(stats, name))


@dataclass
class _Loaded:
    engine: PolicyEngine
    policy_revision: int
    settings_revision: int
    settings: RuntimeSettingsV1
    documents: int
    loaded_at: float = field(default_factory=time.monotonic)


class PolicyService:
    """The active policy set of one replica, and what goes with it (cache, audit, roll-ups).

    Raises:
        ServerError: the database cannot hold the decision chain (in-memory SQLite).

    Args:
        settings: the server settings (Redis URL and prefix).
        db: the server's database; decision records go to its ``aegis_audit_records``.
        metrics: the app's Prometheus metrics; the service adds its own to the registry.
        clock: the app clock (roll-up buckets, change times).
    """

    def __init__(self, settings: Settings, db: Database, metrics: Metrics, clock: Any) -> None:
        from aegis.engine.audit.sql import SqlAuditSink
        from aegis.engine.errors import AuditError
        from aegis.server.errors import ServerError

        self.db = db
        self.clock = clock
        self._redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        self._prefix = settings.redis_prefix
        self.channel = f"{self._prefix}policies:changed"
        self._own_sink = db.audit_sink is None
        try:
            self.sink: Any = db.audit_sink or SqlAuditSink(db.url, mode="sync")
        except AuditError as exc:  # e.g. an in-memory SQLite database: no durable chain
            raise ServerError(f"decision records cannot be kept: {exc}") from exc
        self._loaded: _Loaded | None = None
        #: One cache for the replica's life; entries are keyed by the set's version, so a new
        #: set never reads the old one's (CACHE-1), and the engine passes the TTL on each put.
        self.cache: Any = self._make_cache()
        self._stale = True
        self._checked = 0.0
        self._lock = asyncio.Lock()
        self._totals = _Totals()
        self._rollups: Counter[tuple[datetime, str, str]] = Counter()
        self._by_effect: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: Any = None
        self.audit_failures = 0
        self.decisions = PromCounter(
            "aegis_decisions",
            "Decisions answered by /api/v1/evaluate, by effect",
            ["effect"],
            registry=metrics.registry,
        )
        self.audit_failed = PromCounter(
            "aegis_decision_audit_failures",
            "Evaluations refused because their audit record could not be written",
            registry=metrics.registry,
        )
        metrics.registry.register(_Collector(self))

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background tasks (Redis subscriber, roll-up flusher)."""
        self._tasks.append(asyncio.create_task(self._flush_loop()))
        if self._redis_url:
            import redis.asyncio as aioredis

            self._publisher = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=0.5, socket_timeout=0.5
            )
            self._tasks.append(asyncio.create_task(self._listen()))

    async def aclose(self) -> None:
        """Stop the tasks, flush the roll-ups and close the sink the service opened."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.flush_rollups()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()
        if hasattr(self.cache, "close"):
            with contextlib.suppress(Exception):
                self.cache.close()
        if self._own_sink:
            await asyncio.to_thread(self.sink.close)

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        delay = 1.0
        while True:
            client = aioredis.Redis.from_url(self._redis_url or "", socket_connect_timeout=0.5)
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(self.channel)
                self._stale = True  # anything published while we were away
                delay = 1.0
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._stale = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the revision check keeps changes flowing meanwhile
                _log.warning(
                    "policy change subscription lost, retrying in %.0f s: %s",
                    delay,
                    type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(ROLLUP_FLUSH_INTERVAL)
            try:
                await self.flush_rollups()
            except Exception as exc:
                _log.warning("decision roll-ups not flushed: %s", type(exc).__name__)

    # -- the active set ------------------------------------------------------------------------

    async def loaded(self) -> _Loaded:
        """The current engine and settings, reloaded first when another replica changed them."""
        now = time.monotonic()
        current = self._loaded
        if current is not None and not self._stale and now - self._checked < CHECK_INTERVAL:
            return current
        async with self._lock:
            current = self._loaded
            if current is not None and not self._stale and now - self._checked < CHECK_INTERVAL:
                return current
            self._stale = False
            revisions = await self.db.run(_revisions)
            self._checked = time.monotonic()
            if current is not None and revisions == (
                current.policy_revision,
                current.settings_revision,
            ):
                return current
            fresh = await self.db.run(self._build)
            if current is not None:
                self._totals.add(current.engine.stats)
            self._loaded = fresh
            return fresh

    async def engine(self) -> PolicyEngine:
        """The engine over the active set (see :meth:`loaded`)."""
        return (await self.loaded()).engine

    async def runtime_settings(self) -> RuntimeSettingsV1:
        """The current runtime settings."""
        return (await self.loaded()).settings

    def _build(self, session: Session) -> _Loaded:
        from aegis.engine import PolicyEngine
        from aegis.engine.audit import Masker
        from aegis.lang import PolicyLoadError, load_texts

        state = {row.key: row for row in session.scalars(sa.select(ServiceState))}
        runtime = _settings_of(state.get(_SETTINGS))
        texts = enabled_texts(session)
        try:
            policy_set = load_texts(texts)
        except PolicyLoadError as exc:  # stored sets were checked on write: a newer language?
            _log.error("the stored active policy set does not load, denying everything: %s", exc)
            policy_set = load_texts({})
        engine = PolicyEngine(
            policy_set,
            cache=self.cache,
            cache_ttl=runtime.decision_cache_ttl,
            audit=self.sink,
            audit_masker=Masker(runtime.audit_mask_paths),
            audit_chain=DECISION_CHAIN,
        )
        return _Loaded(
            engine=engine,
            policy_revision=state[_POLICIES].revision if _POLICIES in state else 0,
            settings_revision=state[_SETTINGS].revision if _SETTINGS in state else 0,
            settings=runtime,
            documents=len(texts),
        )

    def _make_cache(self) -> Any:
        if self._redis_url:
            from aegis.engine.cache.redis import RedisDecisionCache

            return RedisDecisionCache(self._redis_url, prefix=f"{self._prefix}dc:")
        from aegis.engine.cache import MemoryDecisionCache

        return MemoryDecisionCache(max_entries=10_000)

    # -- changes -------------------------------------------------------------------------------

    @staticmethod
    def lock(session: Session) -> None:
        """Serialise changes of the active set and of the settings (call first in the txn)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})

    @staticmethod
    def bump(
        session: Session,
        key: str,
        at: datetime,
        actor: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Increase the revision of ``key`` (``policies`` or ``settings``) in this transaction."""
        row = session.get(ServiceState, key)
        if row is None:
            row = ServiceState(key=key, revision=0, data={}, updated_at=at)
            session.add(row)
        row.revision += 1
        if data is not None:
            row.data = dict(data)
        row.updated_at = at
        row.updated_by = actor
        session.flush()
        return row.revision

    async def changed(self) -> None:
        """After a committed change: reload here at once and tell the other replicas."""
        self._stale = True
        if self._publisher is not None:
            try:
                await self._publisher.publish(self.channel, "changed")
            except Exception as exc:  # the timer check still catches the change
                _log.warning("policy change not published: %s", type(exc).__name__)

    # -- evaluation ----------------------------------------------------------------------------

    def record(self, decisions: Sequence[Decision]) -> None:
        """Count answered decisions (Prometheus and the per-minute roll-ups)."""
        bucket = minute(self.clock())
        for decision in decisions:
            effect = decision.decision
            self.decisions.labels(effect).inc()
            self._by_effect[effect] += 1
            self._rollups[(bucket, "", effect)] += 1
            for rule in {*decision.allow, *decision.deny}:
                self._rollups[(bucket, rule, effect)] += 1

    async def flush_rollups(self) -> None:
        """Add the counts gathered since the last flush to ``decision_rollups``."""
        pending, self._rollups = self._rollups, Counter()
        if not pending:
            return
        retention = (await self.runtime_settings()).rollup_retention_days
        horizon = minute(self.clock()) - timedelta(days=retention)

        def write(session: Session) -> None:
            _upsert(session, pending)
            session.execute(sa.delete(DecisionRollup).where(DecisionRollup.bucket < horizon))

        try:
            await self.db.run(write)
        except Exception:
            self._rollups.update(pending)  # keep them for the next flush
            raise

    def stats(self) -> dict[str, Any]:
        """Live figures of this replica (``GET /api/v1/metrics/current``)."""
        loaded = self._loaded
        totals = _Totals(**vars(self._totals))
        if loaded is not None:
            totals.add(loaded.engine.stats)
        lookups = totals.cache_hits + totals.cache_misses + totals.cache_errors
        status = self.sink.status() if hasattr(self.sink, "status") else {}
        by_effect = {effect: self._by_effect[effect] for effect in ("ALLOW", "DENY")}
        return {
            "policy_version": loaded.engine.version if loaded else None,
            "policy_revision": loaded.policy_revision if loaded else None,
            "documents": loaded.documents if loaded else 0,
            "rules": len(loaded.engine.policy_set.rules) if loaded else 0,
            "decisions": totals.decisions,
            "decisions_by_effect": by_effect,
            "cache": {
                "hits": totals.cache_hits,
                "misses": totals.cache_misses,
                "errors": totals.cache_errors,
                "hit_ratio": round(totals.cache_hits / lookups, 4) if lookups else 0.0,
            },
            "audit": {
                "records": totals.audit_records,
                "failures": self.audit_failures,
                "queue_depth": int(status.get("queued", 0)),
                "mode": status.get("mode"),
            },
        }


class _Collector:
    """Prometheus gauges read from the live service at scrape time."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        figures = self.service.stats()
        yield _gauge(
            "aegis_decision_cache_hit_ratio",
            "Decision cache hits over lookups",
            figures["cache"]["hit_ratio"],
        )
        yield _gauge(
            "aegis_decision_cache_hits", "Decision cache hits since start", figures["cache"]["hits"]
        )
        yield _gauge(
            "aegis_decision_cache_misses",
            "Decision cache misses since start",
            figures["cache"]["misses"],
        )
        yield _gauge(
            "aegis_audit_queue_depth",
            "Decision audit records waiting to be written",
            figures["audit"]["queue_depth"],
        )
        yield _gauge("aegis_policy_rules", "Rules in the active policy set", figures["rules"])


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _revisions(session: Session) -> tuple[int, int]:
    query = sa.select(ServiceState.key, ServiceState.revision)
    rows: dict[str, int] = {}
    for key, revision in session.execute(query):
        rows[key] = revision
    return int(rows.get(_POLICIES, 0)), int(rows.get(_SETTINGS, 0))


def _settings_of(row: ServiceState | None) -> RuntimeSettingsV1:
    if row is None or not row.data:
        return RuntimeSettingsV1()
    try:
        return RuntimeSettingsV1.model_validate(row.data)
    except ValueError:
        _log.error("stored runtime settings are invalid, using the defaults")
        return RuntimeSettingsV1()


def stored_settings(session: Session) -> RuntimeSettingsV1:
    """The runtime settings as stored (defaults when never set)."""
    return _settings_of(session.get(ServiceState, _SETTINGS))


def enabled_texts(session: Session, *, skip: str | None = None) -> dict[str, str]:
    """``{name.aegis: source}`` of the enabled documents (``skip``: leave that id out)."""
    query = sa.select(PolicyDocument.id, PolicyDocument.name, PolicyDocument.source).where(
        PolicyDocument.enabled.is_(True)
    )
    return {
        document_file(name): source
        for doc_id, name, source in session.execute(query)
        if doc_id != skip
    }


def _upsert(session: Session, counts: Mapping[tuple[datetime, str, str], int]) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = DecisionRollup.__table__
    for (bucket, rule, effect), count in sorted(counts.items()):
        stmt = module.insert(table).values(
            bucket=bucket, rule=rule[:128], effect=effect, count=count
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["bucket", "rule", "effect"],
            set_={"count": table.c.count + stmt.excluded.count},
        )
        session.execute(stmt)


def import_documents(
    db: Database, paths: Sequence[str], now: datetime, *, enabled: bool = True
) -> list[str]:
    """Store ``.aegis`` files (or directories of them) as policy documents (``aegis policies
    import``; ``make run`` loads the examples this way).

    Each file becomes the document named after its stem (lowercased, other characters replaced
    by ``-``); documents that already exist by that name are left alone. The files must load
    together with the enabled documents, or nothing is stored.

    Args:
        db: the server's database.
        paths: files or directories (read recursively).
        now: the change time.
        enabled: whether the new documents are in the active set.

    Returns:
        The names of the documents created.

    Raises:
        PolicyLoadError: the files do not load (alone or with the enabled documents).
        OSError: a file cannot be read.
    """
    import re
    import uuid
    from pathlib import Path

    from aegis.lang import collect_policy_files, load_texts
    from aegis.server.audit import append_event
    from aegis.server.db.models import PolicyVersion

    files: dict[str, str] = {}
    for path in collect_policy_files(paths):
        stem = re.sub(r"[^a-z0-9_.-]", "-", Path(path).stem.lower()).lstrip("._-")[:64] or "policy"
        files[stem] = Path(path).read_text(encoding="utf-8")

    def store(session: Session) -> list[str]:
        PolicyService.lock(session)
        taken = set(session.scalars(sa.select(PolicyDocument.name)))
        new = {name: text for name, text in files.items() if name not in taken}
        if not new:
            return []
        texts = {document_file(n): t for n, t in new.items()}
        load_texts({**(enabled_texts(session) if enabled else {}), **texts})  # or raise
        for name, text in sorted(new.items()):
            doc = PolicyDocument(
                id=str(uuid.uuid4()),
                name=name,
                description="imported",
                source=text,
                enabled=enabled,
                version=1,
                created_at=now,
                updated_at=now,
            )
            session.add(doc)
            session.add(
                PolicyVersion(
                    policy_id=doc.id,
                    version=1,
                    change="created",
                    name=name,
                    description=doc.description,
                    source=text,
                    enabled=enabled,
                    author_id=None,
                    at=now,
                )
            )
            append_event(
                session,
                at=now,
                action="policy_created",
                target_id=doc.id,
                details={"name": name, "version": 1, "enabled": enabled, "imported": True},
            )
        PolicyService.bump(session, _POLICIES, now, None)
        return sorted(new)

    return db.run_sync(store)


POLICIES_KEY = _POLICIES
SETTINGS_KEY = _SETTINGS
