"""The Action model (K8S-2 strict parameters), results, the registry and the seed format."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from actuator_support import SEED
from hypothesis import given
from hypothesis import strategies as st

from aegis import actuators
from aegis.actuators import (
    ACTION_TYPES,
    Action,
    Actuator,
    InvalidActionError,
    ScaleDeploymentParams,
    SimulatedActuator,
    SimulatedCluster,
    available_actuators,
    create_actuator,
    is_dns_label,
)
from aegis.errors import ConfigurationError

BASE = {
    "namespace": "prod",
    "name": "api",
    "requested_by": "ops",
    "reason": "r",
    "request_id": "req-1",
}


def _scale(replicas: Any) -> dict[str, Any]:
    return {**BASE, "type": "scale_deployment", "params": {"replicas": replicas}}


@pytest.mark.parametrize("replicas", [-1, 1e9, 10**9, "3", True, False, 3.0, None, [3], {"n": 3}])
def test_K8S2_replicas_must_be_a_json_integer_in_range(replicas: Any) -> None:
    with pytest.raises(InvalidActionError, match="replicas"):
        Action.parse(_scale(replicas))


@pytest.mark.parametrize(
    "raw", ['{"replicas": 1e9}', '{"replicas": "3"}', '{"replicas": true}', '{"replicas": -1}']
)
def test_K8S2_json_bodies_are_strict_too(raw: str) -> None:
    with pytest.raises(InvalidActionError):
        Action.parse({**_scale(0), "params": json.loads(raw)})


def test_K8S2_unknown_type_extra_fields_and_free_form_params_are_refused() -> None:
    for data in (
        {**BASE, "type": "exec", "params": {}},
        {**BASE, "type": "restart_deployment", "params": {"patch": {"spec": {}}}},
        {**_scale(3), "manifest": "kind: Pod"},
        {**BASE, "type": "scale_deployment", "params": {}},
        {**BASE, "type": "restart_deployment", "params": {}, "request_id": "bad id"},
        {**BASE, "type": "restart_deployment", "params": {}, "name": "API"},
        {**BASE, "type": "restart_deployment", "params": {}, "requested_by": "a\nb"},
        {**BASE, "type": "restart_deployment", "params": []},
    ):
        with pytest.raises(InvalidActionError):
            Action.parse(data)


def test_valid_actions_round_trip() -> None:
    for type_ in ACTION_TYPES:
        params = {"replicas": 2} if type_ == "scale_deployment" else {}
        action = Action.parse({**BASE, "type": type_, "params": params, "issued_at": 1700000000})
        assert Action.parse(action.to_wire()) == action
    scale = Action.parse(_scale(0))
    assert isinstance(scale.params, ScaleDeploymentParams) and scale.target == "Deployment/prod/api"
    pod = Action.parse({**BASE, "type": "restart_pod", "params": {"grace_period_seconds": 0}})
    assert pod.target_kind == "Pod"


@given(st.text(max_size=70))
def test_K8S1_namespace_rule_is_exact(text: str) -> None:
    import re

    expected = (
        text.isascii()
        and len(text) <= 63
        and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text) is not None
    )
    assert is_dns_label(text) == expected
    assert not is_dns_label(text + "\n")


def test_registry_and_protocol(tmp_path: Path) -> None:
    assert {"kubernetes", "simulated"} <= set(available_actuators())
    seed = tmp_path / "cluster.yaml"
    seed.write_text(SEED, encoding="utf-8")
    sim = create_actuator("simulated", {"cluster_file": str(seed), "max_replicas": 4})
    assert isinstance(sim, SimulatedActuator) and isinstance(sim, Actuator)
    result = sim.execute(Action.parse(_scale(5)))
    assert (result.status, result.reason) == ("failed", "replicas_out_of_bounds")
    with pytest.raises(ConfigurationError, match=r"simulated.*max_replicas"):
        create_actuator("simulated", {"max_replicas": "many"})
    with pytest.raises(ConfigurationError, match="no plugin `nope`"):
        create_actuator("nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments: [{namespace: prod, name: api}]", "image"),
        ("deployments: [{namespace: prod, name: api, image: x, replicas: '3'}]", "replicas"),
        ("pods: 3", "pods"),
        ("- just a list", "mapping"),
        ("deployments: [{", "cannot read"),
        ("unknown: []", "unknown"),
    ],
)
def test_bad_seed_files_are_explained(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SimulatedCluster.from_yaml(text)


def test_seed_file_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        SimulatedCluster.from_yaml(tmp_path / "missing.yaml")


def test_public_names_are_documented() -> None:
    for name in actuators.__all__:
        obj = getattr(actuators, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__doc__, name
