"""The serving-side detector: metrics in, findings out, never an exception.

:class:`MetricsDetector` implements the :class:`~aegis.detectors.Detector` protocol on top of
an :class:`~aegis.detectors.AnomalyDetector` and, optionally, a
:class:`~aegis.detectors.FailureClassifier`. It turns scores into :class:`Finding` objects with
severity, confidence, failure type, the recommended action from the configured
:class:`~aegis.detectors.ActionMapping`, and the metrics that contributed most.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from aegis.detectors.anomaly import AnomalyDetector
from aegis.detectors.base import ActionMapping, Finding, Severity
from aegis.detectors.classifier import FailureClassifier

__all__ = ["MetricsDetector"]

_log = logging.getLogger(__name__)


class MetricsDetector:
    """Anomaly detection plus optional failure classification, as findings.

    Args:
        name: the detector name written into findings.
        anomaly: the anomaly model (a default :class:`AnomalyDetector` when ``None``).
        classifier: an optional fitted :class:`FailureClassifier`; it names the failure type.
        actions: failure type → action configuration.
        target: labels of the monitored workload, copied into recommended actions.
        top_metrics: how many contributing metrics a finding lists.
        classifier_threshold: a classifier probability at or above which a non-normal failure
            type is reported even when the anomaly model alone would not flag the row.

    A detector built with an already fitted ``anomaly`` model is ready to score.
    """

    def __init__(
        self,
        name: str = "metrics",
        *,
        anomaly: AnomalyDetector | None = None,
        classifier: FailureClassifier | None = None,
        actions: ActionMapping | None = None,
        target: Mapping[str, str] | None = None,
        top_metrics: int = 3,
        classifier_threshold: float = 0.8,
    ) -> None:
        self.name = name
        self.anomaly = anomaly if anomaly is not None else AnomalyDetector()
        self.classifier = classifier
        self.actions = actions if actions is not None else ActionMapping()
        self.target = dict(target or {})
        self.top_metrics = top_metrics
        self.classifier_threshold = classifier_threshold

    @property
    def state(self) -> str:
        """``"ok"`` when the anomaly model is fitted, else ``"untrained"``."""
        return "ok" if hasattr(self.anomaly, "offset_") else "untrained"

    def fit(self, samples: Any) -> MetricsDetector:
        """Fit the anomaly model on time-ordered ``samples``; return ``self``."""
        self.anomaly.fit(samples)
        return self

    def score(self, samples: Any) -> list[Finding]:
        """One finding per row of ``samples``; never raises."""
        n = _row_count(samples)
        if self.state != "ok":
            return [Finding.untrained(self.name) for _ in range(n)]
        try:
            return self._score(samples)
        except Exception as exc:  # the serving path never raises
            _log.warning("detector %s could not score: %s", self.name, exc)
            message = f"could not score: {exc}"
            return [
                Finding(self.name, "none", Severity.LOW, 0.0, 0.0, state="error", message=message)
                for _ in range(n)
            ]

    def latest(self, samples: Any) -> Finding:
        """The finding for the last row (the current state); never raises."""
        findings = self.score(samples)
        if findings:
            return findings[-1]
        return Finding(self.name, "none", Severity.LOW, 0.0, 0.0, state="error", message="no data")

    def _score(self, samples: Any) -> list[Finding]:
        det = self.anomaly
        combined, Z = det._anomaly_scores(samples)
        proba = det._probability(combined)
        flagged = -combined < det.offset_
        explanations = det._explain_features(Z, self.top_metrics) if Z.shape[0] else []
        class_proba: np.ndarray | None = None
        if self.classifier is not None and hasattr(self.classifier, "model_"):
            class_proba = self.classifier.predict_proba(samples)
        findings = []
        for i in range(Z.shape[0]):
            p = float(proba[i])
            failure: str | None = None
            confidence = p if flagged[i] else 1.0 - p
            is_anomaly = bool(flagged[i])
            if class_proba is not None and self.classifier is not None:
                j = int(np.argmax(class_proba[i]))
                label = str(self.classifier.classes_[j])
                if label != "normal" and (
                    is_anomaly or class_proba[i, j] >= self.classifier_threshold
                ):
                    failure = label
                    is_anomaly = True
                    confidence = float(class_proba[i, j])
            severity = det.severity_of(p) if is_anomaly else Severity.LOW
            if is_anomaly and severity is Severity.LOW:
                severity = Severity.MEDIUM
            action = self.actions.recommend(failure, self.target) if is_anomaly else None
            top = explanations[i]
            message = (
                f"{failure or 'anomaly'} (p={p:.4f}); top metrics: "
                + ", ".join(c.metric for c in top)
                if is_anomaly
                else "normal"
            )
            findings.append(
                Finding(
                    detector=self.name,
                    kind="anomaly" if is_anomaly else "normal",
                    severity=severity,
                    score=p,
                    confidence=float(min(max(confidence, 0.0), 1.0)),
                    failure_type=failure,
                    action=action,
                    top_metrics=top,
                    message=message,
                )
            )
        return findings


def _row_count(samples: Any) -> int:
    try:
        return len(samples)
    except TypeError:
        return 1
