"""The executor pipeline end to end: real signing, guardrails, engine, SQL audit store, and
the real kubernetes client against FakeKubernetesAPI (so "zero calls" is observable)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.actuators import (
    GuardrailConfig,
    Guardrails,
    Keyring,
    MemoryGuardrailStore,
    MemoryReplayStore,
    RemediationSettings,
    RequestVerifier,
    SimulatedCluster,
    sign_request,
)
from aegis.actuators.kubernetes import KubernetesActuator
from aegis.engine import PolicyEngine
from aegis.remediation import Executor, ExecutorStore, ExecutorStoreError, Outbox, policy_request
from aegis.testing import FakeKubernetesAPI

SECRET = "executor-secret-0123456789-abcdefgh"
NOW = 1_700_000_000.0
SEED = """
deployments:
  - {namespace: prod, name: api, replicas: 3, image: "api:2", history: ["api:1"]}
  - {namespace: prod, name: web, replicas: 2, image: "web:1"}
  - {namespace: staging, name: api, replicas: 1, image: "api:3"}
"""
POLICY = """
allow "remediators" {
    "remediator" in principal.roles
}
deny "no-big-scale" {
    action == "scale_deployment"
    context.replicas > 8
}
"""


@dataclass
class World:
    executor: Executor
    fake: FakeKubernetesAPI
    store: ExecutorStore
    tmp: Path
    nonce: int = 0

    def send(
        self,
        payload: dict[str, Any] | bytes,
        *,
        key_id: str = "ops",
        secret: str = SECRET,
        ts: float = NOW,
        path: str = "/v1/actions",
        mutate: Any = None,
    ) -> Any:
        self.nonce += 1
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = sign_request(
            "POST",
            path,
            body=body,
            key_id=key_id,
            secret=secret,
            timestamp=int(ts),
            nonce=f"nonce-{self.nonce:012d}",
        )
        request = {"method": "POST", "path": path, "query": "", "headers": headers, "body": body}
        if mutate:
            mutate(request)
        return self.executor.submit(**request), request

    def intents(self) -> list[dict[str, Any]]:
        return self.store.list_actions()


def body(**over: Any) -> dict[str, Any]:
    data = {
        "request_id": "req-1",
        "type": "restart_deployment",
        "namespace": "prod",
        "name": "api",
        "params": {},
        "requested_by": "detector",
        "reason": "crashloop",
        "dry_run": False,
    }
    return {**data, **over}


def _executor(
    store: ExecutorStore,
    fake: FakeKubernetesAPI,
    tmp: Path,
    *,
    replay: Any = None,
    guard_store: Any = None,
    timeout: float = 2.0,
) -> Executor:
    return Executor(
        verifier=RequestVerifier(
            Keyring({"ops": SECRET, "intruder": "i" * 40}),
            replay or MemoryReplayStore(),
            clock=lambda: NOW,
        ),
        guardrails=Guardrails(
            GuardrailConfig(allowed_namespaces=frozenset({"prod"})),
            guard_store or MemoryGuardrailStore(),
            clock=lambda: NOW,
        ),
        engine=PolicyEngine.from_texts({"executor.aegis": POLICY}),
        actuator=KubernetesActuator(
            fake.configuration(),
            RemediationSettings(),
            timeout_seconds=timeout,
            sleep=lambda _s: None,
        ),
        store=store,
        outbox=Outbox(tmp / "outbox.jsonl"),
        principals={"ops": {"roles": ["remediator"]}},
        clock=lambda: NOW,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = ExecutorStore(f"sqlite:///{tmp_path / 'executor.db'}")
    with FakeKubernetesAPI(SimulatedCluster.from_yaml(SEED)) as fake:
        yield World(_executor(store, fake, tmp_path), fake, store, tmp_path)
    store.close()


def test_happy_path_intent_then_outcome(world: World) -> None:
    response, _ = world.send(body())
    assert response.status_code == 200 and response.body["status"] == "succeeded"
    record = world.executor.get(response.body["id"])
    assert record is not None and record["status"] == "succeeded" and record["key_id"] == "ops"
    assert record["decision"]["allowed"] is True and record["result"]["reason"] == "restarted"
    assert [r.method for r in world.fake.writes] == ["PATCH"]


def test_policy_mapping() -> None:
    from aegis.actuators import Action

    data = body(type="scale_deployment", params={"replicas": 4})
    del data["dry_run"]
    action = Action.parse(data)
    assert policy_request(action, "ops", {"roles": ["remediator"], "id": "spoofed"}) == {
        "principal": {"roles": ["remediator"], "id": "ops"},
        "action": "scale_deployment",
        "resource": {"kind": "deployment", "namespace": "prod", "name": "api"},
        "context": {"replicas": 4},
    }


def _tamper_body(r: dict[str, Any]) -> None:
    r["body"] = r["body"].replace(b'"api"', b'"web"')


def _reserialise(r: dict[str, Any]) -> None:
    r["body"] = json.dumps(json.loads(r["body"]), indent=1).encode()


def _wrong_path(r: dict[str, Any]) -> None:
    r["path"] = "/v1/actions/"


@pytest.mark.parametrize(
    ("kwargs", "mutate"),
    [
        ({"ts": NOW - 301}, None),
        ({"ts": NOW + 301}, None),
        ({}, _tamper_body),
        ({}, _reserialise),
        ({}, _wrong_path),
        ({"secret": "w" * 40}, None),
        ({"key_id": "ghost"}, None),
    ],
    ids=["stale", "future", "tampered", "reserialised", "wrong-path", "wrong-key", "unknown-key"],
)
def test_SIG6_bad_signatures_are_401_audited_and_touch_nothing(
    world: World, kwargs: dict[str, Any], mutate: Any
) -> None:
    response, _ = world.send(body(), mutate=mutate, **kwargs)
    assert (response.status_code, response.body) == (
        401,
        {"error": {"code": "actuator.signature", "message": "request signature is invalid"}},
    )
    assert world.fake.requests == [] and world.intents() == []
    assert world.executor.report()["refusals"] == {"signature": 1}


def test_SIG3_replay_is_409_even_after_the_replay_store_is_lost(world: World) -> None:
    first, request = world.send(body())
    assert first.status_code == 200
    calls = len(world.fake.requests)
    assert world.executor.submit(**request).status_code == 409
    # "Redis FLUSHALL": a new, empty replay store; the database still remembers the nonce
    fresh = _executor(world.store, world.fake, world.tmp)
    again = fresh.submit(**request)
    assert again.status_code == 409 and again.body["error"]["code"] == "actuator.replay"
    assert len(world.fake.requests) == calls


LOOK_ALIKES = ["ｐｒｏｄ", "Prod", "prod\n", " prod", "prоd", "staging", "kube-system", None, 7]


@pytest.mark.parametrize("namespace", LOOK_ALIKES, ids=[repr(n) for n in LOOK_ALIKES])
def test_K8S1_namespaces_outside_the_allowlist_are_403(world: World, namespace: Any) -> None:
    response, _ = world.send(body(namespace=namespace))
    assert response.status_code == 403 and response.body["error"]["reason"] == "namespace_denied"
    assert world.fake.requests == [] and world.intents() == []
    assert world.executor.report()["refusals"] == {"namespace_denied": 1}


@pytest.mark.parametrize(
    "params", [{"replicas": -1}, {"replicas": 1e9}, {"replicas": "3"}, {"replicas": True}, {}]
)
def test_K8S2_invalid_params_are_422(world: World, params: dict[str, Any]) -> None:
    response, _ = world.send(body(type="scale_deployment", params=params))
    assert response.status_code == 422 and world.fake.requests == []


def test_K8S2_an_action_outside_the_allowlist_is_403(world: World) -> None:
    response, _ = world.send(body(type="exec"))
    assert response.status_code == 403
    assert response.body["error"]["reason"] == "action_not_allowed"
    assert world.fake.requests == [] and world.intents() == []


def test_K8S2_bad_dry_run_and_bodies_are_422(world: World) -> None:
    assert world.send(body(dry_run="yes", request_id="r2"))[0].status_code == 422
    assert world.send(b"[1, 2]")[0].status_code == 422
    assert world.send(b"not json")[0].status_code == 422
    assert world.fake.requests == []


def test_policy_denial_is_403_with_the_reason(world: World) -> None:
    response, _ = world.send(body(type="scale_deployment", params={"replicas": 9}))
    assert response.status_code == 403
    assert response.body["error"] == {
        "code": "executor.policy_denied",
        "message": 'denied by rule "no-big-scale"',
        "reason": "policy_denied",
    }
    assert world.fake.requests == [] and world.intents() == []


def test_K8S4_same_request_id_acts_once(world: World) -> None:
    first, _ = world.send(body())
    second, _ = world.send(body())  # new nonce, same request id
    assert second.status_code == 200 and second.body["id"] == first.body["id"]
    assert len(world.fake.writes) == 1 and len(world.intents()) == 1
    other, _ = world.send(body(name="web"))  # the same key for a different action
    assert (
        other.status_code == 409 and other.body["error"]["code"] == "executor.request_id_conflict"
    )
    assert len(world.fake.writes) == 1


def test_cooldown_refuses_the_same_action_on_the_same_target(world: World) -> None:
    assert world.send(body())[0].status_code == 200
    again, _ = world.send(body(request_id="req-2"))
    assert again.status_code == 403 and again.body["error"]["reason"] == "cooldown"
    other, _ = world.send(body(request_id="req-3", name="web"))
    assert other.status_code == 200


def test_dry_run_persists_nothing_and_consumes_no_cooldown(world: World) -> None:
    before = world.fake.cluster.snapshot()
    response, _ = world.send(body(dry_run=True))
    assert response.body["status"] == "dry_run" and world.fake.cluster.snapshot() == before
    assert all(r.dry_run for r in world.fake.writes)
    assert world.send(body(request_id="req-2"))[0].body["status"] == "succeeded"


def test_AUD5_audit_database_down_means_503_and_no_cluster_call(world: World) -> None:
    import sqlalchemy as sa

    world.store.engine = sa.create_engine("sqlite:////nonexistent-dir/db.sqlite")
    response, _ = world.send(body())
    assert (
        response.status_code == 503
        and response.body["error"]["code"] == "executor.audit_unavailable"
    )
    assert world.fake.requests == []


def test_AUD5_outcome_write_failure_goes_to_the_outbox_and_is_replayed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = world.store.write_outcome

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ExecutorStoreError("down")

    monkeypatch.setattr(world.store, "write_outcome", broken)
    response, _ = world.send(body())
    assert response.status_code == 200 and response.body["status"] == "succeeded"
    assert world.store.get(response.body["id"])["status"] == "pending"  # type: ignore[index]
    assert len(world.executor.outbox.pending()) == 1
    monkeypatch.setattr(world.store, "write_outcome", real)
    assert world.executor.start() == []  # the outbox is replayed before reconciling
    assert world.store.get(response.body["id"])["status"] == "succeeded"  # type: ignore[index]
    assert world.executor.outbox.pending() == []


def test_AUD5_intent_without_outcome_is_reconciled_at_start(world: World) -> None:
    class Crash(BaseException):
        pass

    def die(*_a: Any, **_k: Any) -> None:
        raise Crash  # the process dies between intent and outcome

    world.executor.actuator.execute = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        world.send(body())
    assert [r["status"] for r in world.intents()] == ["pending"]
    restarted = _executor(world.store, world.fake, world.tmp)
    unknown = restarted.start()
    assert [r["request_id"] for r in unknown] == ["req-1"]
    assert [r["status"] for r in world.intents()] == ["unknown"]
    assert restarted.report()["totals"] == {"unknown": 1}


def test_K8S4_cluster_timeout_is_504_after_one_call(tmp_path: Path) -> None:
    store = ExecutorStore(f"sqlite:///{tmp_path / 'executor.db'}")
    with FakeKubernetesAPI(SimulatedCluster.from_yaml(SEED)) as fake:
        executor = _executor(store, fake, tmp_path, timeout=0.3)
        fake.inject_fault(0, method="PATCH", delay=1.0)
        world = World(executor, fake, store, tmp_path)
        response, _ = world.send(body())
        assert response.status_code == 504 and response.body["status"] == "unknown"
        assert [r["status"] for r in world.intents()] == ["unknown"]
    store.close()


def test_report(world: World) -> None:
    world.send(body())
    world.send(body(request_id="r2", type="scale_deployment", params={"replicas": 9}))
    world.send(body(request_id="r3", name="nope"))
    report = world.executor.report()
    assert report["actions"] == {"restart_deployment": {"succeeded": 1, "failed": 1}}
    assert report["failure_rate"] == {"restart_deployment": 0.5}
    assert report["refusals"] == {"policy_denied": 1}


def test_build_executor_from_service_options(tmp_path: Path) -> None:
    from aegis.errors import ConfigurationError
    from aegis.remediation import build_executor

    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "executor.aegis").write_text(POLICY, encoding="utf-8")
    (tmp_path / "cluster.yaml").write_text(SEED, encoding="utf-8")
    options: dict[str, Any] = {
        "allow_namespaces": ["prod"],
        "policies": [str(tmp_path / "policies")],
        "database_url": f"sqlite:///{tmp_path / 'executor.db'}",
        "actuator": "simulated",
        "actuator_config": {"cluster_file": str(tmp_path / "cluster.yaml")},
        "outbox_path": str(tmp_path / "outbox.jsonl"),
        "principals": {"ops": {"roles": ["remediator"]}},
    }
    for keys in ("", "ops:short", "ops"):
        with pytest.raises(ConfigurationError):
            build_executor(keys=keys, **options)
    executor = build_executor(keys=f"ops:{SECRET}", **options)
    assert executor.start() == []
    payload = json.dumps(body()).encode()
    response = executor.submit(
        method="POST",
        path="/v1/actions",
        query="",
        headers=sign_request("POST", "/v1/actions", body=payload, key_id="ops", secret=SECRET),
        body=payload,
    )
    assert response.status_code == 200 and response.body["status"] == "succeeded"
    assert executor.report()["totals"] == {"succeeded": 1}
    executor.store.close()


_CRASHING_EXECUTOR = """
import json, os, signal, sys
from aegis.actuators import SimulatedActuator, SimulatedCluster, sign_request
from aegis.remediation import build_executor

executor = build_executor(
    keys="ops:" + sys.argv[2], allow_namespaces=["prod"], policies=[sys.argv[3]],
    database_url=sys.argv[1], actuator="simulated", outbox_path=sys.argv[4],
    principals={"ops": {"roles": ["remediator"]}},
)

class Dies:
    def execute(self, action, dry_run=False):
        os.kill(os.getpid(), signal.SIGKILL)

executor.actuator = Dies()
payload = sys.argv[5].encode()
headers = sign_request("POST", "/v1/actions", body=payload, key_id="ops", secret=sys.argv[2])
executor.submit(method="POST", path="/v1/actions", query="", headers=headers, body=payload)
"""


@pytest.mark.slow
def test_AUD5_kill_9_between_intent_and_outcome_is_reconciled(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from aegis.remediation import build_executor

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "executor.aegis").write_text(POLICY, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'executor.db'}"
    script = tmp_path / "crash.py"
    script.write_text(_CRASHING_EXECUTOR, encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            db,
            SECRET,
            str(tmp_path / "p"),
            str(tmp_path / "outbox.jsonl"),
            json.dumps(body()),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    executor = build_executor(
        keys=f"ops:{SECRET}",
        allow_namespaces=["prod"],
        policies=[str(tmp_path / "p")],
        database_url=db,
        outbox_path=str(tmp_path / "outbox.jsonl"),
    )
    unknown = executor.start()
    assert [(r["request_id"], r["status"]) for r in unknown] == [("req-1", "pending")]
    assert [r["status"] for r in executor.list_actions()] == ["unknown"]
    executor.store.close()


def test_an_unexpected_actuator_failure_is_recorded_unknown_without_a_traceback(
    world: World,
) -> None:
    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("secret internals")

    world.executor.actuator.execute = boom  # type: ignore[method-assign]
    response, _ = world.send(body())
    assert response.status_code == 500 and response.body["status"] == "unknown"
    assert "secret internals" not in json.dumps(response.body)
    assert [r["status"] for r in world.intents()] == ["unknown"]


def test_far_future_issued_at_is_invalid_not_a_crash(world: World) -> None:
    response, _ = world.send(body(issued_at=2**40))
    assert response.status_code == 422


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "request_id": st.one_of(st.text(max_size=10), _json_values),
        "type": st.sampled_from(
            ["restart_pod", "restart_deployment", "scale_deployment", "rollback_deployment", "x"]
        ),
        "namespace": st.sampled_from(["prod", "Prod", "ｐｒｏｄ", "staging", "prod\n"])
        | _json_values,
        "name": st.sampled_from(["api", "web", "nope", "API", "../x"]) | _json_values,
        "params": st.fixed_dictionaries(
            {},
            optional={
                "replicas": _json_values,
                "to_revision": _json_values,
                "grace_period_seconds": _json_values,
            },
        )
        | _json_values,
        "requested_by": _json_values,
        "reason": _json_values,
        "dry_run": _json_values,
        "extra": _json_values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_fields)
def test_any_signed_body_gets_a_documented_answer_and_refusals_touch_nothing(
    payload: dict[str, Any],
) -> None:
    import tempfile

    from aegis.actuators import SimulatedActuator

    with tempfile.TemporaryDirectory() as tmp:
        store = ExecutorStore(f"sqlite:///{tmp}/e.db")
        cluster = SimulatedCluster.from_yaml(SEED)
        executor = Executor(
            verifier=RequestVerifier(
                Keyring({"ops": SECRET}), MemoryReplayStore(), clock=lambda: NOW
            ),
            guardrails=Guardrails(
                GuardrailConfig(allowed_namespaces=frozenset({"prod"})), clock=lambda: NOW
            ),
            engine=PolicyEngine.from_texts({"executor.aegis": POLICY}),
            actuator=SimulatedActuator(cluster),
            store=store,
            outbox=Outbox(Path(tmp) / "o.jsonl"),
            principals={"ops": {"roles": ["remediator"]}},
            clock=lambda: NOW,
        )
        before = cluster.snapshot()
        raw = json.dumps(payload).encode()
        headers = sign_request(
            "POST", "/v1/actions", body=raw, key_id="ops", secret=SECRET, timestamp=int(NOW)
        )
        response = executor.submit(
            method="POST", path="/v1/actions", query="", headers=headers, body=raw
        )
        store.close()
    assert response.status_code in {200, 403, 422}
    if response.status_code == 200:
        assert response.body["status"] in {"succeeded", "failed", "dry_run"}
    else:
        assert cluster.snapshot() == before
        assert set(response.body["error"]) >= {"code", "message"}


@pytest.mark.postgres
def test_pipeline_on_postgresql(postgres_schema: str, tmp_path: Path) -> None:
    store = ExecutorStore(postgres_schema)
    with FakeKubernetesAPI(SimulatedCluster.from_yaml(SEED)) as fake:
        world = World(_executor(store, fake, tmp_path), fake, store, tmp_path)
        first, request = world.send(body())
        assert first.status_code == 200 and first.body["status"] == "succeeded"
        assert (
            _executor(store, fake, tmp_path).submit(**request).status_code == 409
        )  # nonce in the DB
        assert (
            world.send(body(request_id="r-2", name="web", dry_run=True))[0].body["status"]
            == "dry_run"
        )
        assert store.report()["totals"] == {"succeeded": 1, "dry_run": 1}
        assert _executor(store, fake, tmp_path).start() == []
    store.close()


@pytest.mark.postgres
def test_concurrent_requests_on_one_target_act_once(postgres_schema: str, tmp_path: Path) -> None:
    import threading

    from aegis.actuators import SimulatedActuator, SqlGuardrailStore

    store = ExecutorStore(postgres_schema)
    guard = SqlGuardrailStore(store.engine)
    cluster = SimulatedCluster.from_yaml(SEED)

    def make() -> Executor:
        return Executor(
            verifier=RequestVerifier(
                Keyring({"ops": SECRET}), MemoryReplayStore(), clock=lambda: NOW
            ),
            guardrails=Guardrails(
                GuardrailConfig(allowed_namespaces=frozenset({"prod"})), guard, clock=lambda: NOW
            ),
            engine=PolicyEngine.from_texts({"executor.aegis": POLICY}),
            actuator=SimulatedActuator(cluster),
            store=store,
            outbox=Outbox(tmp_path / "o.jsonl"),
            principals={"ops": {"roles": ["remediator"]}},
            clock=lambda: NOW,
        )

    replicas = [make() for _ in range(6)]  # six executor replicas sharing the database
    barrier = threading.Barrier(6)
    codes: list[tuple[int, str]] = []

    def worker(i: int) -> None:
        raw = json.dumps(body(request_id=f"req-{i}")).encode()
        headers = sign_request(
            "POST",
            "/v1/actions",
            body=raw,
            key_id="ops",
            secret=SECRET,
            timestamp=int(NOW),
            nonce=f"concurrent-nonce-{i:04d}",
        )
        barrier.wait()
        r = replicas[i].submit(
            method="POST", path="/v1/actions", query="", headers=headers, body=raw
        )
        codes.append((r.status_code, r.body.get("status") or r.body["error"].get("reason", "")))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes).count((200, "succeeded")) == 1, codes
    assert all(
        code == 403 and reason in {"in_flight", "cooldown"} for code, reason in codes if code != 200
    )
    restarts = [d for d in cluster.objects("Deployment", "prod") if d["metadata"]["name"] == "api"]
    assert restarts[0]["metadata"]["generation"] == 3  # seed (2) + exactly one restart
    store.close()
