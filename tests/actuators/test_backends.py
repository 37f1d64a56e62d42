"""Each action, through both backends (the real kubernetes client against the fake API, and
the simulated actuator), changes the cluster exactly as kubectl would."""

from __future__ import annotations

from typing import Any

import pytest
from actuator_support import SEED, Backend, make_action

from aegis.actuators import (
    RemediationSettings,
    SimulatedActuator,
    SimulatedCluster,
    TargetNotFoundError,
)
from aegis.actuators._cluster import REVISION, TEMPLATE_HASH


def _dep(b: Backend, name: str = "api") -> dict[str, Any]:
    return b.cluster.get("Deployment", "prod", name)


def _rs_by_revision(b: Backend, name: str = "api") -> dict[int, dict[str, Any]]:
    uid = _dep(b, name)["metadata"]["uid"]
    return {
        int(rs["metadata"]["annotations"][REVISION]): rs
        for rs in b.cluster.objects("ReplicaSet", "prod")
        if rs["metadata"]["ownerReferences"][0]["uid"] == uid
    }


def _image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def test_restart_deployment_sets_restarted_at_like_kubectl(backend: Backend) -> None:
    before = _dep(backend)
    result = backend.actuator.execute(make_action("restart_deployment"))
    after = _dep(backend)
    assert (result.status, result.changed, result.reason) == ("succeeded", True, "restarted")
    ann = after["spec"]["template"]["metadata"]["annotations"]
    assert ann["kubectl.kubernetes.io/restartedAt"] == "2023-11-14T22:13:20Z"  # from issued_at
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    # a new ReplicaSet (revision 4) with the restarted template, the old one scaled to zero
    revisions = _rs_by_revision(backend)
    assert max(revisions) == 4
    assert revisions[4]["spec"]["replicas"] == 3 and revisions[3]["spec"]["replicas"] == 0
    # the field manager is recorded (the second audit trail)
    assert any(e["manager"] == "aegis-executor" for e in after["metadata"]["managedFields"])


def test_restart_replay_changes_nothing(backend: Backend) -> None:
    action = make_action("restart_deployment")
    backend.actuator.execute(action)
    snapshot = backend.cluster.snapshot()
    again = backend.actuator.execute(action)
    assert (again.status, again.changed, again.reason) == ("succeeded", False, "already_applied")
    assert backend.cluster.snapshot() == snapshot
    if backend.fake:
        assert [r.method for r in backend.fake.requests[-1:]] == ["GET"]


def test_restart_refuses_paused_deployment(backend: Backend) -> None:
    result = backend.actuator.execute(make_action("restart_deployment", name="frozen"))
    assert (result.status, result.reason) == ("failed", "deployment_paused")
    assert "rollout resume" in result.message


def test_restart_refuses_while_a_rollout_is_in_progress(backend: Backend) -> None:
    backend.cluster.converge = False
    backend.actuator.execute(
        make_action("scale_deployment", name="web", replicas=3)
    )  # generation+1
    result = backend.actuator.execute(make_action("restart_deployment", name="web"))
    assert (result.status, result.reason) == ("failed", "rollout_in_progress")


def test_scale_uses_the_scale_subresource(backend: Backend) -> None:
    result = backend.actuator.execute(make_action("scale_deployment", replicas=5))
    assert (result.status, result.details["replicas_before"], result.details["replicas_after"]) == (
        "succeeded",
        3,
        5,
    )
    assert _dep(backend)["spec"]["replicas"] == 5
    assert len(backend.cluster.objects("Pod", "prod")) == 2 + 2 + 1 + 2 + 5  # web, others, api
    if backend.fake:
        paths = [(r.method, r.path) for r in backend.fake.writes]
        assert paths == [("PATCH", "/apis/apps/v1/namespaces/prod/deployments/api/scale")]


def test_scale_refuses_when_an_hpa_owns_the_deployment(backend: Backend) -> None:
    result = backend.actuator.execute(make_action("scale_deployment", name="auto", replicas=4))
    assert (result.status, result.reason) == ("failed", "hpa_owns_deployment")
    assert _dep(backend, "auto")["spec"]["replicas"] == 2


def test_scale_with_hpa_when_configured() -> None:
    cluster = SimulatedCluster.from_yaml(SEED)
    sim = SimulatedActuator(cluster, RemediationSettings(allow_scale_with_hpa=True))
    result = sim.execute(make_action("scale_deployment", name="auto", replicas=4))
    assert result.status == "succeeded" and result.details["hpas"] == ["auto-hpa"]


@pytest.mark.parametrize(
    ("replicas", "reason"), [(51, "replicas_out_of_bounds"), (14, "scale_step_too_large")]
)
def test_scale_bounds_and_step_cap(backend: Backend, replicas: int, reason: str) -> None:
    result = backend.actuator.execute(make_action("scale_deployment", replicas=replicas))
    assert (result.status, result.reason) == ("failed", reason)
    assert _dep(backend)["spec"]["replicas"] == 3


def test_rollback_restores_the_previous_template_like_rollout_undo(backend: Backend) -> None:
    before = _rs_by_revision(backend)
    assert _image(_dep(backend)) == "registry.local/api:1.4.2"
    result = backend.actuator.execute(make_action("rollback_deployment"))
    assert (result.status, result.details["to_revision"]) == ("succeeded", 2)
    dep = _dep(backend)
    # the deployment template is revision 2's template, without pod-template-hash
    expected = before[2]["spec"]["template"]
    assert _image(dep) == "registry.local/api:1.4.1"
    assert TEMPLATE_HASH not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["template"]["spec"] == expected["spec"]
    # as Kubernetes does, the old ReplicaSet is reused and becomes revision 4
    after = _rs_by_revision(backend)
    assert after[4]["metadata"]["uid"] == before[2]["metadata"]["uid"]
    assert after[4]["spec"]["replicas"] == 3
    assert dep["metadata"]["annotations"][REVISION] == "4"
    if backend.fake:
        patch = backend.fake.writes[-1]
        assert patch.content_type == "application/json-patch+json"
        assert patch.body[0] == {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": result.details["resource_version_before"],
        }


def test_rollback_to_explicit_revision_and_missing_revision(backend: Backend) -> None:
    result = backend.actuator.execute(make_action("rollback_deployment", to_revision=1))
    assert result.status == "succeeded" and _image(_dep(backend)) == "registry.local/api:1.4.0"
    missing = backend.actuator.execute(make_action("rollback_deployment", to_revision=9))
    assert (missing.status, missing.reason) == ("failed", "revision_not_found")


def test_rollback_without_history_and_replay(backend: Backend) -> None:
    result = backend.actuator.execute(make_action("rollback_deployment", name="web"))
    assert (result.status, result.reason) == ("failed", "no_rollout_history")
    action = make_action("rollback_deployment")
    backend.actuator.execute(action)
    snapshot = backend.cluster.snapshot()
    again = backend.actuator.execute(action)
    assert (again.changed, again.reason) == (False, "already_applied")
    assert backend.cluster.snapshot() == snapshot


def test_rollback_skips_when_template_already_matches(backend: Backend) -> None:
    # revision 1 == current template after rolling back to it; asking for 1 again is a skip
    backend.actuator.execute(make_action("rollback_deployment", to_revision=1))
    rs = _rs_by_revision(backend)
    latest = max(rs)
    result = backend.actuator.execute(make_action("rollback_deployment", to_revision=latest))
    assert (result.status, result.changed, result.reason) == (
        "succeeded",
        False,
        "already_at_revision",
    )


@pytest.mark.parametrize(
    "action",
    [
        make_action("restart_deployment"),
        make_action("scale_deployment", replicas=4),
        make_action("rollback_deployment"),
    ],
    ids=["restart", "scale", "rollback"],
)
def test_dry_run_persists_nothing(backend: Backend, action: Any) -> None:
    snapshot = backend.cluster.snapshot()
    rv = backend.cluster.current_rv
    result = backend.actuator.execute(action, dry_run=True)
    assert (result.status, result.changed) == ("dry_run", True)
    assert backend.cluster.snapshot() == snapshot and backend.cluster.current_rv == rv
    if backend.fake:
        assert backend.fake.writes and all(r.dry_run for r in backend.fake.writes)


def test_restart_pod_evicts_and_the_replicaset_replaces_it(backend: Backend) -> None:
    pod = backend.cluster.select("Pod", "prod", "app=api")[0]["metadata"]["name"]
    result = backend.actuator.execute(make_action("restart_pod", name=pod))
    assert (result.status, result.details["method"]) == ("succeeded", "evict")
    names = [p["metadata"]["name"] for p in backend.cluster.select("Pod", "prod", "app=api")]
    assert pod not in names and len(names) == 3
    if backend.fake:
        post = backend.fake.writes[-1]
        assert post.path.endswith(f"/pods/{pod}/eviction")
        assert post.body["deleteOptions"]["preconditions"]["uid"] == result.details["uid"]


def test_restart_pod_dry_run_persists_nothing(backend: Backend) -> None:
    pod = backend.cluster.select("Pod", "prod", "app=api")[0]["metadata"]["name"]
    snapshot = backend.cluster.snapshot()
    result = backend.actuator.execute(make_action("restart_pod", name=pod), dry_run=True)
    assert result.status == "dry_run" and backend.cluster.snapshot() == snapshot


def test_restart_pod_blocked_by_pdb(backend: Backend) -> None:
    pod = backend.cluster.select("Pod", "prod", "app=web")[0]["metadata"]["name"]
    result = backend.actuator.execute(make_action("restart_pod", name=pod))
    assert (result.status, result.reason) == ("failed", "blocked_by_pdb")
    assert "needs 2 healthy pods and has 2" in result.details["causes"][0]
    assert pod in [p["metadata"]["name"] for p in backend.cluster.select("Pod", "prod", "app=web")]


@pytest.mark.parametrize(
    ("pod", "reason"), [("bare", "bare_pod"), ("node-exporter-x1", "daemonset_pod")]
)
def test_restart_pod_refuses_unsafe_pods(backend: Backend, pod: str, reason: str) -> None:
    result = backend.actuator.execute(make_action("restart_pod", name=pod))
    assert (result.status, result.reason) == ("failed", reason)
    assert backend.cluster.get("Pod", "prod", pod)
    if backend.fake:
        assert backend.fake.writes == []


def test_missing_target_raises_not_found(backend: Backend) -> None:
    with pytest.raises(TargetNotFoundError, match="does not exist"):
        backend.actuator.execute(make_action("restart_deployment", name="nope"))


def test_stale_pod_uid_is_a_conflict_not_a_second_kill() -> None:
    cluster = SimulatedCluster.from_yaml(SEED)
    sim = SimulatedActuator(cluster)
    pod = cluster.select("Pod", "prod", "app=api")[0]
    from aegis.actuators._status import ApiStatusError

    with pytest.raises(ApiStatusError) as err:
        cluster.evict_pod("prod", pod["metadata"]["name"], preconditions={"uid": "other"})
    assert err.value.code == 409
    assert (
        sim.execute(make_action("restart_pod", name=pod["metadata"]["name"])).status == "succeeded"
    )
    with pytest.raises(TargetNotFoundError):
        sim.execute(make_action("restart_pod", name=pod["metadata"]["name"]))
