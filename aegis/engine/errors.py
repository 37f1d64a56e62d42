"""Errors of the engine (see the tree in :mod:`aegis.errors`)."""

from __future__ import annotations

from aegis.errors import AegisError

__all__ = [
    "AuditError",
    "AuditIntegrityError",
    "CacheUnavailableError",
    "EngineError",
    "InvalidRequestError",
    "PolicyStoreError",
]


class InvalidRequestError(AegisError, ValueError):
    """A request breaks spec §4: it is rejected, never given a decision."""

    code = "request.invalid"


class EngineError(AegisError):
    """Root of the engine's operational errors."""

    code = "engine.error"


class CacheUnavailableError(EngineError):
    """A decision cache backend failed; the engine bypasses the cache and counts it."""

    code = "cache.unavailable"


class AuditError(EngineError):
    """An audit record could not be written or read."""

    code = "audit.error"


class AuditIntegrityError(AuditError):
    """An audit chain does not verify."""

    code = "audit.integrity"


class PolicyStoreError(EngineError):
    """A policy store could not be read."""

    code = "store.error"
