"""Guardrails: the checks an action must pass before anything touches a cluster.

In order, each refusal with a stable reason code (``GuardrailViolation.reason``):

1. ``kill_switch`` — automation is globally paused (engaged through the store, shared).
2. ``action_not_allowed`` — the action type is not enabled.
3. ``namespace_denied`` — the namespace is not an exact, byte-for-byte member of the
   allowlist (K8S-1: ASCII RFC 1123 label, ≤ 63, ``fullmatch``; no Unicode normalisation,
   no case folding, no trimming: ``ｐｒｏｄ``, ``Prod`` and ``"prod\\n"`` are all refused).
4. ``replicas_out_of_bounds`` / ``limit_exceeded`` — per-type limits.
5. ``in_flight`` — another action holds the target (one in flight per target).
6. ``circuit_open`` — the target's circuit breaker is open (N actions within a window
   opened it and raised an alert record; a human closes it with :meth:`Guardrails.reset_breaker`).
7. ``cooldown`` — the same action on the same target ran less than its cooldown ago
   (default 300 s, kubelet's CrashLoopBackOff cap); other targets and other actions are not
   held back.

State (locks, cooldowns, action events, breakers, alerts, the kill switch) lives in a
:class:`GuardrailStore` shared by every executor replica: :class:`SqlGuardrailStore`
(SQLAlchemy Core; SQLite or PostgreSQL) or :class:`MemoryGuardrailStore` (one process).

Usage (the executor pipeline)::

    guardrails.check(action)                    # pure: raises GuardrailViolation
    with guardrails.acquire(action) as permit:  # takes the target lock, re-checks
        permit.commit()                         # just before the actuator: cooldown + count
        actuator.execute(action)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aegis.actuators.base import (
    ACTION_TYPES,
    Action,
    ActionType,
    ScaleDeploymentParams,
    is_dns_label,
)
from aegis.actuators.errors import GuardrailStoreError, GuardrailViolation
from aegis.errors import require

__all__ = [
    "AlertRecord",
    "GuardrailConfig",
    "GuardrailStore",
    "Guardrails",
    "MemoryGuardrailStore",
    "Permit",
    "SqlGuardrailStore",
    "check_namespace",
]

DEFAULT_COOLDOWN_SECONDS = 300


def check_namespace(namespace: str, allowed: Iterable[str]) -> None:
    """Refuse ``namespace`` unless it is a valid label and exactly in ``allowed`` (K8S-1).

    Raises:
        GuardrailViolation: reason ``namespace_denied``.
    """
    if (
        not isinstance(namespace, str)
        or not is_dns_label(namespace)
        or namespace not in set(allowed)
    ):
        raise GuardrailViolation(
            "namespace_denied", f"namespace `{namespace!r}` is not in the allowlist"
        )


class GuardrailConfig(BaseModel):
    """Guardrail settings; every field has a documented default.

    Attributes:
        allowed_namespaces: the namespace allowlist (empty: every action is refused).
        allowed_actions: enabled action types (all four by default).
        min_replicas: lowest replica count a scale may ask for (0).
        max_replicas: highest replica count a scale may ask for (50).
        max_grace_period_seconds: upper bound of ``restart_pod`` grace periods (300).
        cooldown_seconds: per action type (300 each: kubelet's backoff cap).
        breaker_max_actions: actions on one target within the window that open its breaker (5).
        breaker_window_seconds: the breaker window (3600).
        lock_ttl_seconds: an in-flight lock expires after this, in case a holder died (120).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_namespaces: frozenset[str] = frozenset()
    allowed_actions: frozenset[ActionType] = frozenset(ACTION_TYPES)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=50, ge=0)
    max_grace_period_seconds: int = Field(default=300, ge=0)
    cooldown_seconds: dict[ActionType, int] = Field(
        default_factory=lambda: dict.fromkeys(ACTION_TYPES, DEFAULT_COOLDOWN_SECONDS)
    )
    breaker_max_actions: int = Field(default=5, ge=1)
    breaker_window_seconds: int = Field(default=3600, ge=1)
    lock_ttl_seconds: int = Field(default=120, ge=1)

    @field_validator("allowed_namespaces")
    @classmethod
    def _labels(cls, value: frozenset[str]) -> frozenset[str]:
        bad = sorted(ns for ns in value if not is_dns_label(ns))
        if bad:
            raise ValueError(f"not RFC 1123 labels: {bad!r}")
        return value

    @field_validator("cooldown_seconds")
    @classmethod
    def _cooldowns(cls, value: dict[ActionType, int]) -> dict[ActionType, int]:
        if any(v < 0 for v in value.values()):
            raise ValueError("cooldowns cannot be negative")
        return {**dict.fromkeys(ACTION_TYPES, DEFAULT_COOLDOWN_SECONDS), **value}


@dataclass(frozen=True)
class AlertRecord:
    """An alert raised by the guardrails (a circuit breaker opened).

    Attributes:
        kind: ``circuit_open``.
        target: ``Kind/namespace/name``.
        message: one sentence.
        at: Unix time.
    """

    kind: str
    target: str
    message: str
    at: float


@runtime_checkable
class GuardrailStore(Protocol):
    """Shared guardrail state. Every method is atomic on its own; ``try_lock`` is the one
    compare-and-set the algorithm relies on. Failures raise
    :class:`~aegis.actuators.errors.GuardrailStoreError` (the action is then refused)."""

    def try_lock(self, target: str, holder: str, now: float, ttl: float) -> bool:
        """Take the target's lock if free or expired; ``True`` if taken."""
        ...

    def unlock(self, target: str, holder: str) -> None:
        """Release the lock if ``holder`` still holds it."""
        ...

    def cooldown_until(self, key: str) -> float | None:
        """When the cooldown of ``key`` (``type|target``) ends, if any."""
        ...

    def record(self, key: str, target: str, now: float, cooldown_until: float) -> None:
        """Record one action on ``target`` and set the cooldown of ``key``."""
        ...

    def count_since(self, target: str, since: float) -> int:
        """Actions recorded on ``target`` since ``since``."""
        ...

    def breaker_open(self, target: str) -> bool:
        """Whether the target's breaker is open."""
        ...

    def open_breaker(self, alert: AlertRecord) -> bool:
        """Open the breaker of ``alert.target`` and store the alert; ``True`` if newly opened."""
        ...

    def close_breaker(self, target: str) -> None:
        """Close the breaker (a human decision)."""
        ...

    def alerts(self) -> list[AlertRecord]:
        """Every alert raised, oldest first."""
        ...

    def kill_switch(self) -> str | None:
        """The reason the kill switch is engaged, or ``None``."""
        ...

    def set_kill_switch(self, reason: str | None) -> None:
        """Engage (a reason) or release (``None``) the kill switch."""
        ...


class MemoryGuardrailStore:
    """A :class:`GuardrailStore` for one process (thread-safe; lost on restart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, tuple[str, float]] = {}
        self._cooldowns: dict[str, float] = {}
        self._events: dict[str, list[float]] = {}
        self._breakers: set[str] = set()
        self._alerts: list[AlertRecord] = []
        self._kill: str | None = None

    def try_lock(self, target: str, holder: str, now: float, ttl: float) -> bool:
        with self._lock:
            current = self._locks.get(target)
            if current is not None and current[1] > now:
                return False
            self._locks[target] = (holder, now + ttl)
            return True

    def unlock(self, target: str, holder: str) -> None:
        with self._lock:
            if self._locks.get(target, ("", 0.0))[0] == holder:
                del self._locks[target]

    def cooldown_until(self, key: str) -> float | None:
        with self._lock:
            return self._cooldowns.get(key)

    def record(self, key: str, target: str, now: float, cooldown_until: float) -> None:
        with self._lock:
            self._events.setdefault(target, []).append(now)
            self._cooldowns[key] = cooldown_until

    def count_since(self, target: str, since: float) -> int:
        with self._lock:
            return sum(1 for t in self._events.get(target, []) if t >= since)

    def breaker_open(self, target: str) -> bool:
        with self._lock:
            return target in self._breakers

    def open_breaker(self, alert: AlertRecord) -> bool:
        with self._lock:
            if alert.target in self._breakers:
                return False
            self._breakers.add(alert.target)
            self._alerts.append(alert)
            return True

    def close_breaker(self, target: str) -> None:
        with self._lock:
            self._breakers.discard(target)
            self._events.pop(target, None)

    def alerts(self) -> list[AlertRecord]:
        with self._lock:
            return list(self._alerts)

    def kill_switch(self) -> str | None:
        with self._lock:
            return self._kill

    def set_kill_switch(self, reason: str | None) -> None:
        with self._lock:
            self._kill = reason


class SqlGuardrailStore:
    """A :class:`GuardrailStore` in SQL (SQLAlchemy Core): shared by replicas, survives restarts.

    Tables (created when missing): ``aegis_guardrail_locks``, ``…_cooldowns``, ``…_events``,
    ``…_breakers``, ``…_alerts``, ``…_switches``.

    Args:
        url_or_engine: a SQLAlchemy URL (``sqlite:///aegis.db``,
            ``postgresql+psycopg://…``) or an ``Engine``.
        create_tables: create missing tables (do it once, not from racing replicas).

    Raises:
        GuardrailStoreError: the database cannot be reached.
    """

    def __init__(self, url_or_engine: Any, *, create_tables: bool = True) -> None:
        sa: Any = require("sqlalchemy", "server")
        self._sa: Any = sa
        self._owns_engine = isinstance(url_or_engine, str)
        self.engine = (
            sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        md = sa.MetaData()
        col, s, f = sa.Column, sa.String, sa.Float
        self.locks = sa.Table(
            "aegis_guardrail_locks",
            md,
            col("target", s(400), primary_key=True),
            col("holder", s(64), nullable=False),
            col("expires_at", f, nullable=False),
        )
        self.cooldowns = sa.Table(
            "aegis_guardrail_cooldowns",
            md,
            col("key", s(450), primary_key=True),
            col("until", f, nullable=False),
        )
        self.events = sa.Table(
            "aegis_guardrail_events",
            md,
            col("id", sa.Integer, primary_key=True, autoincrement=True),
            col("target", s(400), nullable=False, index=True),
            col("at", f, nullable=False),
        )
        self.breakers = sa.Table(
            "aegis_guardrail_breakers",
            md,
            col("target", s(400), primary_key=True),
            col("opened_at", f, nullable=False),
        )
        self.alert_table = sa.Table(
            "aegis_guardrail_alerts",
            md,
            col("id", sa.Integer, primary_key=True, autoincrement=True),
            col("kind", s(64), nullable=False),
            col("target", s(400), nullable=False),
            col("message", sa.Text, nullable=False),
            col("at", f, nullable=False),
        )
        self.switches = sa.Table(
            "aegis_guardrail_switches",
            md,
            col("name", s(64), primary_key=True),
            col("reason", sa.Text, nullable=False),
        )
        self.metadata = md
        if create_tables:
            self._run(md.create_all)

    def close(self) -> None:
        """Dispose of the engine's connections (when this store created the engine)."""
        if self._owns_engine:
            self.engine.dispose()

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        try:
            with self.engine.begin() as conn:
                return fn(conn)
        except self._sa.exc.SQLAlchemyError as exc:
            raise GuardrailStoreError(f"the guardrail store failed: {type(exc).__name__}") from exc

    def try_lock(self, target: str, holder: str, now: float, ttl: float) -> bool:
        sa, t = self._sa, self.locks

        def go(conn: Any) -> bool:
            taken = conn.execute(
                sa.update(t)
                .where(t.c.target == target, t.c.expires_at <= now)
                .values(holder=holder, expires_at=now + ttl)
            ).rowcount
            if taken:
                return True
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(t).values(target=target, holder=holder, expires_at=now + ttl)
                    )
            except sa.exc.IntegrityError:
                return False
            return True

        return bool(self._run(go))

    def unlock(self, target: str, holder: str) -> None:
        t = self.locks
        self._run(
            lambda c: c.execute(
                self._sa.delete(t).where(t.c.target == target, t.c.holder == holder)
            )
        )

    def cooldown_until(self, key: str) -> float | None:
        t = self.cooldowns
        value = self._run(
            lambda c: c.execute(self._sa.select(t.c.until).where(t.c.key == key)).scalar()
        )
        return None if value is None else float(value)

    def record(self, key: str, target: str, now: float, cooldown_until: float) -> None:
        sa = self._sa

        def go(conn: Any) -> None:
            conn.execute(sa.insert(self.events).values(target=target, at=now))
            updated = conn.execute(
                sa.update(self.cooldowns)
                .where(self.cooldowns.c.key == key)
                .values(until=cooldown_until)
            ).rowcount
            if not updated:
                conn.execute(sa.insert(self.cooldowns).values(key=key, until=cooldown_until))

        self._run(go)

    def count_since(self, target: str, since: float) -> int:
        sa, t = self._sa, self.events
        return int(
            self._run(
                lambda c: c.execute(
                    sa.select(sa.func.count())
                    .select_from(t)
                    .where(t.c.target == target, t.c.at >= since)
                ).scalar_one()
            )
        )

    def breaker_open(self, target: str) -> bool:
        t = self.breakers
        return (
            self._run(
                lambda c: c.execute(self._sa.select(t.c.target).where(t.c.target == target)).first()
            )
            is not None
        )

    def open_breaker(self, alert: AlertRecord) -> bool:
        sa = self._sa

        def go(conn: Any) -> bool:
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(self.breakers).values(target=alert.target, opened_at=alert.at)
                    )
            except sa.exc.IntegrityError:
                return False
            conn.execute(
                sa.insert(self.alert_table).values(
                    kind=alert.kind, target=alert.target, message=alert.message, at=alert.at
                )
            )
            return True

        return bool(self._run(go))

    def close_breaker(self, target: str) -> None:
        sa = self._sa

        def go(conn: Any) -> None:
            conn.execute(sa.delete(self.breakers).where(self.breakers.c.target == target))
            conn.execute(sa.delete(self.events).where(self.events.c.target == target))

        self._run(go)

    def alerts(self) -> list[AlertRecord]:
        t = self.alert_table
        rows = self._run(
            lambda c: c.execute(
                self._sa.select(t.c.kind, t.c.target, t.c.message, t.c.at).order_by(t.c.id)
            ).all()
        )
        return [AlertRecord(r[0], r[1], r[2], float(r[3])) for r in rows]

    def kill_switch(self) -> str | None:
        t = self.switches
        value = self._run(
            lambda c: c.execute(self._sa.select(t.c.reason).where(t.c.name == "kill")).scalar()
        )
        return None if value is None else str(value)

    def set_kill_switch(self, reason: str | None) -> None:
        sa, t = self._sa, self.switches

        def go(conn: Any) -> None:
            conn.execute(sa.delete(t).where(t.c.name == "kill"))
            if reason is not None:
                conn.execute(sa.insert(t).values(name="kill", reason=reason))

        self._run(go)


@dataclass
class Permit:
    """The right to act on one target, from :meth:`Guardrails.acquire`; a context manager.

    Call :meth:`commit` right before the actuator runs (starts the cooldown and counts the
    action for the breaker); leaving the ``with`` block releases the target lock.
    """

    guardrails: Guardrails
    action: Action
    holder: str
    committed: bool = field(default=False)
    released: bool = field(default=False)

    def commit(self) -> None:
        """Record the action: cooldown from now, one more action for the breaker."""
        if not self.committed:
            self.guardrails._commit(self.action)
            self.committed = True

    def release(self) -> None:
        """Release the target lock (idempotent)."""
        if not self.released:
            self.guardrails.store.unlock(self.action.target, self.holder)
            self.released = True

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class Guardrails:
    """Checks actions against :class:`GuardrailConfig` and the shared :class:`GuardrailStore`.

    Args:
        config: the settings.
        store: shared state (a new :class:`MemoryGuardrailStore` by default).
        clock: Unix seconds.
    """

    def __init__(
        self,
        config: GuardrailConfig,
        store: GuardrailStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store: GuardrailStore = store if store is not None else MemoryGuardrailStore()
        self._clock = clock

    @staticmethod
    def cooldown_key(action: Action) -> str:
        """The cooldown key: ``type|Kind/namespace/name``."""
        return f"{action.type}|{action.target}"

    def _static(self, action: Action) -> None:
        cfg = self.config
        reason = self.store.kill_switch()
        if reason is not None:
            raise GuardrailViolation("kill_switch", f"automation is paused: {reason}")
        if action.type not in cfg.allowed_actions:
            raise GuardrailViolation("action_not_allowed", f"action `{action.type}` is not enabled")
        check_namespace(action.namespace, cfg.allowed_namespaces)
        params = action.params
        if (
            isinstance(params, ScaleDeploymentParams)
            and not cfg.min_replicas <= params.replicas <= cfg.max_replicas
        ):
            raise GuardrailViolation(
                "replicas_out_of_bounds",
                f"replicas {params.replicas} is outside {cfg.min_replicas}..{cfg.max_replicas}",
            )
        grace = getattr(params, "grace_period_seconds", None)
        if grace is not None and grace > cfg.max_grace_period_seconds:
            raise GuardrailViolation(
                "limit_exceeded", f"grace period {grace}s exceeds {cfg.max_grace_period_seconds}s"
            )

    def _dynamic(self, action: Action, now: float) -> None:
        cfg = self.config
        if self.store.breaker_open(action.target):
            raise GuardrailViolation(
                "circuit_open",
                f"automation on `{action.target}` is stopped until a human resets it",
            )
        until = self.store.cooldown_until(self.cooldown_key(action))
        if until is not None and until > now:
            raise GuardrailViolation(
                "cooldown",
                f"`{action.type}` on `{action.target}` is cooling down for {int(until - now) + 1}s",
            )
        recent = self.store.count_since(action.target, now - cfg.breaker_window_seconds)
        if recent >= cfg.breaker_max_actions:
            alert = AlertRecord(
                "circuit_open",
                action.target,
                f"{recent} actions on `{action.target}` within {cfg.breaker_window_seconds}s; "
                "automation stopped on this target",
                now,
            )
            self.store.open_breaker(alert)
            raise GuardrailViolation("circuit_open", alert.message)

    def check(self, action: Action) -> None:
        """Every check, without side effects (a dry run, or before the policy decision).

        Raises:
            GuardrailViolation: the first failing check, with its reason code.
            GuardrailStoreError: the store failed (refuse the action).
        """
        self._static(action)
        self._dynamic(action, self._clock())

    def acquire(self, action: Action) -> Permit:
        """Take the target's in-flight lock, then run every check under it.

        Raises:
            GuardrailViolation: ``in_flight`` or any check of :meth:`check`.
            GuardrailStoreError: the store failed.
        """
        self._static(action)
        holder = uuid.uuid4().hex
        now = self._clock()
        if not self.store.try_lock(action.target, holder, now, self.config.lock_ttl_seconds):
            raise GuardrailViolation(
                "in_flight", f"another action on `{action.target}` is in flight"
            )
        permit = Permit(self, action, holder)
        try:
            self._dynamic(action, now)
        except BaseException:
            permit.release()
            raise
        return permit

    def _commit(self, action: Action) -> None:
        now = self._clock()
        cooldown = self.config.cooldown_seconds.get(action.type, DEFAULT_COOLDOWN_SECONDS)
        self.store.record(self.cooldown_key(action), action.target, now, now + cooldown)

    def engage_kill_switch(self, reason: str) -> None:
        """Pause all automation, for every replica sharing the store."""
        self.store.set_kill_switch(reason or "kill switch engaged")

    def release_kill_switch(self) -> None:
        """Resume automation."""
        self.store.set_kill_switch(None)

    def reset_breaker(self, target: str) -> None:
        """Close a target's breaker and forget its action count (a human decision)."""
        self.store.close_breaker(target)

    def alerts(self) -> list[AlertRecord]:
        """Alerts raised so far (breakers opened)."""
        return self.store.alerts()
