"""Fitted-state checks that raise an error both Aegis and scikit-learn callers can catch."""

from __future__ import annotations

from typing import Any

from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from aegis.detectors.errors import NotFittedError


class EstimatorNotFittedError(NotFittedError, SklearnNotFittedError):  # type: ignore[misc]
    """:class:`aegis.detectors.NotFittedError` that is also scikit-learn's ``NotFittedError``."""


def ensure_fitted(estimator: Any, attribute: str) -> None:
    """Raise :class:`EstimatorNotFittedError` unless ``estimator`` has ``attribute``."""
    try:
        check_is_fitted(estimator, attribute)
    except SklearnNotFittedError as exc:
        name = type(estimator).__name__
        raise EstimatorNotFittedError(f"this `{name}` is not fitted yet: call `fit` first") from exc
