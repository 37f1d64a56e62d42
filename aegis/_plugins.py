"""Entry-point registries for the pluggable parts (caches, audit sinks, detectors, actuators).

A plugin is a factory object registered under one of the entry-point groups below. The factory
exposes a pydantic ``config_model`` and a ``create(config)`` method; :func:`create` validates the
configuration *before* constructing anything, so that a startup error names the entry point and
the bad field (habit H11 of the style guide). Built-in backends register through the same
entry points as third-party ones (see ``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from aegis.errors import ConfigurationError

__all__ = ["GROUPS", "PluginFactory", "available", "create", "load_factory"]

GROUPS = ("aegis.caches", "aegis.audit_sinks", "aegis.detectors", "aegis.actuators")


@runtime_checkable
class PluginFactory(Protocol):
    """What an entry point must resolve to."""

    config_model: type[BaseModel]

    def create(self, config: Any) -> Any:
        """Build the plugin from an already validated ``config_model`` instance."""


def _entries(group: str) -> dict[str, EntryPoint]:
    if group not in GROUPS:
        raise ConfigurationError(f"unknown plugin group `{group}`")
    return {ep.name: ep for ep in entry_points(group=group)}


def available(group: str) -> list[str]:
    """Names registered in an entry-point group, sorted."""
    return sorted(_entries(group))


def load_factory(group: str, name: str) -> PluginFactory:
    """Load the factory registered as ``name`` in ``group``.

    Raises:
        ConfigurationError: no such entry point, or it does not look like a factory.
    """
    entries = _entries(group)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ConfigurationError(f"no plugin `{name}` in `{group}` (registered: {known})")
    ep = entries[name]
    factory = ep.load()
    if not isinstance(factory, PluginFactory):
        raise ConfigurationError(
            f"entry point `{group}:{name}` ({ep.value}) is not a plugin factory"
        )
    return factory


def create(group: str, name: str, config: Mapping[str, Any] | None = None) -> Any:
    """Validate ``config`` against the plugin's ``config_model``, then construct it.

    Raises:
        ConfigurationError: unknown plugin, or the configuration does not validate; the
            message names the entry point and the offending field.
    """
    factory = load_factory(group, name)
    try:
        parsed = factory.config_model.model_validate(dict(config or {}))
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        )
        message = f"plugin `{group}:{name}`: invalid configuration: {fields}"
        raise ConfigurationError(message) from exc
    return factory.create(parsed)
