"""The simulated actuator: the embedded default, acting on an in-memory cluster.

It runs the very same algorithms as :class:`~aegis.actuators.kubernetes.KubernetesActuator`
(``aegis.actuators._remediate``) against :class:`SimulatedCluster`, the model that
:class:`aegis.testing.FakeKubernetesAPI` also serves over HTTP — one cluster model, two
fronts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aegis.actuators._cluster import SimulatedCluster
from aegis.actuators._remediate import ModelOps, RemediationSettings, Remediator
from aegis.actuators.base import Action, ActionResult

__all__ = ["SimulatedActuator", "SimulatedActuatorConfig"]


class SimulatedActuatorConfig(RemediationSettings):
    """Configuration of the ``simulated`` entry point.

    Attributes:
        cluster_file: a YAML seed file (see ``docs/actuators.md``); empty cluster when unset.
    """

    cluster_file: Path | None = None


class SimulatedActuator:
    """An :class:`~aegis.actuators.Actuator` over an in-memory cluster.

    Args:
        cluster: the cluster to act on (a new empty one when omitted).
        settings: bounds and behaviour shared with the Kubernetes actuator.
        clock: the time source for ``restartedAt`` when an action has no ``issued_at``.

    Example:
        >>> sim = SimulatedActuator.from_yaml(
        ...     "deployments: [{namespace: prod, name: api, replicas: 3, image: 'api:2'}]")
        >>> a = Action.parse({"type": "scale_deployment", "namespace": "prod", "name": "api",
        ...     "params": {"replicas": 4}, "requested_by": "ops", "request_id": "r-1"})
        >>> sim.execute(a).status
        'succeeded'
    """

    def __init__(
        self,
        cluster: SimulatedCluster | None = None,
        settings: RemediationSettings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.cluster = cluster if cluster is not None else SimulatedCluster()
        self.settings = settings or RemediationSettings()
        self._lock = threading.Lock()
        self._remediator = Remediator(
            ModelOps(self.cluster, self.settings.field_manager),
            self.settings,
            clock=clock,
            sleep=lambda _s: None,
        )

    @classmethod
    def from_yaml(
        cls, source: str | Path, settings: RemediationSettings | None = None
    ) -> SimulatedActuator:
        """Build from a YAML seed (a :class:`~pathlib.Path` or YAML text).

        Raises:
            ConfigurationError: the seed cannot be read or does not match the format.
        """
        return cls(SimulatedCluster.from_yaml(source), settings)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: 409 re-reads, read retries, evictions blocked by a PDB."""
        return dict(self._remediator.stats)

    def execute(self, action: Action, dry_run: bool = False) -> ActionResult:
        """Perform ``action`` on the in-memory cluster (see the Actuator contract)."""
        with self._lock:
            return self._remediator.execute(action, dry_run)


class SimulatedFactory:
    """Entry-point factory ``aegis.actuators:simulated``."""

    config_model = SimulatedActuatorConfig

    def create(self, config: Any) -> SimulatedActuator:
        """Build a :class:`SimulatedActuator` from a validated :class:`SimulatedActuatorConfig`."""
        assert isinstance(config, SimulatedActuatorConfig)
        settings = RemediationSettings.model_validate(config.model_dump(exclude={"cluster_file"}))
        if config.cluster_file is not None:
            return SimulatedActuator(SimulatedCluster.from_yaml(config.cluster_file), settings)
        return SimulatedActuator(None, settings)


factory = SimulatedFactory()
