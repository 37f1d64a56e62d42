"""Errors raised by :mod:`aegis.detectors`.

The tree (under :class:`aegis.errors.AegisError`)::

    DetectorError                  anything a detector, its data or its model files refuse
    ├── NotFittedError             a model was used before ``fit`` (also ValueError, AttributeError,
    │                              like scikit-learn's ``NotFittedError``)
    ├── ModelIntegrityError        a model file is unsigned, tampered or incompatible
    ├── MetricSourceError          a metric source (Prometheus, CSV, Parquet) could not be read
    └── InvalidDataError (ValueError)  training or scoring data is unusable
"""

from __future__ import annotations

from aegis.errors import AegisError

__all__ = [
    "DetectorError",
    "InvalidDataError",
    "MetricSourceError",
    "ModelIntegrityError",
    "NotFittedError",
]


class DetectorError(AegisError):
    """Root of the errors raised by detectors, their data and their model files."""

    code = "detector.error"


class NotFittedError(DetectorError, ValueError, AttributeError):
    """A model was asked to score or predict before it was fitted."""

    code = "detector.not_fitted"


class ModelIntegrityError(DetectorError):
    """A model file is unsigned, tampered, or built by an incompatible version; never loaded."""

    code = "detector.model_integrity"


class MetricSourceError(DetectorError):
    """A metric source could not be read or returned something unusable."""

    code = "detector.source"


class InvalidDataError(DetectorError, ValueError):
    """Training or scoring data is unusable (wrong shape, no rows, unknown columns)."""

    code = "detector.invalid_data"
