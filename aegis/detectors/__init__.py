"""Detectors: anomaly detection and failure classification on infrastructure metrics.

The light names (:class:`Finding`, :class:`Severity`, :class:`Detector`, errors) are imported
eagerly. Everything that needs numpy, pandas or scikit-learn is imported on first attribute
access (PEP 562), so ``import aegis`` and ``import aegis.detectors`` never load scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aegis.detectors.base import (
    ACTION_KINDS,
    DEFAULT_ACTIONS,
    FAILURE_TYPES,
    ActionMapping,
    Detector,
    Finding,
    MetricContribution,
    RecommendedAction,
    Severity,
)
from aegis.detectors.errors import (
    DetectorError,
    InvalidDataError,
    MetricSourceError,
    ModelIntegrityError,
    NotFittedError,
)

if TYPE_CHECKING:
    from aegis.detectors.anomaly import AnomalyDetector
    from aegis.detectors.classifier import FailureClassifier
    from aegis.detectors.detector import MetricsDetector
    from aegis.detectors.features import CausalFeatures
    from aegis.detectors.persistence import ModelRegistry, ModelVersion, load_model, save_model
    from aegis.detectors.scenarios import SCENARIO_METRICS, generate_scenarios
    from aegis.detectors.sources import (
        InMemorySource,
        MetricSource,
        PrometheusSource,
        read_metrics_file,
    )

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_ACTIONS",
    "FAILURE_TYPES",
    "SCENARIO_METRICS",
    "ActionMapping",
    "AnomalyDetector",
    "CausalFeatures",
    "Detector",
    "DetectorError",
    "FailureClassifier",
    "Finding",
    "InMemorySource",
    "InvalidDataError",
    "MetricContribution",
    "MetricSource",
    "MetricSourceError",
    "MetricsDetector",
    "ModelIntegrityError",
    "ModelRegistry",
    "ModelVersion",
    "NotFittedError",
    "PrometheusSource",
    "RecommendedAction",
    "Severity",
    "generate_scenarios",
    "load_model",
    "read_metrics_file",
    "save_model",
]

_LAZY: dict[str, str] = {
    "AnomalyDetector": "aegis.detectors.anomaly",
    "CausalFeatures": "aegis.detectors.features",
    "FailureClassifier": "aegis.detectors.classifier",
    "MetricsDetector": "aegis.detectors.detector",
    "SCENARIO_METRICS": "aegis.detectors.scenarios",
    "generate_scenarios": "aegis.detectors.scenarios",
    "InMemorySource": "aegis.detectors.sources",
    "MetricSource": "aegis.detectors.sources",
    "PrometheusSource": "aegis.detectors.sources",
    "read_metrics_file": "aegis.detectors.sources",
    "ModelRegistry": "aegis.detectors.persistence",
    "ModelVersion": "aegis.detectors.persistence",
    "load_model": "aegis.detectors.persistence",
    "save_model": "aegis.detectors.persistence",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aegis.detectors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
