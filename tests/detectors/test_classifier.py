from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import f1_score

from aegis.detectors import (
    FAILURE_TYPES,
    SCENARIO_METRICS,
    FailureClassifier,
    InvalidDataError,
    NotFittedError,
    generate_scenarios,
)
from aegis.errors import ConfigurationError


@pytest.fixture(scope="module")
def trained() -> FailureClassifier:
    return FailureClassifier.from_scenarios(15, seed=0, n_estimators=30)


def test_scenarios_have_every_failure_type_with_an_onset() -> None:
    X, y = generate_scenarios(10, seed=3)
    assert list(X.columns) == list(SCENARIO_METRICS)
    assert X.index.is_monotonic_increasing and len(X) == len(y)
    assert set(y) == set(FAILURE_TYPES)
    assert np.isfinite(X.to_numpy()).all()
    # service_down is abrupt: `up` is 0 exactly on its rows
    down = y == "service_down"
    assert (X.loc[down, "up"] == 0).all() and (X.loc[~down, "up"] == 1).all()
    # a memory leak grows: memory at the end of each leak exceeds memory at its start
    runs = (y != y.shift()).cumsum()
    for _, seg in X[y == "memory_leak"].groupby(runs[y == "memory_leak"]):
        assert seg["memory_usage"].iloc[-1] > seg["memory_usage"].iloc[0] + 0.2
    # daily seasonality: request rate follows a 24 h cycle in normal rows
    X2, _ = generate_scenarios(0, seed=1, step_seconds=600)
    assert X2["request_rate"].max() > 1.8 * X2["request_rate"].min()


def test_scenarios_are_reproducible_and_validated() -> None:
    a, ya = generate_scenarios(4, seed=9)
    b, yb = generate_scenarios(4, seed=9)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_series_equal(ya, yb)
    with pytest.raises(ConfigurationError):
        generate_scenarios(3, failure_types=("meteor_strike",))


def test_trained_out_of_the_box_classifies_held_out_scenarios(trained: FailureClassifier) -> None:
    X, y = generate_scenarios(12, seed=42)
    pred = trained.predict(X)
    assert f1_score(y, pred, average="macro") > 0.8
    assert set(trained.classes_) == set(FAILURE_TYPES)


def test_probabilities_are_calibrated_confidences(trained: FailureClassifier) -> None:
    X, y = generate_scenarios(12, seed=43)
    proba = trained.predict_proba(X)
    assert proba.shape == (len(X), len(trained.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    conf = proba.max(axis=1)
    correct = trained.classes_[proba.argmax(axis=1)] == y.to_numpy()
    # confident predictions are right more often than unconfident ones
    assert correct[conf >= 0.9].mean() > correct[conf < 0.9].mean()
    assert correct[conf >= 0.9].mean() > 0.9


def test_estimator_conventions_and_errors(trained: FailureClassifier) -> None:
    fresh = clone(trained)
    assert fresh.get_params() == trained.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(np.zeros((3, len(SCENARIO_METRICS))))
    X, y = generate_scenarios(2, seed=1)
    with pytest.raises(InvalidDataError, match="labels"):
        FailureClassifier(n_estimators=5).fit(X, y.iloc[:-3])
    with pytest.raises(InvalidDataError, match="two distinct labels"):
        FailureClassifier(n_estimators=5).fit(X, ["normal"] * len(X))
    with pytest.raises(ConfigurationError):
        FailureClassifier(calibration="magic").fit(X, y)


def test_user_labelled_data_with_custom_labels() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = np.where(np.arange(400) % 100 < 20, "disk_full", "fine")
    X[y == "disk_full", 1] += 4
    clf = FailureClassifier(n_estimators=10, window=3).fit(X, y)
    assert set(clf.classes_) == {"disk_full", "fine"}
    assert (clf.predict(X) == y).mean() > 0.9
