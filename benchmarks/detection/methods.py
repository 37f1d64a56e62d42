"""The methods compared: the Aegis default and the baselines named in the issue.

Each method is ``fit(train) -> scorer`` where ``scorer(test) -> (scores, contributions)``;
scores are higher-is-more-abnormal and contributions (``None`` when the method cannot explain)
is an ``(n_rows, n_metrics)`` matrix for the explanation hit rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
Method = Callable[[np.ndarray], Scorer]


def aegis_default(train: np.ndarray) -> Scorer:
    from aegis.detectors import AnomalyDetector

    det = AnomalyDetector().fit(train)

    def score(test: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return -det.score_samples(test), None

    score.contributions = det.metric_contributions  # type: ignore[attr-defined]
    return score


def _standardise(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd == 0] = 1.0
    return mu, sd


def isolation_forest(train: np.ndarray) -> Scorer:
    from sklearn.ensemble import IsolationForest

    mu, sd = _standardise(train)
    model = IsolationForest(random_state=0).fit((train - mu) / sd)
    return lambda test: (-model.score_samples((test - mu) / sd), None)


def elliptic_envelope(train: np.ndarray) -> Scorer:
    from sklearn.covariance import EllipticEnvelope

    mu, sd = _standardise(train)
    model = EllipticEnvelope(random_state=0).fit((train - mu) / sd)
    return lambda test: (-model.score_samples((test - mu) / sd), None)


def if_ee_rank_average(train: np.ndarray) -> Scorer:
    iso = isolation_forest(train)
    env = elliptic_envelope(train)

    def score(test: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        a = rankdata(iso(test)[0]) / len(test)
        b = rankdata(env(test)[0]) / len(test)
        return (a + b) / 2.0, None

    return score


def ecod(train: np.ndarray) -> Scorer:
    from pyod.models.ecod import ECOD

    mu, sd = _standardise(train)
    model = ECOD().fit((train - mu) / sd)
    return lambda test: (np.asarray(model.decision_function((test - mu) / sd)), None)


def max_abs_z(train: np.ndarray) -> Scorer:
    mu, sd = _standardise(train)

    def score(test: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        z = np.abs((test - mu) / sd)
        return z.max(axis=1), z

    return score


METHODS: dict[str, Method] = {
    "aegis (default)": aegis_default,
    "IsolationForest": isolation_forest,
    "EllipticEnvelope": elliptic_envelope,
    "IF+EE rank-avg": if_ee_rank_average,
    "ECOD (PyOD)": ecod,
    "max-|z|": max_abs_z,
}
