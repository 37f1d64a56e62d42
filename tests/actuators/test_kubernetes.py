"""KubernetesActuator specifics: retries, timeouts, error translation, the exact calls made."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from actuator_support import SEED, make_action

from aegis.actuators import (
    ActionConflict,
    ClusterForbiddenError,
    ClusterTimeoutError,
    ClusterUnavailableError,
    RemediationSettings,
    SimulatedCluster,
)
from aegis.actuators.kubernetes import (
    KubernetesActuator,
    KubernetesActuatorConfig,
    make_configuration,
)
from aegis.errors import ConfigurationError
from aegis.testing import FakeKubernetesAPI


@pytest.fixture
def server() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI(SimulatedCluster.from_yaml(SEED), allowed_namespaces={"prod"}) as fake:
        yield fake


def _actuator(
    fake: FakeKubernetesAPI, timeout: float = 2.0, **settings: object
) -> KubernetesActuator:
    sleeps: list[float] = []
    actuator = KubernetesActuator(
        fake.configuration(),
        RemediationSettings.model_validate(settings),
        timeout_seconds=timeout,
        sleep=sleeps.append,
    )
    actuator.sleeps = sleeps  # type: ignore[attr-defined]
    return actuator


def test_K8S4_conflict_is_reread_and_retried(server: FakeKubernetesAPI) -> None:
    server.inject_fault(409, method="PATCH", times=1)
    actuator = _actuator(server)
    result = actuator.execute(make_action("restart_deployment"))
    assert result.status == "succeeded" and actuator.stats["conflict_retries"] == 1
    assert [r.method for r in server.requests] == ["GET", "PATCH", "GET", "PATCH"]


def test_K8S4_conflict_retries_are_bounded(server: FakeKubernetesAPI) -> None:
    server.inject_fault(409, method="PATCH", times=100)
    with pytest.raises(ActionConflict, match="kept changing"):
        _actuator(server, conflict_retries=2).execute(make_action("restart_deployment"))
    assert len(server.writes) == 3


def test_rollback_test_op_failure_is_a_retry(server: FakeKubernetesAPI) -> None:
    # A concurrent writer bumps the resourceVersion between our read and our JSON patch:
    # the leading test op fails with 422 and the step is re-read and retried.
    cluster = server.cluster
    actuator = _actuator(server)
    original = cluster.patch_deployment
    calls = {"n": 0}

    def racing_patch(*args: object, **kwargs: object) -> dict[str, object]:
        calls["n"] += 1
        if calls["n"] == 1:
            original(
                "prod",
                "api",
                {"metadata": {"labels": {"touched": "yes"}}},
                "application/merge-patch+json",
            )
        return original(*args, **kwargs)  # type: ignore[arg-type]

    cluster.patch_deployment = racing_patch  # type: ignore[method-assign]
    result = actuator.execute(make_action("rollback_deployment"))
    assert result.status == "succeeded" and actuator.stats["conflict_retries"] == 1
    statuses = [r.status for r in server.requests if r.method == "PATCH"]
    assert statuses == [422, 200]


def test_reads_back_off_with_jitter_on_5xx(server: FakeKubernetesAPI) -> None:
    server.inject_fault(503, method="GET", times=2)
    actuator = _actuator(server)
    assert actuator.execute(make_action("restart_deployment")).status == "succeeded"
    sleeps = actuator.sleeps  # type: ignore[attr-defined]
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.2 and 0 <= sleeps[1] <= 0.4


def test_K8S4_writes_are_not_retried_on_5xx(server: FakeKubernetesAPI) -> None:
    server.inject_fault(500, method="PATCH", times=1)
    with pytest.raises(ClusterUnavailableError, match="500"):
        _actuator(server).execute(make_action("scale_deployment", replicas=4))
    assert len(server.writes) == 1


def test_K8S4_timeout_is_one_call_and_a_timeout_error(server: FakeKubernetesAPI) -> None:
    server.inject_fault(0, method="PATCH", delay=1.0)
    with pytest.raises(ClusterTimeoutError):
        _actuator(server, timeout=0.3).execute(make_action("restart_deployment"))
    deadline = time.monotonic() + 5
    while not server.writes and time.monotonic() < deadline:  # the fake answers after its delay
        time.sleep(0.05)
    assert [r.method for r in server.requests] == ["GET", "PATCH"]


def test_K8S3_api_server_rbac_denial_is_translated(server: FakeKubernetesAPI) -> None:
    with pytest.raises(ClusterForbiddenError, match="cannot get resource"):
        _actuator(server).execute(make_action("restart_deployment", namespace="staging"))


def test_eviction_forbidden_falls_back_to_delete_with_uid_precondition(
    server: FakeKubernetesAPI,
) -> None:
    pod = server.cluster.select("Pod", "prod", "app=api")[0]
    server.inject_fault(403, method="POST", path="/eviction$")
    result = _actuator(server).execute(make_action("restart_pod", name=pod["metadata"]["name"]))
    assert (result.status, result.details["method"]) == ("succeeded", "delete")
    delete = server.writes[-1]
    assert delete.method == "DELETE"
    assert delete.body["preconditions"] == {
        "uid": pod["metadata"]["uid"],
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }


def test_evict_only_mode_never_deletes(server: FakeKubernetesAPI) -> None:
    pod = server.cluster.select("Pod", "prod", "app=api")[0]["metadata"]["name"]
    server.inject_fault(403, method="POST", path="/eviction$")
    with pytest.raises(ClusterForbiddenError):
        _actuator(server, pod_restart="evict").execute(make_action("restart_pod", name=pod))
    assert [r.method for r in server.writes] == ["POST"]


def test_configuration_errors_are_translated(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="cannot load kubernetes configuration"):
        make_configuration(KubernetesActuatorConfig(kubeconfig="/nonexistent/kubeconfig"))


def test_unreachable_api_is_unavailable() -> None:
    cfg = make_configuration(KubernetesActuatorConfig(host="http://127.0.0.1:9"))
    actuator = KubernetesActuator(cfg, RemediationSettings(read_attempts=1), timeout_seconds=1)
    with pytest.raises(ClusterUnavailableError, match="unreachable"):
        actuator.execute(make_action("restart_deployment"))
