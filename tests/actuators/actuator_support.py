"""Shared seed, action builder and backend fixtures for the actuator tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aegis.actuators import (
    Action,
    Actuator,
    RemediationSettings,
    SimulatedActuator,
    SimulatedCluster,
)
from aegis.testing import FakeKubernetesAPI

SEED = """
deployments:
  - {namespace: prod, name: api, replicas: 3, image: "registry.local/api:1.4.2",
     history: ["registry.local/api:1.4.0", "registry.local/api:1.4.1"]}
  - {namespace: prod, name: web, replicas: 2, image: "registry.local/web:2.0"}
  - {namespace: prod, name: frozen, replicas: 1, image: "registry.local/frozen:1", paused: true}
  - {namespace: prod, name: auto, replicas: 2, image: "registry.local/auto:1"}
  - {namespace: staging, name: api, replicas: 1, image: "registry.local/api:1.5.0"}
hpas:
  - {namespace: prod, name: auto-hpa, target: auto, min_replicas: 2, max_replicas: 8}
pdbs:
  - {namespace: prod, name: web-pdb, selector: {app: web}, min_available: 2}
pods:
  - {namespace: prod, name: bare, labels: {app: bare}}
  - {namespace: prod, name: node-exporter-x1, labels: {app: ne}, owner_kind: DaemonSet,
     owner_name: node-exporter}
"""


def make_action(type_: str, name: str = "api", namespace: str = "prod", **params: Any) -> Action:
    return Action.parse(
        {
            "type": type_,
            "namespace": namespace,
            "name": name,
            "params": params,
            "requested_by": "tester",
            "reason": "test",
            "request_id": f"req-{type_}-{name}-{sorted(params.items())}".replace(" ", "")
            .replace("'", "")
            .replace("(", "")
            .replace(")", "")
            .replace("[", "")
            .replace("]", "")
            .replace(",", "."),
            "issued_at": 1_700_000_000,
        }
    )


@dataclass
class Backend:
    name: str
    actuator: Actuator
    cluster: SimulatedCluster
    fake: FakeKubernetesAPI | None

    def calls(self) -> int:
        return len(self.fake.requests) if self.fake else -1


@pytest.fixture
def fake() -> Iterator[FakeKubernetesAPI]:
    with FakeKubernetesAPI.from_yaml(SEED) as server:
        yield server


def _kubernetes(
    cluster: SimulatedCluster, settings: RemediationSettings, **kw: Any
) -> Iterator[Backend]:
    from aegis.actuators.kubernetes import KubernetesActuator

    with FakeKubernetesAPI(cluster, **kw) as server:
        actuator = KubernetesActuator(
            server.configuration(), settings, sleep=lambda _s: None, timeout_seconds=2.0
        )
        yield Backend("kubernetes", actuator, cluster, server)
        actuator.close()


@pytest.fixture(params=["simulated", "kubernetes"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    cluster = SimulatedCluster.from_yaml(SEED)
    settings = RemediationSettings()
    if request.param == "simulated":
        yield Backend("simulated", SimulatedActuator(cluster, settings), cluster, None)
    else:
        yield from _kubernetes(cluster, settings)
