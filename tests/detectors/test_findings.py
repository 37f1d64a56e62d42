from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aegis.detectors import (
    ActionMapping,
    AnomalyDetector,
    Detector,
    FailureClassifier,
    Finding,
    MetricsDetector,
    RecommendedAction,
    Severity,
    generate_scenarios,
)
from aegis.errors import ConfigurationError


def test_untrained_detector_returns_the_safe_default_and_never_raises() -> None:
    det = MetricsDetector("api")
    assert isinstance(det, Detector)
    assert det.state == "untrained"
    for samples in (np.zeros((3, 2)), "garbage", None, pd.DataFrame()):
        findings = det.score(samples)
        for f in findings:
            assert f == Finding.untrained("api")
            assert (f.kind, f.severity, f.confidence, f.state) == (
                "none",
                Severity.LOW,
                0.0,
                "untrained",
            )
            assert not f.is_anomaly
    assert det.latest(np.zeros((3, 2))).state == "untrained"


def test_trained_detector_survives_bad_input_without_raising(train_frame: pd.DataFrame) -> None:
    det = MetricsDetector("api", anomaly=AnomalyDetector(n_estimators=10)).fit(train_frame)
    bad = det.score(pd.DataFrame({"other": [1.0, 2.0]}))
    assert len(bad) == 2
    assert all(f.state == "error" and f.confidence == 0.0 and not f.is_anomaly for f in bad)
    assert det.latest(train_frame.iloc[:0]).state == "error"


def test_findings_carry_severity_explanation_and_action(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    det = MetricsDetector(
        "api",
        anomaly=AnomalyDetector(n_estimators=20),
        target={"namespace": "shop", "deployment": "api"},
    ).fit(train_frame)
    test = test_frame.copy()
    test.iloc[150, 2] += 3.0
    findings = det.score(test)
    spike = findings[150]
    assert spike.is_anomaly and spike.state == "ok"
    assert spike.severity.rank >= Severity.HIGH.rank
    assert spike.top_metrics[0].metric == "metric_2"
    assert spike.action == RecommendedAction("notify", {"namespace": "shop", "deployment": "api"})
    quiet = findings[20]
    assert quiet.kind == "normal" and quiet.action is None and quiet.severity is Severity.LOW
    data = spike.to_dict()
    assert data["action"]["kind"] == "notify" and data["severity"] in ("high", "critical")


def test_classifier_names_the_failure_and_mapping_picks_the_action() -> None:
    X, y = generate_scenarios(10, seed=4)
    normal = X[y == "normal"]
    clf = FailureClassifier(n_estimators=20).fit(X, y)
    mapping = ActionMapping.from_config(
        {"cpu_saturation": {"kind": "scale_deployment", "params": {"replicas_delta": 2}}}
    )
    det = MetricsDetector(
        "svc",
        anomaly=AnomalyDetector(n_estimators=20),
        classifier=clf,
        actions=mapping,
        target={"deployment": "web"},
    ).fit(normal)
    X2, y2 = generate_scenarios(6, seed=8, failure_types=("cpu_saturation", "service_down"))
    findings = det.score(X2)
    sat = [f for f, label in zip(findings, y2, strict=True) if label == "cpu_saturation"][-1]
    assert sat.failure_type == "cpu_saturation"
    assert sat.action == RecommendedAction(
        "scale_deployment", {"deployment": "web"}, {"replicas_delta": 2}
    )
    down = [f for f, label in zip(findings, y2, strict=True) if label == "service_down"][-1]
    assert down.failure_type == "service_down" and down.action is not None
    assert down.action.kind == "restart_deployment"
    assert 0.0 < down.confidence <= 1.0


def test_action_mapping_is_validated_configuration() -> None:
    m = ActionMapping.from_config({"memory_leak": "restart_deployment", "high_latency": None})
    assert m.recommend("memory_leak") == RecommendedAction("restart_deployment")
    assert m.recommend("high_latency") is None
    assert m.recommend("normal") is None
    assert m.recommend(None, {"pod": "p"}) == RecommendedAction("notify", {"pod": "p"})
    with pytest.raises(ConfigurationError, match="unknown action kind"):
        ActionMapping.from_config({"memory_leak": "reboot_datacenter"})
    with pytest.raises(ConfigurationError, match="unknown failure type"):
        ActionMapping.from_config({"solar_flare": "notify"})
    with pytest.raises(ConfigurationError, match="kind"):
        ActionMapping.from_config({"memory_leak": {"params": {}}})
    empty = ActionMapping.from_config({}, merge=False)
    assert empty.recommend("service_down") is None
