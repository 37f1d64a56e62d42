"""Guardrails: allowlist (K8S-1), limits, shared cooldowns, in-flight lock, breaker, kill switch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from actuator_support import make_action

from aegis.actuators import Action, GuardrailStoreError, GuardrailViolation, InvalidActionError
from aegis.actuators.guardrails import (
    GuardrailConfig,
    Guardrails,
    GuardrailStore,
    MemoryGuardrailStore,
    SqlGuardrailStore,
    check_namespace,
)

CONFIG = GuardrailConfig(allowed_namespaces=frozenset({"prod", "staging"}), breaker_max_actions=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], GuardrailStore]]:
    if request.param == "memory":
        shared = MemoryGuardrailStore()
        yield lambda: shared
        return
    url = (
        f"sqlite:///{tmp_path / 'guardrails.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_schema")
    )
    created: list[SqlGuardrailStore] = []

    def make() -> GuardrailStore:
        created.append(SqlGuardrailStore(url))
        return created[-1]

    yield make
    for store in created:
        store.close()


def _guardrails(
    factory: Callable[[], GuardrailStore], clock: Clock, config: GuardrailConfig = CONFIG
) -> Guardrails:
    return Guardrails(config, factory(), clock=clock)


def _refusal(fn: Callable[[], Any]) -> str:
    with pytest.raises(GuardrailViolation) as err:
        fn()
    assert str(err.value)  # every refusal is explained
    return err.value.reason


LOOK_ALIKES = [
    "ｐｒｏｄ",  # full-width: NFKC would map it to "prod"
    "Prod",
    "PROD",
    "prod\n",
    "prod\r\n",
    " prod",
    "prod ",
    "prod\t",
    "pr\u200bod",  # zero-width space
    "prоd",  # Cyrillic о
    "prod\x00",
    "prod.",
    "-prod",
    "prod-",
    "",
    "p" * 64,
    "pro d",
    "prod,staging",
    "production",
    "dev",
]


@pytest.mark.parametrize("namespace", LOOK_ALIKES, ids=[repr(n) for n in LOOK_ALIKES])
def test_K8S1_look_alike_namespaces_are_denied(namespace: str) -> None:
    with pytest.raises(GuardrailViolation) as err:
        check_namespace(namespace, {"prod", "staging"})
    assert err.value.reason == "namespace_denied"
    # even an Action built without validation is refused by the guardrails
    action = Action.model_construct(
        **{**make_action("restart_deployment").__dict__, "namespace": namespace}
    )
    guardrails = Guardrails(CONFIG)
    assert _refusal(lambda: guardrails.check(action)) == "namespace_denied"
    assert _refusal(lambda: guardrails.acquire(action)) == "namespace_denied"


def test_K8S1_valid_labels_must_still_match_exactly() -> None:
    check_namespace("prod", {"prod"})
    with pytest.raises(InvalidActionError):  # and the action schema refuses look-alikes too
        Action.parse({**make_action("restart_deployment").to_wire(), "namespace": "ｐｒｏｄ"})
    with pytest.raises(ValueError, match="not RFC 1123 labels"):
        GuardrailConfig(allowed_namespaces=frozenset({"Prod"}))


def test_K8S2_action_types_can_be_disabled() -> None:
    guardrails = Guardrails(
        CONFIG.model_copy(update={"allowed_actions": frozenset({"restart_pod"})})
    )
    assert (
        _refusal(lambda: guardrails.check(make_action("restart_deployment")))
        == "action_not_allowed"
    )


def test_replica_bounds_and_grace_limit() -> None:
    guardrails = Guardrails(CONFIG.model_copy(update={"max_replicas": 10}))
    assert (
        _refusal(lambda: guardrails.check(make_action("scale_deployment", replicas=11)))
        == "replicas_out_of_bounds"
    )
    guardrails.check(make_action("scale_deployment", replicas=10))
    assert (
        _refusal(
            lambda: guardrails.check(make_action("restart_pod", name="p", grace_period_seconds=301))
        )
        == "limit_exceeded"
    )


def test_cooldown_is_per_action_and_target_and_shared(
    store_factory: Callable[[], GuardrailStore],
) -> None:
    clock = Clock()
    first = _guardrails(store_factory, clock)
    with first.acquire(make_action("restart_deployment")) as permit:
        permit.commit()
    # another replica (or a restart) sharing the store sees the cooldown
    second = _guardrails(store_factory, clock)
    assert _refusal(lambda: second.acquire(make_action("restart_deployment"))) == "cooldown"
    # never other targets, never other actions on the same target
    second.acquire(make_action("restart_deployment", name="web")).release()
    second.acquire(make_action("restart_deployment", namespace="staging")).release()
    second.acquire(make_action("rollback_deployment")).release()
    clock.now += 299
    assert _refusal(lambda: second.check(make_action("restart_deployment"))) == "cooldown"
    clock.now += 2
    second.check(make_action("restart_deployment"))


def test_default_cooldown_is_at_least_kubelets_backoff_cap() -> None:
    assert min(GuardrailConfig().cooldown_seconds.values()) >= 300


def test_uncommitted_permit_records_nothing(store_factory: Callable[[], GuardrailStore]) -> None:
    guardrails = _guardrails(store_factory, Clock())
    with guardrails.acquire(make_action("restart_deployment")):
        pass  # e.g. the policy denied: no cooldown, no breaker count
    guardrails.acquire(make_action("restart_deployment")).release()


def test_one_action_in_flight_per_target(store_factory: Callable[[], GuardrailStore]) -> None:
    clock = Clock()
    guardrails = _guardrails(store_factory, clock)
    permit = guardrails.acquire(make_action("restart_deployment"))
    other = _guardrails(store_factory, clock)
    assert (
        _refusal(lambda: other.acquire(make_action("scale_deployment", replicas=4))) == "in_flight"
    )
    other.acquire(make_action("restart_deployment", name="web")).release()
    permit.release()
    other.acquire(make_action("scale_deployment", replicas=4)).release()
    # a lock whose holder died expires
    guardrails.acquire(make_action("rollback_deployment"))
    clock.now += CONFIG.lock_ttl_seconds + 1
    other.acquire(make_action("rollback_deployment")).release()


def test_circuit_breaker_opens_raises_an_alert_and_needs_a_human(
    store_factory: Callable[[], GuardrailStore],
) -> None:
    clock = Clock()
    guardrails = _guardrails(store_factory, clock)
    for type_ in ("restart_deployment", "rollback_deployment", "scale_deployment"):
        params = {"replicas": 4} if type_ == "scale_deployment" else {}
        with guardrails.acquire(make_action(type_, **params)) as permit:
            permit.commit()
    clock.now += 400  # past every cooldown, still inside the window
    assert _refusal(lambda: guardrails.acquire(make_action("restart_deployment"))) == "circuit_open"
    assert _refusal(lambda: guardrails.check(make_action("rollback_deployment"))) == "circuit_open"
    alerts = _guardrails(store_factory, clock).alerts()
    assert [(a.kind, a.target) for a in alerts] == [("circuit_open", "Deployment/prod/api")]
    guardrails.acquire(make_action("restart_deployment", name="web")).release()  # others unaffected
    clock.now += 10_000  # time alone does not close it
    assert _refusal(lambda: guardrails.check(make_action("restart_deployment"))) == "circuit_open"
    guardrails.reset_breaker("Deployment/prod/api")
    guardrails.acquire(make_action("restart_deployment")).release()


def test_kill_switch_is_global_and_shared(store_factory: Callable[[], GuardrailStore]) -> None:
    clock = Clock()
    guardrails = _guardrails(store_factory, clock)
    guardrails.engage_kill_switch("incident 42")
    other = _guardrails(store_factory, clock)
    for action in (
        make_action("restart_deployment"),
        make_action("restart_pod", name="p", namespace="staging"),
    ):
        with pytest.raises(GuardrailViolation, match="incident 42") as err:
            other.acquire(action)
        assert err.value.reason == "kill_switch"
    other.release_kill_switch()
    guardrails.acquire(make_action("restart_deployment")).release()


def test_concurrent_acquires_on_one_target_admit_exactly_one(
    store_factory: Callable[[], GuardrailStore], request: pytest.FixtureRequest
) -> None:
    if "sqlite" in request.node.callspec.id:
        pytest.skip("SQLite serialises writers; the race is exercised on memory and PostgreSQL")
    clock = Clock()
    store_factory()  # create the tables once, as a migration would
    results: list[str] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        guardrails = _guardrails(store_factory, clock)
        barrier.wait()
        try:
            guardrails.acquire(make_action("restart_deployment"))
            results.append("won")
        except GuardrailViolation as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["in_flight"] * 5 + ["won"]


def test_store_failure_refuses(tmp_path: Path) -> None:
    with pytest.raises(GuardrailStoreError):
        SqlGuardrailStore(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'g.db'}")
