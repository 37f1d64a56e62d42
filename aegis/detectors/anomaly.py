"""The default anomaly detector: an ensemble over causal window features.

:class:`AnomalyDetector` is a scikit-learn outlier detector. It standardises causal window
features of every metric against the training baseline (:class:`~aegis.detectors.features.
CausalFeatures`) and combines three members, each put on a common scale by its own training
scores:

* ``iforest``: an Isolation Forest over the features;
* ``elliptic``: an elliptic envelope, i.e. the Mahalanobis distance under a Gaussian fitted to
  the features. The default covariance is Ledoit-Wolf shrunk (fast, and it measured better
  than the Minimum Covariance Determinant on the SMD machines, where MCD overfits to a
  near-singular core); ``covariance="mcd"`` selects scikit-learn's robust MCD estimate, fitted
  on a subsample;
* ``maxz``: the mean of the ``top_k`` largest absolute feature z-scores (a robust max-|z|).

Each member score ``s`` becomes ``v = (s - median) / (q99 - median)`` over its training scores,
then ``sign(v) * log1p(|v|)``; the detector's anomaly score is the mean of the members, and
:meth:`AnomalyDetector.score_samples` returns its negation (scikit-learn: lower is more
abnormal). Every step is row-wise after the causal features, so row ``t`` of the output depends
only on rows ``≤ t`` of the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.covariance import LedoitWolf, MinCovDet
from sklearn.ensemble import IsolationForest

from aegis.detectors._threads import limited_threads
from aegis.detectors._validation import ensure_fitted
from aegis.detectors.base import MetricContribution, Severity
from aegis.detectors.errors import InvalidDataError
from aegis.detectors.features import FEATURE_KINDS, CausalFeatures
from aegis.errors import ConfigurationError

__all__ = ["MEMBERS", "AnomalyDetector"]

FloatArray = npt.NDArray[np.float64]

MEMBERS: tuple[str, ...] = ("iforest", "elliptic", "maxz")
"""The ensemble members available to :class:`AnomalyDetector`."""

_PROBS = np.linspace(0.0, 1.0, 1001)


class AnomalyDetector(OutlierMixin, BaseEstimator):  # type: ignore[misc]
    """Ensemble anomaly detector for time-ordered multivariate metrics.

    Good with its defaults: fit it on a stretch of recent history (it need not be clean) and
    score new rows. ``fit(X)`` takes rows in time order (array or DataFrame); missing values,
    constant metrics and metrics that die are handled, never raised on.

    Args:
        window: trailing window (rows) of the causal features.
        clip: absolute bound on each standardised feature.
        recovery_gate: ignore ``dev``/``slope`` of metrics moving back to their baseline
            (see :class:`CausalFeatures`); shortens the alarm tail after an incident ends.
        top_k: how many of the largest feature z-scores the ``maxz`` member averages.
        members: which of :data:`MEMBERS` to combine.
        n_estimators: trees in the Isolation Forest.
        max_samples: rows per Isolation Forest tree (scikit-learn semantics).
        covariance: ``"ledoit_wolf"`` (default) or ``"mcd"`` for the elliptic member.
        max_covariance_samples: rows subsampled to fit the covariance.
        max_training_rows: only the most recent rows of a longer history are used (bounds
            fit time and memory).
        calibration_rows: rows subsampled to calibrate member scales and probabilities.
        contamination: expected share of anomalies; sets the :meth:`predict` threshold.
        severity_thresholds: anomaly probabilities at which severity becomes medium, high and
            critical.
        random_state: seed for subsampling and the forest.
        n_threads: BLAS/OpenMP threads while fitting and scoring (``None``: library default).

    Attributes:
        features_: the fitted :class:`CausalFeatures`.
        n_features_in_: number of metrics.
        feature_names_in_: metric names, when fitted on a DataFrame.
        offset_: threshold on :meth:`score_samples` used by :meth:`decision_function`.
        training_scores_summary_: member calibration (median, q99) and score quantiles.

    Example:
        >>> import numpy as np
        >>> from aegis.detectors import AnomalyDetector
        >>> rng = np.random.default_rng(0)
        >>> history = rng.normal(size=(500, 3))
        >>> det = AnomalyDetector(n_estimators=20).fit(history)
        >>> recent = history[-50:].copy()
        >>> recent[-1, 0] = 25.0
        >>> bool(det.score_samples(recent)[-1] < det.score_samples(recent)[:-1].min())
        True
    """

    def __init__(
        self,
        *,
        window: int = 30,
        clip: float = 10.0,
        recovery_gate: bool = True,
        top_k: int = 5,
        members: Sequence[str] = MEMBERS,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        covariance: str = "ledoit_wolf",
        max_covariance_samples: int = 5000,
        max_training_rows: int = 100_000,
        calibration_rows: int = 30_000,
        contamination: float = 0.01,
        severity_thresholds: tuple[float, float, float] = (0.99, 0.999, 0.9999),
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.window = window
        self.clip = clip
        self.recovery_gate = recovery_gate
        self.top_k = top_k
        self.members = members
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.covariance = covariance
        self.max_covariance_samples = max_covariance_samples
        self.max_training_rows = max_training_rows
        self.calibration_rows = calibration_rows
        self.contamination = contamination
        self.severity_thresholds = severity_thresholds
        self.random_state = random_state
        self.n_threads = n_threads

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> tuple[str, ...]:
        members = tuple(self.members)
        unknown = [m for m in members if m not in MEMBERS]
        if not members or unknown:
            raise ConfigurationError(
                f"`members` must be a non-empty subset of {', '.join(MEMBERS)}, got {members!r}"
            )
        if self.covariance not in ("ledoit_wolf", "mcd"):
            raise ConfigurationError(
                f"`covariance` must be `ledoit_wolf` or `mcd`, got `{self.covariance}`"
            )
        if not 0.0 < float(self.contamination) < 0.5:
            raise ConfigurationError("`contamination` must be in (0, 0.5)")
        t = tuple(float(x) for x in self.severity_thresholds)
        if len(t) != 3 or not 0.0 <= t[0] <= t[1] <= t[2] <= 1.0:
            raise ConfigurationError(
                "`severity_thresholds` must be three increasing probabilities in [0, 1]"
            )
        if int(self.window) < 2 or int(self.top_k) < 1:
            raise ConfigurationError("`window` must be at least 2 and `top_k` at least 1")
        return members

    def fit(self, X: Any, y: Any = None) -> AnomalyDetector:
        """Fit on time-ordered rows (``y`` is ignored).

        Raises:
            InvalidDataError: fewer than 2 rows, or the data is not a numeric 2-D table.
            ConfigurationError: an invalid parameter.
        """
        members = self._check_params()
        X = _recent_rows(X, int(self.max_training_rows))
        with limited_threads(self.n_threads):
            features = CausalFeatures(
                window=self.window, clip=self.clip, recovery_gate=self.recovery_gate
            ).fit(X)
            features.owner_ = type(self).__name__
            Z = features.transform(X)
            rng = np.random.default_rng(self.random_state)
            self.features_ = features
            self.n_features_in_ = features.n_features_in_
            if hasattr(features, "feature_names_in_"):
                self.feature_names_in_ = features.feature_names_in_
            self.members_ = members
            if "iforest" in members:
                seed = None if self.random_state is None else int(self.random_state)
                self.iforest_ = IsolationForest(
                    n_estimators=self.n_estimators,
                    max_samples=self.max_samples,
                    random_state=seed,
                ).fit(Z)
                self.forest_tables_ = _forest_tables(self.iforest_)
            if "elliptic" in members:
                self.location_, self.precision_ = self._fit_covariance(Z, rng)
            n_rows = Z.shape[0]
            calib_size = min(n_rows, int(self.calibration_rows))
            calib_rows = (
                np.sort(rng.choice(n_rows, size=calib_size, replace=False))
                if n_rows > calib_size
                else np.arange(n_rows)
            )
            raw = self._member_scores(Z[calib_rows])
            calib = {}
            for name, s in raw.items():
                med = float(np.median(s))
                q99 = float(np.quantile(s, 0.99))
                calib[name] = (med, max(q99 - med, 1e-9))
            self.calibration_ = calib
            combined = self._combine(raw)
        self.score_quantiles_ = np.quantile(combined, _PROBS)
        self.n_training_rows_ = int(calib_size)
        top = self.score_quantiles_[-1] - self.score_quantiles_[-11]
        self.tail_scale_ = float(max(top, 1e-6))
        self.offset_ = -float(np.quantile(combined, 1.0 - float(self.contamination)))
        self.training_scores_summary_ = {
            "members": {k: {"median": v[0], "q99_minus_median": v[1]} for k, v in calib.items()},
            "combined_quantiles": {
                "0.5": float(np.quantile(combined, 0.5)),
                "0.99": float(np.quantile(combined, 0.99)),
                "max": float(combined.max()),
            },
        }
        return self

    def _fit_covariance(
        self, Z: FloatArray, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        n = Z.shape[0]
        if self.covariance == "mcd":
            size = min(n, 2000)
            idx = rng.choice(n, size=size, replace=False) if n > size else np.arange(n)
            seed = None if self.random_state is None else int(self.random_state)
            mcd = MinCovDet(random_state=seed, support_fraction=0.9).fit(Z[idx])
            return np.asarray(mcd.location_), np.asarray(mcd.get_precision())
        size = min(n, int(self.max_covariance_samples))
        idx = rng.choice(n, size=size, replace=False) if n > size else np.arange(n)
        lw = LedoitWolf().fit(Z[idx])
        return np.asarray(lw.location_), np.asarray(lw.precision_)

    # ------------------------------------------------------------------ scoring
    def _member_scores(self, Z: FloatArray) -> dict[str, FloatArray]:
        out: dict[str, FloatArray] = {}
        if "iforest" in self.members_:
            out["iforest"] = _forest_scores(self.forest_tables_, Z)
        if "elliptic" in self.members_:
            d = Z - self.location_
            out["elliptic"] = np.sqrt(
                np.maximum(np.einsum("ij,ij->i", d @ self.precision_, d), 0.0)
            )
        if "maxz" in self.members_:
            k = min(int(self.top_k), Z.shape[1])
            a = np.abs(Z)
            part = np.partition(a, a.shape[1] - k, axis=1)[:, a.shape[1] - k :]
            out["maxz"] = part.mean(axis=1)
        return out

    def _combine(self, raw: dict[str, FloatArray]) -> FloatArray:
        parts = []
        for name, s in raw.items():
            med, spread = self.calibration_[name]
            v = (s - med) / spread
            parts.append(np.sign(v) * np.log1p(np.abs(v)))
        return np.asarray(np.mean(parts, axis=0), dtype=np.float64)

    def _anomaly_scores(self, X: Any) -> tuple[FloatArray, FloatArray]:
        """Higher-is-worse combined scores and the standardised features."""
        ensure_fitted(self, "offset_")
        Z = self.features_.transform(X)
        if Z.shape[0] == 0:
            return np.zeros(0), Z
        with limited_threads(self.n_threads):
            combined = self._combine(self._member_scores(Z))
        return np.nan_to_num(combined, nan=0.0, posinf=1e6, neginf=-1e6), Z

    def score_samples(self, X: Any) -> FloatArray:
        """One score per row, causal; the lower, the more abnormal (scikit-learn convention)."""
        return -self._anomaly_scores(X)[0]

    def decision_function(self, X: Any) -> FloatArray:
        """``score_samples(X) - offset_``: negative for rows :meth:`predict` flags."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> npt.NDArray[np.int64]:
        """+1 for normal rows, -1 for anomalies (threshold from ``contamination``)."""
        return np.where(self.decision_function(X) < 0, -1, 1).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> npt.NDArray[np.int64]:
        """Fit on ``X``, then :meth:`predict` it."""
        return self.fit(X).predict(X)

    def _probability(self, combined: FloatArray) -> FloatArray:
        n = self.n_training_rows_
        q = self.score_quantiles_
        inside = np.interp(combined, q, _PROBS) * (n / (n + 1.0))
        excess = np.maximum(combined - q[-1], 0.0) / self.tail_scale_
        tail = 1.0 - np.exp(-excess) / (n + 1.0)
        return np.asarray(np.clip(np.where(combined > q[-1], tail, inside), 0.0, 1.0))

    def anomaly_probability(self, X: Any) -> FloatArray:
        """Per row, the share of training rows that scored as normal or more, in [0, 1].

        Calibrated on the training scores: 0.99 means the row is more abnormal than 99% of
        the training history. Beyond the most abnormal training row the value keeps growing
        towards 1 with an exponential tail, so rank order is kept.
        """
        return self._probability(self._anomaly_scores(X)[0])

    def severity_of(self, probability: float) -> Severity:
        """Map one anomaly probability to a severity with ``severity_thresholds``."""
        medium, high, critical = (float(x) for x in self.severity_thresholds)
        if probability >= critical:
            return Severity.CRITICAL
        if probability >= high:
            return Severity.HIGH
        if probability >= medium:
            return Severity.MEDIUM
        return Severity.LOW

    def severity(self, X: Any) -> list[Severity]:
        """Severity of every row (low / medium / high / critical)."""
        return [self.severity_of(float(p)) for p in self.anomaly_probability(X)]

    # ------------------------------------------------------------------ explanations
    def explain(self, X: Any, top: int = 3) -> list[tuple[MetricContribution, ...]]:
        """The metrics that contributed most to each row's score, largest first.

        A metric's contribution is its largest absolute standardised feature on that row.
        """
        ensure_fitted(self, "offset_")
        Z = self.features_.transform(X)
        return self._explain_features(Z, top)

    def metric_contributions(self, X: Any) -> FloatArray:
        """``(n_rows, n_metrics)`` matrix of per-metric contributions (see :meth:`explain`)."""
        ensure_fitted(self, "offset_")
        Z = self.features_.transform(X)
        k = len(FEATURE_KINDS)
        return np.asarray(np.abs(Z).reshape(Z.shape[0], k, -1).max(axis=1))

    def _explain_features(self, Z: FloatArray, top: int) -> list[tuple[MetricContribution, ...]]:
        if top < 1:
            raise InvalidDataError("`top` must be at least 1")
        k = len(FEATURE_KINDS)
        a = np.abs(Z).reshape(Z.shape[0], k, -1)
        per_metric = a.max(axis=1)
        which = a.argmax(axis=1)
        names = self.features_.metric_names_
        n_top = min(top, per_metric.shape[1])
        order = np.argsort(-per_metric, axis=1, kind="stable")[:, :n_top]
        result = []
        for r in range(Z.shape[0]):
            result.append(
                tuple(
                    MetricContribution(
                        names[j],
                        float(per_metric[r, j]),
                        f"{names[j]}:{FEATURE_KINDS[which[r, j]]}",
                    )
                    for j in order[r]
                )
            )
        return result


def _recent_rows(X: Any, limit: int) -> Any:
    """The last ``limit`` rows of a DataFrame, array or sequence (all when shorter)."""
    if limit < 2:
        raise ConfigurationError("`max_training_rows` must be at least 2")
    try:
        n = len(X)
    except TypeError:
        return X
    if n <= limit:
        return X
    if hasattr(X, "iloc"):
        return X.iloc[n - limit :]
    return np.asarray(X)[n - limit :]


def _average_path_length(n: npt.NDArray[Any]) -> FloatArray:
    """Expected path length of an unsuccessful search in a BST of ``n`` nodes (iForest's c(n))."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _node_depths(left: npt.NDArray[Any], right: npt.NDArray[Any]) -> FloatArray:
    depth = np.ones(left.shape[0], dtype=np.float64)  # the root counts 1, as in scikit-learn
    for node in range(left.shape[0]):  # children always have larger ids than their parent
        if left[node] >= 0:
            depth[left[node]] = depth[node] + 1.0
            depth[right[node]] = depth[node] + 1.0
    return depth


def _forest_tables(model: IsolationForest) -> dict[str, Any]:
    """Per tree, the path length of every node, so scoring is one ``apply`` per tree.

    Reproduces ``IsolationForest.score_samples`` (tested for equality) without its per-tree
    joblib dispatch, which dominated scoring time for small batches.
    """
    trees = []
    n_features = int(model.n_features_in_)
    for est, feats in zip(model.estimators_, model.estimators_features_, strict=True):
        t = est.tree_
        values = (
            _node_depths(np.asarray(t.children_left), np.asarray(t.children_right))
            + _average_path_length(np.asarray(t.n_node_samples))
            - 1.0
        )
        subset = None if len(feats) == n_features else np.asarray(feats)
        trees.append((t, subset, values))
    denominator = len(trees) * float(_average_path_length(np.array([model._max_samples]))[0])
    return {"trees": trees, "denominator": denominator}


def _forest_scores(tables: dict[str, Any], Z: FloatArray) -> FloatArray:
    """Isolation Forest anomaly scores ``2 ** (-E[h(x)] / c(n))`` (higher is more abnormal)."""
    X32 = np.ascontiguousarray(Z, dtype=np.float32)
    depths = np.zeros(Z.shape[0], dtype=np.float64)
    for tree, subset, values in tables["trees"]:
        xs = X32 if subset is None else np.ascontiguousarray(X32[:, subset])
        depths += values[tree.apply(xs)]
    denominator = tables["denominator"]
    if denominator == 0:
        return np.ones(Z.shape[0])
    return np.asarray(2.0 ** (-depths / denominator), dtype=np.float64)
