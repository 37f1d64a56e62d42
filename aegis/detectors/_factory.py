"""Entry-point factory ``aegis.detectors:metrics`` (habit H11: validate, then construct).

The module imports no scikit-learn: listing or validating plugins stays light; ``create``
imports the detector and, when a registry is configured, verifies and loads its promoted model.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aegis.detectors.base import ActionMapping

__all__ = ["MetricsDetectorConfig", "MetricsDetectorFactory", "factory"]


class MetricsDetectorConfig(BaseModel):
    """Configuration of a :class:`~aegis.detectors.MetricsDetector` plugin.

    Attributes:
        name: detector name written into findings.
        registry: model registry folder; its promoted (or ``version``) model is loaded.
            Without it, or with nothing promoted yet, the detector starts untrained.
        version: a specific version to load instead of the promoted one.
        key_env: environment variable holding the model signing key.
        target: labels of the monitored workload, copied into recommended actions.
        actions: failure type → action overrides (see ``ActionMapping.from_config``).
        classifier: ``"scenarios"`` trains the failure classifier on generated scenarios at
            startup; ``"none"`` reports unclassified anomalies only.
        top_metrics: how many contributing metrics each finding lists.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="metrics", min_length=1)
    registry: str | None = None
    version: str | None = None
    key_env: str = "AEGIS_MODEL_KEY"
    target: dict[str, str] = Field(default_factory=dict)
    actions: dict[str, Any] = Field(default_factory=dict)
    classifier: Literal["none", "scenarios"] = "none"
    top_metrics: int = Field(default=3, ge=1, le=50)

    @field_validator("actions")
    @classmethod
    def _valid_actions(cls, value: dict[str, Any]) -> dict[str, Any]:
        ActionMapping.from_config(value)  # raises ConfigurationError (a ValueError)
        return value


class MetricsDetectorFactory:
    """Entry-point factory ``aegis.detectors:metrics``."""

    config_model = MetricsDetectorConfig

    def create(self, config: Any) -> Any:
        """Build the detector; load the registry's model (verified) when one is configured.

        Raises:
            ModelIntegrityError: the configured model does not verify.
            ConfigurationError: a registry is configured but its key variable is unset.
        """
        from aegis.detectors.detector import MetricsDetector
        from aegis.detectors.errors import DetectorError, ModelIntegrityError
        from aegis.detectors.persistence import ModelRegistry
        from aegis.errors import ConfigurationError

        cfg = MetricsDetectorConfig.model_validate(config.model_dump())
        classifier = None
        if cfg.classifier == "scenarios":
            from aegis.detectors.classifier import FailureClassifier

            classifier = FailureClassifier.from_scenarios()
        detector = MetricsDetector(
            cfg.name,
            classifier=classifier,
            actions=ActionMapping.from_config(cfg.actions),
            target=cfg.target,
            top_metrics=cfg.top_metrics,
        )
        if cfg.registry is None:
            return detector
        key = os.environ.get(cfg.key_env)
        if not key:
            raise ConfigurationError(
                f"detector `{cfg.name}`: the model key variable `{cfg.key_env}` is not set"
            )
        registry = ModelRegistry(cfg.registry, key=key)
        if cfg.version is None and registry.current() is None:
            return detector  # nothing promoted yet: serve the safe untrained default
        try:
            detector.anomaly = registry.load(cfg.version)
        except ModelIntegrityError:
            raise
        except DetectorError as exc:
            raise ConfigurationError(f"detector `{cfg.name}`: {exc}") from exc
        return detector


factory = MetricsDetectorFactory()
