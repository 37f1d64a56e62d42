"""The detector contract, findings and the failure-type → action mapping.

This module is light on purpose: it imports neither numpy nor scikit-learn, so the server and
the remediation loop can speak about findings without loading any model code.

A :class:`Finding` is plain data. Its recommended action names one of the remediation kinds
(``restart_pod``, ``restart_deployment``, ``scale_deployment``, ``rollback_deployment``,
``notify``) and the labels of the target; ``aegis.remediation`` turns it into an actuator
action, so detectors never import actuators.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aegis.errors import ConfigurationError

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_ACTIONS",
    "FAILURE_TYPES",
    "ActionMapping",
    "Detector",
    "Finding",
    "MetricContribution",
    "RecommendedAction",
    "Severity",
]

FAILURE_TYPES: tuple[str, ...] = (
    "service_down",
    "high_latency",
    "memory_leak",
    "connection_timeout",
    "cpu_saturation",
    "normal",
)
"""The failure types the :class:`~aegis.detectors.FailureClassifier` knows, ``normal`` last."""

ACTION_KINDS: tuple[str, ...] = (
    "restart_pod",
    "restart_deployment",
    "scale_deployment",
    "rollback_deployment",
    "notify",
)
"""The remediation kinds a finding may recommend."""


class Severity(enum.StrEnum):
    """How bad a finding is; ordered ``low < medium < high < critical``."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for ``low`` up to 3 for ``critical``."""
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


@dataclass(frozen=True, slots=True)
class RecommendedAction:
    """A remediation proposed by a detector, as plain data.

    Attributes:
        kind: one of :data:`ACTION_KINDS`.
        target: labels that identify the target (``{"namespace": "shop", "deployment": "api"}``).
        params: kind-specific parameters (``{"replicas_delta": 1}`` for ``scale_deployment``).
    """

    kind: str
    target: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            known = ", ".join(ACTION_KINDS)
            raise ConfigurationError(f"unknown action kind `{self.kind}` (known: {known})")

    def to_dict(self) -> dict[str, Any]:
        """The action as JSON-ready data."""
        return {"kind": self.kind, "target": dict(self.target), "params": dict(self.params)}


@dataclass(frozen=True, slots=True)
class MetricContribution:
    """How much one metric contributed to a row's anomaly score.

    Attributes:
        metric: the metric (column) name.
        contribution: the largest absolute standardised feature of that metric (clipped).
        feature: the feature that carried it (``"cpu_r:diff"``).
    """

    metric: str
    contribution: float
    feature: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector concluded about one sample (one row of metrics).

    Attributes:
        detector: name of the detector that produced it.
        kind: ``"anomaly"`` when the row is abnormal, ``"normal"`` otherwise, ``"none"`` when
            the detector could not judge (untrained, no data).
        severity: low / medium / high / critical.
        score: the anomaly probability in [0, 1] (higher is more abnormal).
        confidence: how sure the detector is, in [0, 1]; 0 when it could not judge.
        failure_type: one of :data:`FAILURE_TYPES` when a classifier is attached, else ``None``.
        action: the recommended remediation, or ``None``.
        top_metrics: the metrics that contributed most, largest first.
        state: ``"ok"``, ``"untrained"`` or ``"error"``.
        message: a short human explanation.
    """

    detector: str
    kind: str
    severity: Severity
    score: float
    confidence: float
    failure_type: str | None = None
    action: RecommendedAction | None = None
    top_metrics: tuple[MetricContribution, ...] = ()
    state: str = "ok"
    message: str = ""

    @property
    def is_anomaly(self) -> bool:
        """True when the detector judged the row abnormal."""
        return self.kind == "anomaly"

    @classmethod
    def untrained(cls, detector: str, message: str = "detector is not trained") -> Finding:
        """The safe default: no anomaly, severity low, confidence 0, state ``untrained``."""
        return cls(
            detector=detector,
            kind="none",
            severity=Severity.LOW,
            score=0.0,
            confidence=0.0,
            state="untrained",
            message=message,
        )

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (the shape the server and the audit log use)."""
        return {
            "detector": self.detector,
            "kind": self.kind,
            "severity": self.severity.value,
            "score": self.score,
            "confidence": self.confidence,
            "failure_type": self.failure_type,
            "action": None if self.action is None else self.action.to_dict(),
            "top_metrics": [
                {"metric": c.metric, "contribution": c.contribution, "feature": c.feature}
                for c in self.top_metrics
            ],
            "state": self.state,
            "message": self.message,
        }


DEFAULT_ACTIONS: Mapping[str, Mapping[str, Any]] = {
    "service_down": {"kind": "restart_deployment"},
    "high_latency": {"kind": "scale_deployment", "params": {"replicas_delta": 1}},
    "memory_leak": {"kind": "restart_pod"},
    "connection_timeout": {"kind": "restart_pod"},
    "cpu_saturation": {"kind": "scale_deployment", "params": {"replicas_delta": 1}},
    "anomaly": {"kind": "notify"},
}
"""The default failure type → action configuration; ``anomaly`` covers unclassified anomalies.

``normal`` has no action. Override any entry with :meth:`ActionMapping.from_config`.
"""


@dataclass(frozen=True, slots=True)
class ActionMapping:
    """Configuration: which remediation each failure type recommends.

    Attributes:
        actions: failure type (or ``"anomaly"``) → ``{"kind": ..., "params": {...}}``.
    """

    actions: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, merge: bool = True) -> ActionMapping:
        """Build a mapping from configuration, validated before use.

        Args:
            config: failure type → action kind (a string) or ``{"kind", "params"}``; a value of
                ``None`` removes the entry.
            merge: start from :data:`DEFAULT_ACTIONS` (``True``) or from nothing.

        Raises:
            ConfigurationError: an unknown failure type or action kind, or a malformed entry.
        """
        actions: dict[str, Mapping[str, Any]] = dict(DEFAULT_ACTIONS) if merge else {}
        for name, value in (config or {}).items():
            if name not in FAILURE_TYPES and name != "anomaly":
                raise ConfigurationError(f"unknown failure type `{name}` in the action mapping")
            if value is None:
                actions.pop(name, None)
                continue
            entry: Mapping[str, Any] = {"kind": value} if isinstance(value, str) else value
            if not isinstance(entry, Mapping) or "kind" not in entry:
                raise ConfigurationError(f"the action for `{name}` needs a `kind`")
            params = entry.get("params", {})
            if not isinstance(params, Mapping):
                raise ConfigurationError(
                    f"the `params` of the action for `{name}` must be a mapping"
                )
            RecommendedAction(str(entry["kind"]), {}, dict(params))  # validates the kind
            actions[name] = {"kind": str(entry["kind"]), "params": dict(params)}
        return cls(actions)

    def recommend(
        self, failure_type: str | None, target: Mapping[str, str] | None = None
    ) -> RecommendedAction | None:
        """The action for a failure type (``None`` means an unclassified anomaly).

        Returns ``None`` for ``normal`` or for a type without an entry.
        """
        key = "anomaly" if failure_type is None else failure_type
        entry = self.actions.get(key)
        if entry is None:
            return None
        return RecommendedAction(
            str(entry["kind"]), dict(target or {}), dict(entry.get("params", {}))
        )


@runtime_checkable
class Detector(Protocol):
    """A detector turns metric samples into findings.

    ``samples`` is a time-ordered table: rows are consecutive samples, columns are metrics (a
    pandas DataFrame, a 2-D array, or anything :func:`numpy.asarray` accepts).

    Contract:
        * ``fit`` learns what normal looks like and returns the detector itself. It may raise
          :class:`~aegis.detectors.errors.InvalidDataError` for unusable training data.
        * ``score`` returns one :class:`Finding` per row, each computed from that row and the
          rows before it only. It never raises: an untrained detector returns
          :meth:`Finding.untrained` for every row, and unusable input yields findings in state
          ``"error"`` with severity low and confidence 0.
        * Scoring is read-only, so one fitted detector may serve several threads at once;
          ``fit`` must not run concurrently with ``score`` on the same instance.
    """

    name: str

    def fit(self, samples: Any) -> Detector:
        """Learn normal behaviour from ``samples``; return ``self``."""

    def score(self, samples: Any) -> Sequence[Finding]:
        """One finding per row of ``samples``; never raises."""
