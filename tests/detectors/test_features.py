from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aegis.detectors import CausalFeatures, InvalidDataError, NotFittedError
from aegis.detectors.features import FEATURE_KINDS, feature_names, window_features


def test_window_features_match_their_definitions() -> None:
    x = np.array([[1.0], [3.0], [6.0], [10.0]])
    f = window_features(x, window=3)
    names = feature_names(["a"])
    assert names == ["a:value", "a:diff", "a:dev", "a:spread", "a:slope"]
    col = {k: f[:, i] for i, k in enumerate(FEATURE_KINDS)}
    np.testing.assert_allclose(col["value"], [1, 3, 6, 10])
    np.testing.assert_allclose(col["diff"], [0, 2, 3, 4])
    # deviation from the mean of the (up to 3) previous rows
    np.testing.assert_allclose(col["dev"], [0, 3 - 1, 6 - 2, 10 - (1 + 3 + 6) / 3])
    np.testing.assert_allclose(
        col["spread"], [0, np.std([1, 3]), np.std([1, 3, 6]), np.std([3, 6, 10])]
    )
    np.testing.assert_allclose(col["slope"], [0, (3 - 1) / 2, (6 - 1) / 2, (10 - 3) / 2])


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float64, st.tuples(st.integers(2, 40), st.integers(1, 3)), elements=st.floats(-1e3, 1e3)
    ),
    st.integers(2, 10),
    st.data(),
)
def test_features_are_causal(x: np.ndarray, window: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, x.shape[0]))
    full = window_features(x, window)
    prefix = window_features(x[:t], window)
    np.testing.assert_allclose(prefix, full[:t], rtol=1e-9, atol=1e-9)


def test_causal_features_names_and_shape(train_frame: pd.DataFrame) -> None:
    feats = CausalFeatures(window=10).fit(train_frame)
    z = feats.transform(train_frame)
    names = list(feats.get_feature_names_out())
    assert z.shape == (len(train_frame), 6 * len(FEATURE_KINDS))
    assert names[:2] == ["metric_0:value", "metric_1:value"]
    assert names[6] == "metric_0:diff"
    assert len(names) == z.shape[1]
    assert np.abs(z).max() <= feats.clip


def test_dead_and_missing_metrics_give_finite_bounded_features(train_frame: pd.DataFrame) -> None:
    train = train_frame.copy()
    train["metric_5"] = np.nan  # never reported in training
    train["metric_4"] = 1.0  # constant
    train.iloc[::7, 0] = np.nan
    feats = CausalFeatures().fit(train)
    test = train_frame.iloc[:200].copy()
    test.iloc[50:, 2] = np.nan  # dies
    test.iloc[:, 4] = 1.0
    z = feats.transform(test)
    assert np.isfinite(z).all()


def test_transform_reorders_dataframe_columns(train_frame: pd.DataFrame) -> None:
    feats = CausalFeatures().fit(train_frame)
    shuffled = train_frame[list(reversed(train_frame.columns))]
    np.testing.assert_allclose(feats.transform(shuffled), feats.transform(train_frame))
    with pytest.raises(InvalidDataError, match="missing metric columns"):
        feats.transform(train_frame.drop(columns=["metric_1"]))


def test_transform_before_fit_is_refused() -> None:
    with pytest.raises(NotFittedError):
        CausalFeatures().transform(np.zeros((3, 2)))


def test_non_numeric_and_too_short_input_are_refused() -> None:
    with pytest.raises(InvalidDataError, match="numeric"):
        CausalFeatures().fit(pd.DataFrame({"a": ["x", "y", "z"]}))
    with pytest.raises(InvalidDataError, match="at least 2 rows"):
        CausalFeatures().fit(np.zeros((1, 3)))


def test_counters_are_judged_by_their_rate_not_their_ever_growing_value() -> None:
    rng = np.random.default_rng(0)
    n = 500
    total = np.cumsum(rng.poisson(10, 2 * n)).astype(float)  # a request counter
    noise = rng.normal(size=2 * n)
    X = np.column_stack([total, noise])
    feats = CausalFeatures(window=10).fit(X[:n])
    assert feats.counters_.tolist() == [True, False]
    later = feats.transform(X[n:])
    names = list(feats.get_feature_names_out())
    value = names.index("m0:value")
    diff = names.index("m0:diff")
    assert np.all(later[:, value] == 0.0)  # ignored although far beyond the training range
    assert np.abs(later[:, diff]).max() < feats.clip  # the rate stays in range


def test_recovery_gate_neutralises_dev_and_slope_while_returning_to_baseline() -> None:
    rng = np.random.default_rng(0)
    train = 0.5 + 0.01 * rng.standard_normal((300, 1))
    test = 0.5 + 0.01 * rng.standard_normal((120, 1))
    test[40:70, 0] += 1.0  # an incident: a level shift for 30 rows
    gated = CausalFeatures(window=20).fit(train)
    plain = CausalFeatures(window=20, recovery_gate=False).fit(train)
    names = list(gated.get_feature_names_out())
    dev, slope = names.index("m0:dev"), names.index("m0:slope")
    zg, zp = gated.transform(test), plain.transform(test)
    recovery = slice(71, 85)  # back to normal, but the window still holds the incident
    assert np.abs(zp[recovery, dev]).min() > 5 and np.abs(zp[recovery, slope]).min() > 5
    assert np.abs(zg[recovery, dev]).max() < 1 and np.abs(zg[recovery, slope]).max() < 1
    onset = 40
    assert zg[onset, dev] == zp[onset, dev] == gated.clip  # moving away: unchanged
