"""The one exception root of Aegis.

Every error the library raises on purpose is an :class:`AegisError`. Each package adds its
own subclasses in its own ``errors.py``; where callers would naturally catch a builtin, the
class also inherits from it (``InvalidRequestError`` is a ``ValueError``). Third-party errors
are translated at the boundary with ``raise ... from exc``.

Every class carries a stable, dotted ``code`` (``policy.syntax``, ``request.invalid``) that
the server maps to an HTTP status and that scripts may match on; messages may improve
between releases, codes do not change.

The tree::

    AegisError                                   aegis.errors
    ├── ConfigurationError (ValueError)          a setting, option or configuration is invalid
    ├── MissingDependencyError (ImportError)     an optional extra is not installed
    ├── PolicyError                              aegis.lang.errors
    │   ├── PolicyLoadError                      a set did not load; carries every diagnostic
    │   └── SchemaError                          a schema is malformed; carries every diagnostic
    ├── InvalidRequestError (ValueError)         aegis.engine.errors: a request breaks spec §4
    ├── EngineError                              aegis.engine.errors
    │   ├── CacheUnavailableError                a decision cache failed (the engine bypasses it)
    │   ├── AuditError                           an audit record could not be written or read
    │   │   ├── AuditIntegrityError              a chain does not verify
    │   │   ├── RecordRejected                   aegis.engine.audit: a store refuses a record
    │   │   └── ExecutorStoreError               aegis.remediation.errors
    │   └── PolicyStoreError                     a policy store could not be read
    ├── DetectorError                            aegis.detectors.errors
    │   ├── NotFittedError (ValueError, AttributeError)
    │   ├── ModelIntegrityError                  a model file is unsigned, tampered or incompatible
    │   ├── MetricSourceError                    a metric source failed
    │   └── InvalidDataError (ValueError)        metrics that cannot be used
    ├── ActuatorError                            aegis.actuators.errors
    │   ├── InvalidActionError (ValueError)      an action's type or parameters are invalid
    │   ├── SignatureError                       a signed request does not verify
    │   │   └── ReplayError                      its nonce was seen before
    │   ├── ReplayStoreUnavailableError          the nonce store cannot be reached
    │   ├── GuardrailViolation                   a guardrail refused an action
    │   ├── GuardrailStoreError                  guardrail state cannot be read or written
    │   ├── ActionConflict                       the target changed under us
    │   ├── TargetNotFoundError                  the target does not exist
    │   ├── ClusterForbiddenError                the cluster refused (RBAC)
    │   ├── ClusterRejectedError                 the cluster rejected the request
    │   └── ClusterUnavailableError              the cluster cannot be reached
    │       └── ClusterTimeoutError              …in time
    └── ServerError                              aegis.server.errors
        └── ApiError                             an HTTP error with a code, status and message
"""

from __future__ import annotations

__all__ = ["AegisError", "ConfigurationError", "MissingDependencyError"]


class AegisError(Exception):
    """Root of every error raised by Aegis."""

    code: str = "aegis.error"


class ConfigurationError(AegisError, ValueError):
    """A setting, option or configuration file is invalid."""

    code = "config.invalid"


class MissingDependencyError(AegisError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    code = "dependency.missing"

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"this feature needs `{package}`: install it with `pip install 'aegis[{extra}]'`"
        )


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise :class:`MissingDependencyError`.

    Args:
        module: the module to import (``"redis"``).
        extra: the ``aegis`` extra that installs it (``"redis"``).

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc
