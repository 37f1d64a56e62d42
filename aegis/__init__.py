"""Aegis: policy-as-code for governed self-healing of infrastructure.

The library's front door: the policy language and the engine, and the light names of the
detectors and actuators (their packages, ``aegis.detectors`` and ``aegis.actuators``, load
scikit-learn or kubernetes only when those parts are used). The server is not part of the
library API.

Usage::

    import aegis

    engine = aegis.PolicyEngine.from_paths(["policies/"])
    decision = engine.evaluate({
        "principal": {"id": "alice", "roles": ["sre"]},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "prod", "name": "api-7d9"},
        "context": {"time": "2026-11-26T10:15:00Z"},
    })
    if decision.allowed:
        ...
"""

from aegis._version import __version__
from aegis.actuators import Action, ActionResult, Actuator
from aegis.detectors import Detector, Finding, Severity
from aegis.engine import (
    Decision,
    InvalidRequestError,
    PolicyEngine,
    Request,
    RuleError,
)
from aegis.errors import AegisError, ConfigurationError, MissingDependencyError
from aegis.lang import (
    Diagnostic,
    PolicyLoadError,
    PolicySet,
    SchemaError,
    Span,
    format_policy,
    load_paths,
    load_texts,
    parse_policy,
)

__all__ = [
    "Action",
    "ActionResult",
    "Actuator",
    "AegisError",
    "ConfigurationError",
    "Decision",
    "Detector",
    "Diagnostic",
    "Finding",
    "InvalidRequestError",
    "MissingDependencyError",
    "PolicyEngine",
    "PolicyLoadError",
    "PolicySet",
    "Request",
    "RuleError",
    "SchemaError",
    "Severity",
    "Span",
    "__version__",
    "format_policy",
    "load_paths",
    "load_texts",
    "parse_policy",
]
