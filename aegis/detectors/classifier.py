"""Failure-type classification: a calibrated Random Forest over causal window features.

:class:`FailureClassifier` labels every row of a time-ordered metric table with one of
:data:`~aegis.detectors.FAILURE_TYPES` (or the labels it was trained on). Its probabilities are
calibrated (``CalibratedClassifierCV``, isotonic by default) so they can be used as confidence.
Out of the box, :meth:`FailureClassifier.from_scenarios` trains it on
:func:`~aegis.detectors.generate_scenarios`; users train it on their own labelled data with
``fit(X, y)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import DataConversionWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.multiclass import check_classification_targets

from aegis.detectors._threads import limited_threads
from aegis.detectors._validation import ensure_fitted
from aegis.detectors.errors import InvalidDataError
from aegis.detectors.features import CausalFeatures
from aegis.errors import ConfigurationError

__all__ = ["FailureClassifier"]


def _labels(y: Any) -> npt.NDArray[Any]:
    """Labels as a 1-D array; strings become Python ``str`` objects, numbers stay numbers."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected",
            DataConversionWarning,
            stacklevel=3,
        )
        labels = labels.ravel()
    if labels.ndim != 1:
        raise InvalidDataError(f"labels must be one per row (1-D), got shape {labels.shape}")
    try:
        check_classification_targets(labels)
    except ValueError as exc:
        raise InvalidDataError(str(exc)) from exc
    if labels.dtype.kind in "USO":
        labels = np.asarray([str(v) for v in labels], dtype=object)
    return labels


class FailureClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Random Forest failure classifier with calibrated probabilities.

    Args:
        window: trailing window (rows) of the causal features.
        n_estimators: trees in the forest.
        min_samples_leaf: minimum rows per leaf.
        calibration: ``"isotonic"`` or ``"sigmoid"``.
        cv: folds used to calibrate.
        random_state: seed.
        n_threads: BLAS/OpenMP threads while fitting and predicting.

    Attributes:
        classes_: the labels, in the column order of :meth:`predict_proba`.
        features_: the fitted :class:`~aegis.detectors.CausalFeatures`.
        model_: the fitted ``CalibratedClassifierCV``.

    Example:
        >>> from aegis.detectors import FailureClassifier, generate_scenarios
        >>> X, y = generate_scenarios(10, seed=1)
        >>> clf = FailureClassifier(n_estimators=20).fit(X, y)
        >>> sorted(clf.classes_)[:2]
        ['connection_timeout', 'cpu_saturation']
    """

    def __init__(
        self,
        *,
        window: int = 10,
        n_estimators: int = 50,
        min_samples_leaf: int = 3,
        calibration: str = "isotonic",
        cv: int = 3,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.window = window
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.calibration = calibration
        self.cv = cv
        self.random_state = random_state
        self.n_threads = n_threads

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X: Any, y: Any) -> FailureClassifier:
        """Fit on time-ordered rows ``X`` with one label per row in ``y``.

        Raises:
            InvalidDataError: ``y`` does not match ``X`` or has fewer than two classes.
            ConfigurationError: an invalid parameter.
        """
        if self.calibration not in ("isotonic", "sigmoid"):
            raise ConfigurationError(
                f"`calibration` must be `isotonic` or `sigmoid`, got `{self.calibration}`"
            )
        if y is None:
            raise InvalidDataError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        labels = _labels(y)
        features = CausalFeatures(window=self.window).fit(X)
        features.owner_ = type(self).__name__
        Z = features.transform(X)
        if labels.shape[0] != Z.shape[0]:
            raise InvalidDataError(f"got {Z.shape[0]} rows but {labels.shape[0]} labels")
        classes, counts = np.unique(labels, return_counts=True)
        if classes.size < 2:
            raise InvalidDataError("training needs at least two distinct labels (one class given)")
        folds = int(min(self.cv, counts.min()))
        if folds < 2:
            raise InvalidDataError(
                f"every label needs at least 2 rows to calibrate, `{classes[counts.argmin()]}` "
                f"has {counts.min()}"
            )
        seed = None if self.random_state is None else int(self.random_state)
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            class_weight="balanced_subsample",
            random_state=seed,
        )
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        with limited_threads(self.n_threads):
            self.model_ = CalibratedClassifierCV(forest, method=self.calibration, cv=splitter).fit(
                Z, labels
            )
        self.features_ = features
        self.classes_ = np.asarray(self.model_.classes_)
        self.n_features_in_ = features.n_features_in_
        if hasattr(features, "feature_names_in_"):
            self.feature_names_in_ = features.feature_names_in_
        return self

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        """Calibrated probability of every class per row (columns follow ``classes_``)."""
        ensure_fitted(self, "model_")
        Z = self.features_.transform(X)
        with limited_threads(self.n_threads):
            return np.asarray(self.model_.predict_proba(Z), dtype=np.float64)

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The most probable failure type per row."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])

    @classmethod
    def from_scenarios(
        cls, n_incidents: int = 30, *, seed: int | None = 0, **params: Any
    ) -> FailureClassifier:
        """A classifier trained on :func:`~aegis.detectors.generate_scenarios` output.

        Args:
            n_incidents: incidents in the generated training timeline.
            seed: seed of the generator and the forest.
            **params: constructor parameters.
        """
        from aegis.detectors.scenarios import generate_scenarios

        X, y = generate_scenarios(n_incidents, seed=seed)
        params.setdefault("random_state", seed)
        return cls(**params).fit(X, y)
