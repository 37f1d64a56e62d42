"""Entry-point factories whose modules import no optional dependency.

``aegis.actuators:kubernetes`` points here so that listing or validating plugins never
imports ``kubernetes``; :meth:`KubernetesFactory.create` imports the backend (and raises
:class:`~aegis.errors.MissingDependencyError` with an install hint when it is missing).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aegis.actuators._remediate import RemediationSettings

__all__ = ["KubernetesFactory", "KubernetesFactoryConfig", "kubernetes_factory"]


class KubernetesFactoryConfig(RemediationSettings):
    """Mirror of ``KubernetesActuatorConfig`` that needs no ``kubernetes`` import."""

    in_cluster: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    host: str | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class KubernetesFactory:
    """Entry-point factory ``aegis.actuators:kubernetes``."""

    config_model = KubernetesFactoryConfig

    def create(self, config: Any) -> Any:
        """Build a ``KubernetesActuator`` (imports the ``kubernetes`` client)."""
        from aegis.actuators.kubernetes import KubernetesActuator, KubernetesActuatorConfig

        return KubernetesActuator.from_config(
            KubernetesActuatorConfig.model_validate(config.model_dump())
        )


kubernetes_factory = KubernetesFactory()
