"""scikit-learn's estimator checks, with the time-series exceptions stated."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from aegis.detectors import AnomalyDetector, FailureClassifier

_TIME_ORDERED = (
    "rows are a time series: a row's features depend on the rows before it, so reordering "
    "or subsetting rows legitimately changes scores"
)
EXPECTED = {
    "check_methods_sample_order_invariance": _TIME_ORDERED,
    "check_methods_subset_invariance": _TIME_ORDERED,
}


@pytest.mark.slow
@parametrize_with_checks(
    [AnomalyDetector(n_estimators=10), FailureClassifier(n_estimators=10, cv=2)],
    expected_failed_checks=lambda est: EXPECTED,
)
def test_sklearn_compatible_estimator(estimator: Any, check: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' own data trigger numeric warnings
        check(estimator)
