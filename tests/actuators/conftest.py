"""Fixtures: both actuator backends over the same seeded cluster model."""

from actuator_support import backend, fake

__all__ = ["backend", "fake"]
