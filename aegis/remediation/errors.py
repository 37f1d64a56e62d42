"""Errors of :mod:`aegis.remediation`.

::

    AuditError (aegis.engine.errors)
    └── ExecutorStoreError   executor.audit_unavailable   the executor cannot audit (HTTP 503)
"""

from __future__ import annotations

from aegis.engine.errors import AuditError

__all__ = ["ExecutorStoreError"]


class ExecutorStoreError(AuditError):
    """The executor's audit store cannot be written or read; nothing is done (fail closed)."""

    code = "executor.audit_unavailable"
