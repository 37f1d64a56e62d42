from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from aegis import _plugins
from aegis.detectors import AnomalyDetector, MetricsDetector, ModelIntegrityError, ModelRegistry
from aegis.errors import ConfigurationError

KEY = "plugin-test-key-0123456789"


def test_plugin_is_registered_and_validates_before_constructing() -> None:
    assert "metrics" in _plugins.available("aegis.detectors")
    with pytest.raises(ConfigurationError, match="top_metrics"):
        _plugins.create("aegis.detectors", "metrics", {"top_metrics": 0})
    with pytest.raises(ConfigurationError, match="unknown action kind"):
        _plugins.create("aegis.detectors", "metrics", {"actions": {"memory_leak": "explode"}})
    with pytest.raises(ConfigurationError, match="bogus"):
        _plugins.create("aegis.detectors", "metrics", {"bogus": 1})


def test_without_a_model_the_plugin_serves_the_untrained_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    det = _plugins.create("aegis.detectors", "metrics", {"name": "api"})
    assert isinstance(det, MetricsDetector) and det.state == "untrained"
    monkeypatch.setenv("AEGIS_MODEL_KEY", KEY)
    empty = _plugins.create("aegis.detectors", "metrics", {"registry": str(tmp_path)})
    assert empty.state == "untrained"
    assert empty.score(np.zeros((2, 3)))[0].state == "untrained"


def test_plugin_loads_the_promoted_model_and_refuses_a_tampered_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X = np.random.default_rng(0).normal(size=(300, 3))
    ModelRegistry(tmp_path, key=KEY).register(AnomalyDetector(n_estimators=5).fit(X), promote=True)
    monkeypatch.delenv("AEGIS_MODEL_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="AEGIS_MODEL_KEY"):
        _plugins.create("aegis.detectors", "metrics", {"registry": str(tmp_path)})
    monkeypatch.setenv("AEGIS_MODEL_KEY", KEY)
    det = _plugins.create(
        "aegis.detectors", "metrics", {"registry": str(tmp_path), "target": {"deployment": "api"}}
    )
    assert det.state == "ok"
    assert len(det.score(X[:10])) == 10
    (tmp_path / "versions" / "v1" / "model.joblib").write_bytes(pickle.dumps({"evil": True}))
    with pytest.raises(ModelIntegrityError):
        _plugins.create("aegis.detectors", "metrics", {"registry": str(tmp_path)})
