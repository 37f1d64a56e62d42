from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.metrics import average_precision_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from aegis.detectors import AnomalyDetector, NotFittedError, Severity
from aegis.errors import ConfigurationError


def _fast(**kw: object) -> AnomalyDetector:
    return AnomalyDetector(n_estimators=25, **kw)  # type: ignore[arg-type]


def test_estimator_conventions(train_frame: pd.DataFrame) -> None:
    det = AnomalyDetector(window=12, top_k=3)
    params = det.get_params()
    assert params["window"] == 12 and params["top_k"] == 3
    twin = clone(det)
    assert twin.get_params() == params and twin is not det
    det.set_params(window=20)
    assert det.window == 20
    fitted = _fast().fit(train_frame)
    assert fitted.n_features_in_ == 6
    assert list(fitted.feature_names_in_) == list(train_frame.columns)
    assert not hasattr(clone(fitted), "offset_")


def test_unfitted_detector_raises_both_not_fitted_errors() -> None:
    det = AnomalyDetector()
    with pytest.raises(NotFittedError):
        det.score_samples(np.zeros((3, 2)))
    with pytest.raises(SklearnNotFittedError):
        det.predict(np.zeros((3, 2)))


def test_works_inside_a_pipeline(train_frame: pd.DataFrame, test_frame: pd.DataFrame) -> None:
    pipe = Pipeline([("scale", StandardScaler()), ("detect", _fast())]).fit(train_frame)
    scores = pipe.score_samples(test_frame)
    assert scores.shape == (len(test_frame),)
    assert set(np.unique(pipe.predict(test_frame))) <= {-1, 1}


def test_spike_scores_lowest_and_is_explained(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    det = _fast().fit(train_frame)
    test = test_frame.copy()
    test.iloc[200, 3] += 3.0
    scores = det.score_samples(test)
    assert int(np.argmin(scores)) == 200
    assert det.predict(test)[200] == -1
    proba = det.anomaly_probability(test)
    assert proba[200] > 0.999
    assert det.severity(test)[200] in (Severity.HIGH, Severity.CRITICAL)
    top = det.explain(test, top=2)[200]
    assert top[0].metric == "metric_3"
    assert top[0].feature.startswith("metric_3:")


@pytest.fixture(scope="module")
def causal_case(metrics_factory: Callable[..., pd.DataFrame]) -> tuple[AnomalyDetector, np.ndarray]:
    det = AnomalyDetector(n_estimators=10).fit(metrics_factory(400, 4, seed=2).to_numpy())
    return det, metrics_factory(300, 4, seed=3).to_numpy()


@settings(max_examples=15, deadline=None)
@given(t=st.integers(1, 299))
def test_scores_are_causal(causal_case: tuple[AnomalyDetector, np.ndarray], t: int) -> None:
    det, x = causal_case
    np.testing.assert_allclose(det.score_samples(x[:t]), det.score_samples(x)[:t], rtol=1e-10)


def test_missing_values_and_dead_metrics_give_finite_scores(
    train_frame: pd.DataFrame, metrics_factory: Callable[..., pd.DataFrame]
) -> None:
    train = train_frame.copy()
    train.iloc[::11, 1] = np.nan
    train["metric_5"] = np.nan  # never reported
    train["metric_4"] = 2.0  # constant
    det = _fast().fit(train)
    test = metrics_factory(300, 6, seed=5)
    test.iloc[100:, 2] = np.nan  # dies
    test.iloc[150:, 0] = test.iloc[150, 0]  # freezes
    test.iloc[::5, 3] = np.inf
    test.iloc[0, :] = np.nan  # first row entirely missing
    for out in (
        det.score_samples(test),
        det.anomaly_probability(test),
        det.decision_function(test),
    ):
        assert out.shape == (300,)
        assert np.isfinite(out).all()


def test_probability_is_calibrated_on_training_scores(train_frame: pd.DataFrame) -> None:
    det = _fast().fit(train_frame)
    p = det.anomaly_probability(train_frame)
    assert ((p >= 0) & (p <= 1)).all()
    # about 1% of the training rows are above the 0.99 level, and about half above 0.5
    assert 0.003 <= float(np.mean(p > 0.99)) <= 0.03
    assert 0.4 <= float(np.mean(p > 0.5)) <= 0.6
    # probability is monotone in the score
    s = det.score_samples(train_frame)
    order = np.argsort(-s)
    assert np.all(np.diff(p[order]) >= -1e-12)


def test_severity_thresholds_are_configurable(train_frame: pd.DataFrame) -> None:
    det = _fast(severity_thresholds=(0.1, 0.2, 0.3)).fit(train_frame)
    assert det.severity_of(0.05) is Severity.LOW
    assert det.severity_of(0.15) is Severity.MEDIUM
    assert det.severity_of(0.25) is Severity.HIGH
    assert det.severity_of(0.35) is Severity.CRITICAL


@pytest.mark.parametrize(
    "params",
    [
        {"members": ("nope",)},
        {"members": ()},
        {"covariance": "diagonal"},
        {"contamination": 0.7},
        {"severity_thresholds": (0.9, 0.5, 0.99)},
        {"window": 1},
    ],
)
def test_invalid_parameters_are_configuration_errors(
    params: dict[str, object], train_frame: pd.DataFrame
) -> None:
    with pytest.raises(ConfigurationError):
        AnomalyDetector(**params).fit(train_frame)  # type: ignore[arg-type]


def test_mcd_covariance_and_single_members_work(train_frame: pd.DataFrame) -> None:
    for params in ({"covariance": "mcd"}, {"members": ("maxz",)}, {"members": ("elliptic",)}):
        det = _fast(**params).fit(train_frame)
        assert np.isfinite(det.score_samples(train_frame)).all()


def _inject(frame: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Level shifts, variance bursts and correlation breaks, each 10-30 rows long."""
    x = frame.copy()
    y = np.zeros(len(x), dtype=int)
    for start in range(60, len(x) - 40, 90):
        length = int(rng.integers(10, 30))
        col = int(rng.integers(0, x.shape[1]))
        kind = start // 90 % 3
        rows = slice(start, start + length)
        if kind == 0:
            x.iloc[rows, col] += 0.25
        elif kind == 1:
            x.iloc[rows, col] += 0.2 * rng.standard_normal(length)
        else:
            x.iloc[rows, col] = x.iloc[rows, col].mean()
            x.iloc[rows, (col + 1) % x.shape[1]] -= 0.15
        y[rows] = 1
    return x, y


def test_default_beats_isolation_forest_and_max_abs_z_on_synthetic_faults(
    metrics_factory: Callable[..., pd.DataFrame],
) -> None:
    rng = np.random.default_rng(7)
    train = metrics_factory(2000, 8, seed=10)
    test, y = _inject(metrics_factory(1500, 8, seed=11), rng)
    ours = average_precision_score(y, -AnomalyDetector().fit(train).score_samples(test))
    mu, sd = train.mean().to_numpy(), train.std().to_numpy()
    iso = IsolationForest(random_state=0).fit((train - mu) / sd)
    base_if = average_precision_score(y, -iso.score_samples((test - mu) / sd))
    base_z = average_precision_score(y, np.abs((test - mu) / sd).max(axis=1))
    assert ours > base_if and ours > base_z, (ours, base_if, base_z)


def test_fast_forest_scoring_matches_isolation_forest(train_frame: pd.DataFrame) -> None:
    from aegis.detectors.anomaly import _forest_scores

    for max_features in (1.0, 0.5):
        det = _fast().fit(train_frame)
        det.iforest_.set_params(max_features=max_features)
        det.iforest_.fit(det.features_.transform(train_frame))
        from aegis.detectors.anomaly import _forest_tables

        tables = _forest_tables(det.iforest_)
        z = det.features_.transform(train_frame)
        np.testing.assert_allclose(_forest_scores(tables, z), -det.iforest_.score_samples(z))


def test_metric_constant_in_training_does_not_dominate_when_it_moves(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame
) -> None:
    train = train_frame.assign(mode=0.0)
    det = _fast().fit(train)
    test = test_frame.assign(mode=0.0)
    test.loc[test.index[100:], "mode"] = 1.0  # a flag that never moved in training flips
    p = det.anomaly_probability(test)
    assert float(np.mean(p[100:] > 0.99)) < 0.1


def test_long_histories_use_the_most_recent_rows(
    metrics_factory: Callable[..., pd.DataFrame],
) -> None:
    history = metrics_factory(900, 3, seed=4)
    det = _fast(max_training_rows=300, calibration_rows=200).fit(history)
    ref = _fast(calibration_rows=200).fit(history.iloc[-300:])
    np.testing.assert_allclose(det.score_samples(history), ref.score_samples(history))
    assert det.n_training_rows_ == 200


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    nan_share=st.floats(0.0, 0.6),
    dead_from=st.integers(0, 80),
    n_train=st.integers(2, 120),
)
def test_any_missing_or_dead_pattern_gives_finite_scores(
    seed: int, nan_share: float, dead_from: int, n_train: int
) -> None:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, 4)) * rng.choice([0.0, 1.0, 1e6], size=4)
    train[rng.random(train.shape) < nan_share] = np.nan
    test = rng.normal(size=(80, 4)) * 3
    test[rng.random(test.shape) < nan_share] = np.nan
    test[dead_from:, 1] = np.nan  # a metric that dies
    test[dead_from:, 2] = test[max(dead_from - 1, 0), 2]  # a metric that freezes
    det = AnomalyDetector(n_estimators=5, window=5).fit(train)
    for out in (det.score_samples(test), det.anomaly_probability(test)):
        assert out.shape == (80,) and np.isfinite(out).all()
