"""Actuators: the action model, the Actuator protocol, signing, guardrails and backends.

Backends register through the ``aegis.actuators`` entry-point group (``simulated``,
``kubernetes``); :func:`create_actuator` validates a configuration and builds one.
``aegis.actuators.kubernetes`` (the only module importing ``kubernetes``) is not imported here.
"""

from typing import Any

from aegis import _plugins
from aegis.actuators._cluster import ClusterSeed, SimulatedCluster
from aegis.actuators._remediate import RemediationSettings
from aegis.actuators.base import (
    ACTION_TYPES,
    Action,
    ActionResult,
    ActionStatus,
    ActionType,
    Actuator,
    RestartDeploymentParams,
    RestartPodParams,
    RollbackDeploymentParams,
    ScaleDeploymentParams,
    is_dns_label,
    is_dns_subdomain,
)
from aegis.actuators.errors import (
    ActionConflict,
    ActuatorError,
    ClusterForbiddenError,
    ClusterRejectedError,
    ClusterTimeoutError,
    ClusterUnavailableError,
    GuardrailStoreError,
    GuardrailViolation,
    InvalidActionError,
    ReplayError,
    ReplayStoreUnavailableError,
    SignatureError,
    TargetNotFoundError,
)
from aegis.actuators.guardrails import (
    AlertRecord,
    GuardrailConfig,
    Guardrails,
    GuardrailStore,
    MemoryGuardrailStore,
    Permit,
    SqlGuardrailStore,
    check_namespace,
)
from aegis.actuators.signing import (
    Keyring,
    MemoryReplayStore,
    RedisReplayStore,
    ReplayStore,
    RequestVerifier,
    SigningClient,
    VerifiedRequest,
    canonical_query,
    sign_request,
)
from aegis.actuators.simulated import SimulatedActuator, SimulatedActuatorConfig

ENTRY_POINT_GROUP = "aegis.actuators"


def available_actuators() -> list[str]:
    """Names of the registered actuator backends (``kubernetes``, ``simulated`` …)."""
    return _plugins.available(ENTRY_POINT_GROUP)


def create_actuator(name: str, config: dict[str, Any] | None = None) -> Actuator:
    """Validate ``config`` against the backend's ``config_model``, then build it.

    Raises:
        ConfigurationError: unknown backend or invalid configuration (the message names the
            entry point and the field).
        MissingDependencyError: the backend needs an extra that is not installed.
    """
    actuator = _plugins.create(ENTRY_POINT_GROUP, name, config)
    if not isinstance(actuator, Actuator):
        from aegis.errors import ConfigurationError

        raise ConfigurationError(f"plugin `{ENTRY_POINT_GROUP}:{name}` did not build an actuator")
    return actuator


__all__ = [
    "ACTION_TYPES",
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionConflict",
    "ActionResult",
    "ActionStatus",
    "ActionType",
    "Actuator",
    "ActuatorError",
    "AlertRecord",
    "ClusterForbiddenError",
    "ClusterRejectedError",
    "ClusterSeed",
    "ClusterTimeoutError",
    "ClusterUnavailableError",
    "GuardrailConfig",
    "GuardrailStore",
    "GuardrailStoreError",
    "GuardrailViolation",
    "Guardrails",
    "InvalidActionError",
    "Keyring",
    "MemoryGuardrailStore",
    "MemoryReplayStore",
    "Permit",
    "RedisReplayStore",
    "RemediationSettings",
    "ReplayError",
    "ReplayStore",
    "ReplayStoreUnavailableError",
    "RequestVerifier",
    "RestartDeploymentParams",
    "RestartPodParams",
    "RollbackDeploymentParams",
    "ScaleDeploymentParams",
    "SignatureError",
    "SigningClient",
    "SimulatedActuator",
    "SimulatedActuatorConfig",
    "SimulatedCluster",
    "SqlGuardrailStore",
    "TargetNotFoundError",
    "VerifiedRequest",
    "available_actuators",
    "canonical_query",
    "check_namespace",
    "create_actuator",
    "is_dns_label",
    "is_dns_subdomain",
    "sign_request",
]
