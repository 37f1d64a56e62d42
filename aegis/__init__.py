"""Aegis: policy-as-code for governed self-healing of infrastructure."""

from aegis._version import __version__
from aegis.errors import AegisError, ConfigurationError, MissingDependencyError

__all__ = ["AegisError", "ConfigurationError", "MissingDependencyError", "__version__"]
