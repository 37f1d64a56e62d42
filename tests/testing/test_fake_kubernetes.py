"""FakeKubernetesAPI, driven by the real kubernetes client: the API server's semantics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from aegis.testing import FakeKubernetesAPI

SEED = """
deployments:
  - {namespace: prod, name: api, replicas: 2, image: "api:2", history: ["api:1"]}
hpas:
  - {namespace: prod, name: api, target: api, min_replicas: 2, max_replicas: 5}
pdbs:
  - {namespace: prod, name: api-pdb, selector: {app: api}, max_unavailable: 0}
"""


@pytest.fixture
def fake() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI.from_yaml(SEED, allowed_namespaces={"prod"}) as server:
        yield server


@pytest.fixture
def apps(fake: FakeKubernetesAPI) -> Iterator[k8s.AppsV1Api]:
    api_client = fake.api_client()
    yield k8s.AppsV1Api(api_client)
    api_client.close()


@pytest.fixture
def core(fake: FakeKubernetesAPI) -> Iterator[k8s.CoreV1Api]:
    api_client = fake.api_client()
    yield k8s.CoreV1Api(api_client)
    api_client.close()


def _status(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == exc.value.status
    return body  # type: ignore[no-any-return]


def test_not_found_is_a_status_object(apps: k8s.AppsV1Api) -> None:
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("nope", "prod")
    body = _status(err)
    assert (body["reason"], body["message"]) == ("NotFound", 'deployments.apps "nope" not found')
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


def test_unknown_path_and_method(fake: FakeKubernetesAPI) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{fake.url}/apis/batch/v1/namespaces/prod/jobs")
    assert err.value.code == 404
    assert (
        json.loads(err.value.read())["message"]
        == "the server could not find the requested resource"
    )
    req = urllib.request.Request(
        f"{fake.url}/apis/apps/v1/namespaces/prod/deployments/api", method="DELETE"
    )
    with pytest.raises(urllib.error.HTTPError) as err2:
        urllib.request.urlopen(req)
    assert err2.value.code == 405
    err2.value.close()


def test_resource_version_bumps_on_writes_only(apps: k8s.AppsV1Api) -> None:
    rv0 = apps.read_namespaced_deployment("api", "prod").metadata.resource_version
    assert apps.read_namespaced_deployment("api", "prod").metadata.resource_version == rv0
    out = apps.patch_namespaced_deployment("api", "prod", {"metadata": {"labels": {"x": "1"}}})
    assert int(out.metadata.resource_version) > int(rv0)
    # a patch that changes nothing is not a write
    again = apps.patch_namespaced_deployment("api", "prod", {"metadata": {"labels": {"x": "1"}}})
    assert again.metadata.resource_version == out.metadata.resource_version


def test_stale_resource_version_in_patch_is_409(apps: k8s.AppsV1Api) -> None:
    dep = apps.read_namespaced_deployment("api", "prod")
    apps.patch_namespaced_deployment("api", "prod", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment(
            "api",
            "prod",
            {"metadata": {"resourceVersion": dep.metadata.resource_version, "labels": {"y": "2"}}},
        )
    assert _status(err)["reason"] == "Conflict"
    assert "the object has been modified" in _status(err)["message"]


def test_json_patch_test_failure_is_422_and_changes_nothing(
    fake: FakeKubernetesAPI, apps: k8s.AppsV1Api
) -> None:
    before = fake.cluster.snapshot()
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment(
            "api",
            "prod",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "replace", "path": "/spec/replicas", "value": 9},
            ],
            _content_type="application/json-patch+json",
        )
    assert err.value.status == 422 and _status(err)["reason"] == "Invalid"
    assert fake.cluster.snapshot() == before


def test_json_patch_ops(apps: k8s.AppsV1Api) -> None:
    out = apps.patch_namespaced_deployment(
        "api",
        "prod",
        [
            {"op": "add", "path": "/metadata/annotations/a~1b", "value": "v"},
            {"op": "copy", "from": "/metadata/annotations/a~1b", "path": "/metadata/annotations/c"},
            {"op": "move", "from": "/metadata/annotations/c", "path": "/metadata/annotations/d"},
            {"op": "remove", "path": "/metadata/annotations/d"},
            {"op": "test", "path": "/spec/replicas", "value": 2},
        ],
        _content_type="application/json-patch+json",
    )
    assert out.metadata.annotations["a/b"] == "v" and "d" not in out.metadata.annotations


def test_merge_patch_and_validation(apps: k8s.AppsV1Api) -> None:
    out = apps.patch_namespaced_deployment(
        "api", "prod", {"spec": {"replicas": 3}}, _content_type="application/merge-patch+json"
    )
    assert out.spec.replicas == 3
    for bad in ({"spec": {"replicas": -1}}, {"spec": {"selector": {"matchLabels": {"app": "x"}}}}):
        with pytest.raises(ApiException) as err:
            apps.patch_namespaced_deployment(
                "api", "prod", bad, _content_type="application/merge-patch+json"
            )
        assert err.value.status == 422


def test_strategic_merge_patch_merges_containers_by_name(
    fake: FakeKubernetesAPI, apps: k8s.AppsV1Api
) -> None:
    out = apps.patch_namespaced_deployment(
        "api",
        "prod",
        {"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "api:3"}]}}}},
    )
    assert [(c.name, c.image) for c in out.spec.template.spec.containers] == [("api", "api:3")]
    assert out.metadata.generation == 3
    dep = apps.read_namespaced_deployment("api", "prod")
    assert (
        dep.status.observed_generation == 3
        and dep.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    )


def test_unsupported_patch_type_is_415(fake: FakeKubernetesAPI) -> None:
    req = urllib.request.Request(
        f"{fake.url}/apis/apps/v1/namespaces/prod/deployments/api",
        data=b"{}",
        method="PATCH",
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 415
    err.value.close()


def test_dry_run_persists_nothing_and_returns_the_would_be_object(
    fake: FakeKubernetesAPI, apps: k8s.AppsV1Api
) -> None:
    before = fake.cluster.snapshot()
    out = apps.patch_namespaced_deployment("api", "prod", {"spec": {"replicas": 4}}, dry_run="All")
    assert out.spec.replicas == 4
    assert fake.cluster.snapshot() == before
    scale = apps.patch_namespaced_deployment_scale(
        "api", "prod", {"spec": {"replicas": 5}}, dry_run="All"
    )
    assert scale.spec.replicas == 5 and fake.cluster.snapshot() == before
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("api", "prod", {"spec": {"replicas": 4}}, dry_run="Some")
    assert err.value.status == 400


def test_field_manager_is_recorded(apps: k8s.AppsV1Api) -> None:
    out = apps.patch_namespaced_deployment(
        "api", "prod", {"metadata": {"labels": {"x": "1"}}}, field_manager="aegis-executor"
    )
    assert "aegis-executor" in [m.manager for m in out.metadata.managed_fields]


def test_scale_subresource_and_cas_replace(apps: k8s.AppsV1Api) -> None:
    scale = apps.read_namespaced_deployment_scale("api", "prod")
    assert (scale.spec.replicas, scale.status.selector) == (2, "app=api")
    body = k8s.V1Scale(
        metadata=k8s.V1ObjectMeta(
            name="api", namespace="prod", resource_version=scale.metadata.resource_version
        ),
        spec=k8s.V1ScaleSpec(replicas=4),
    )
    assert apps.replace_namespaced_deployment_scale("api", "prod", body).spec.replicas == 4
    with pytest.raises(ApiException) as err:  # the same resourceVersion is now stale
        apps.replace_namespaced_deployment_scale("api", "prod", body)
    assert err.value.status == 409
    assert apps.read_namespaced_deployment("api", "prod").spec.replicas == 4


def test_hpas_list_through_autoscaling_v2(fake: FakeKubernetesAPI) -> None:
    api_client = fake.api_client()
    hpas = k8s.AutoscalingV2Api(api_client).list_namespaced_horizontal_pod_autoscaler("prod")
    api_client.close()
    assert [
        (h.metadata.name, h.spec.scale_target_ref.name, h.spec.max_replicas) for h in hpas.items
    ] == [("api", "api", 5)]


def test_eviction_blocked_by_pdb_is_429(fake: FakeKubernetesAPI, core: k8s.CoreV1Api) -> None:
    pod = core.list_namespaced_pod("prod", label_selector="app=api").items[0]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction(
            pod.metadata.name,
            "prod",
            k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=pod.metadata.name, namespace="prod")),
        )
    body = _status(err)
    assert (err.value.status, body["reason"]) == (429, "TooManyRequests")
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    fake.cluster.add_pdb(
        __import__("aegis.actuators._cluster", fromlist=["PDBSeed"]).PDBSeed(
            namespace="prod", name="second", selector={"app": "api"}, min_available=0
        )
    )
    with pytest.raises(ApiException) as err2:
        core.create_namespaced_pod_eviction(
            pod.metadata.name,
            "prod",
            k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=pod.metadata.name)),
        )
    assert (
        err2.value.status == 500 and "more than one PodDisruptionBudget" in _status(err2)["message"]
    )


def test_delete_with_stale_uid_precondition_is_409(
    fake: FakeKubernetesAPI, core: k8s.CoreV1Api
) -> None:
    pod = core.list_namespaced_pod("prod").items[0]
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_pod(
            pod.metadata.name,
            "prod",
            body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid="other")),
        )
    assert err.value.status == 409 and "Precondition failed: UID" in _status(err)["message"]
    core.delete_namespaced_pod(
        pod.metadata.name,
        "prod",
        body=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=pod.metadata.uid)),
    )
    names = [p.metadata.name for p in core.list_namespaced_pod("prod").items]
    assert pod.metadata.name not in names and len(names) == 2  # the ReplicaSet replaced it


def test_namespace_outside_rbac_is_403(fake: FakeKubernetesAPI, apps: k8s.AppsV1Api) -> None:
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("api", "kube-system", {"spec": {"replicas": 1}})
    body = _status(err)
    assert body["reason"] == "Forbidden"
    assert 'cannot patch resource "deployments/scale" in API group "apps"' in body["message"]
    assert body["message"].endswith('in the namespace "kube-system"')


def test_requests_are_recorded_and_faults_injected(
    fake: FakeKubernetesAPI, apps: k8s.AppsV1Api
) -> None:
    fake.inject_fault(503, method="GET", times=1)
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("api", "prod")
    assert err.value.status == 503
    apps.list_namespaced_replica_set("prod", label_selector="app=api")
    assert [(r.method, r.path, r.query, r.status) for r in fake.requests] == [
        ("GET", "/apis/apps/v1/namespaces/prod/deployments/api", {}, 503),
        ("GET", "/apis/apps/v1/namespaces/prod/replicasets", {"labelSelector": ["app=api"]}, 200),
    ]
    assert fake.writes == []
    fake.clear_requests()
    assert fake.requests == []


def test_label_selector_set_based(apps: k8s.AppsV1Api) -> None:
    assert (
        len(apps.list_namespaced_replica_set("prod", label_selector="app in (api,web),!nope").items)
        == 2
    )
    assert apps.list_namespaced_replica_set("prod", label_selector="app notin (api)").items == []
    with pytest.raises(ApiException) as err:
        apps.list_namespaced_replica_set("prod", label_selector="app in (")
    assert err.value.status == 400


def test_lifecycle() -> None:
    fake = FakeKubernetesAPI()
    with pytest.raises(RuntimeError):
        _ = fake.url
    fake.start()
    assert fake.url.startswith("http://127.0.0.1:")
    fake.stop()
    fake.stop()
