from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aegis.detectors import (
    AnomalyDetector,
    DetectorError,
    ModelIntegrityError,
    ModelRegistry,
    load_model,
    save_model,
)
from aegis.detectors.persistence import KEY_ENV, data_hash
from aegis.errors import ConfigurationError

KEY = "test-key-0123456789abcdef"


class _Boom:
    """Unpickling this runs code: if a test ever unpickles it, the marker file appears."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path(self.marker),))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def model() -> AnomalyDetector:
    rng = np.random.default_rng(0)
    return AnomalyDetector(n_estimators=10).fit(
        pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    )


def test_round_trip_keeps_scores_and_writes_a_complete_manifest(
    tmp_path: Path, model: AnomalyDetector
) -> None:
    X = np.random.default_rng(1).normal(size=(50, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    manifest = save_model(model, tmp_path, key=KEY, training_data=frame, metrics={"pr_auc": 0.5})
    loaded = load_model(tmp_path, key=KEY)
    np.testing.assert_allclose(loaded.score_samples(frame), model.score_samples(frame))
    for field in (
        "version",
        "created_at",
        "libraries",
        "feature_names",
        "training_data_hash",
        "metrics",
        "signature",
        "model_sha256",
    ):
        assert field in manifest
    assert manifest["feature_names"] == ["a", "b", "c"]
    assert manifest["training_data_hash"] == data_hash(frame)
    assert {"scikit-learn", "numpy", "python"} <= set(manifest["libraries"])


def _tamper_and_expect_refusal(folder: Path, marker: Path, match: str) -> None:
    with pytest.raises(ModelIntegrityError, match=match):
        load_model(folder, key=KEY)
    assert not marker.exists(), "the tampered pickle was unpickled"


def test_tampered_model_bytes_are_refused_before_unpickling(
    tmp_path: Path, model: AnomalyDetector
) -> None:
    save_model(model, tmp_path, key=KEY)
    marker = tmp_path / "pwned"
    (tmp_path / "model.joblib").write_bytes(pickle.dumps(_Boom(str(marker))))
    _tamper_and_expect_refusal(tmp_path, marker, "signed hash")


def test_tampered_manifest_is_refused(tmp_path: Path, model: AnomalyDetector) -> None:
    save_model(model, tmp_path, key=KEY)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(marker)))
    (tmp_path / "model.joblib").write_bytes(payload)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    import hashlib

    manifest["model_sha256"] = hashlib.sha256(payload).hexdigest()  # attacker updates the hash
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    _tamper_and_expect_refusal(tmp_path, marker, "signature check")


def test_unsigned_and_wrong_key_models_are_refused(tmp_path: Path, model: AnomalyDetector) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "model.joblib").write_bytes(pickle.dumps(_Boom(str(marker))))
    _tamper_and_expect_refusal(tmp_path, marker, "unsigned")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "aegis-model/1"}))
    _tamper_and_expect_refusal(tmp_path, marker, "unsigned")
    other = tmp_path / "other"
    save_model(model, other, key="another-key-0123456789")
    with pytest.raises(ModelIntegrityError, match="signature check"):
        load_model(other, key=KEY)


def test_incompatible_library_version_is_refused(tmp_path: Path, model: AnomalyDetector) -> None:
    from aegis.detectors.persistence import _sign

    save_model(model, tmp_path, key=KEY)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["libraries"]["scikit-learn"] = "0.24.2"
    manifest["signature"] = _sign(manifest, KEY.encode())  # correctly signed, but old
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match=r"scikit-learn 0\.24\.2"):
        load_model(tmp_path, key=KEY)


def test_key_comes_from_configuration(
    tmp_path: Path, model: AnomalyDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigurationError, match=KEY_ENV):
        save_model(model, tmp_path)
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        save_model(model, tmp_path, key="short")
    monkeypatch.setenv(KEY_ENV, KEY)
    save_model(model, tmp_path)
    assert isinstance(load_model(tmp_path, key=KEY), AnomalyDetector)


def test_registry_versions_promote_and_rollback(tmp_path: Path, model: AnomalyDetector) -> None:
    reg = ModelRegistry(tmp_path / "reg", key=KEY)
    assert reg.versions() == [] and reg.current() is None
    with pytest.raises(DetectorError, match="no promoted model"):
        reg.load()
    v1 = reg.register(model, promote=True, metrics={"n": 1})
    v2 = reg.register(model, metrics={"n": 2})
    assert (v1, v2) == ("v1", "v2")
    assert reg.current() == "v1"
    reg.promote("v2")
    assert reg.current() == "v2"
    assert [v.version for v in reg.versions()] == ["v1", "v2"]
    assert [v.current for v in reg.versions()] == [False, True]
    assert reg.manifest()["metrics"] == {"n": 2}
    assert reg.rollback() == "v1"
    assert reg.current() == "v1"
    with pytest.raises(DetectorError, match="no earlier promoted version"):
        reg.rollback()
    with pytest.raises(DetectorError, match="no version `v9`"):
        reg.promote("v9")
    with pytest.raises(DetectorError, match="invalid version"):
        reg.load("../../etc")
    assert isinstance(reg.load("v2"), AnomalyDetector)


def test_registry_refuses_to_promote_or_load_a_tampered_version(
    tmp_path: Path, model: AnomalyDetector
) -> None:
    reg = ModelRegistry(tmp_path, key=KEY)
    reg.register(model, promote=True)
    reg.register(model)
    marker = tmp_path / "pwned"
    (tmp_path / "versions" / "v2" / "model.joblib").write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ModelIntegrityError):
        reg.promote("v2")
    with pytest.raises(ModelIntegrityError):
        reg.load("v2")
    assert reg.current() == "v1"
    assert not marker.exists()
