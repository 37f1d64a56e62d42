"""Errors of :mod:`aegis.actuators`.

The tree (all under :class:`aegis.errors.AegisError`; code, then HTTP status)::

    ActuatorError                         actuator.error
    ├── InvalidActionError (ValueError)   actuator.invalid_action            422
    ├── SignatureError                    actuator.signature                 401
    │   └── ReplayError                   actuator.replay                    409
    ├── ReplayStoreUnavailableError       actuator.replay_store_unavailable  503
    ├── GuardrailViolation                actuator.guardrail                 403
    ├── GuardrailStoreError               actuator.guardrail_store           503
    ├── ActionConflict                    actuator.conflict                  409
    ├── TargetNotFoundError               actuator.not_found                 404
    ├── ClusterForbiddenError             actuator.forbidden                 403 (cluster RBAC)
    ├── ClusterRejectedError              actuator.rejected                  422
    └── ClusterUnavailableError           actuator.unavailable               502
        └── ClusterTimeoutError           actuator.timeout                   504

Anticipated refusals that belong to the action (a paused deployment, a PodDisruptionBudget,
an HPA owning the deployment) are not exceptions: they come back as an
:class:`~aegis.actuators.ActionResult` with ``status="failed"`` and a reason code.
"""

from __future__ import annotations

from aegis.errors import AegisError

__all__ = [
    "ActionConflict",
    "ActuatorError",
    "ClusterForbiddenError",
    "ClusterRejectedError",
    "ClusterTimeoutError",
    "ClusterUnavailableError",
    "GuardrailStoreError",
    "GuardrailViolation",
    "InvalidActionError",
    "ReplayError",
    "ReplayStoreUnavailableError",
    "SignatureError",
    "TargetNotFoundError",
]


class ActuatorError(AegisError):
    """Root of the errors raised by actuators, signing and guardrails."""

    code = "actuator.error"


class InvalidActionError(ActuatorError, ValueError):
    """An action's type, target or parameters are invalid."""

    code = "actuator.invalid_action"


class SignatureError(ActuatorError):
    """A signed request does not verify.

    The message is always the same generic sentence, whatever went wrong, so that a caller
    learns nothing from it (SIG-4, SIG-6); :attr:`detail` names the actual cause for the
    audit record and must never be sent back.
    """

    code = "actuator.signature"
    GENERIC_MESSAGE = "request signature is invalid"

    def __init__(self, detail: str = "invalid") -> None:
        self.detail = detail
        super().__init__(self.GENERIC_MESSAGE)


class ReplayError(SignatureError):
    """The (key id, nonce) pair of a correctly signed request was already used (SIG-3)."""

    code = "actuator.replay"
    GENERIC_MESSAGE = "request was already received"

    def __init__(self, detail: str = "replay") -> None:
        super().__init__(detail)


class ReplayStoreUnavailableError(ActuatorError):
    """The nonce store cannot be reached; requests are refused (fail closed, SIG-3)."""

    code = "actuator.replay_store_unavailable"


class GuardrailViolation(ActuatorError):
    """A guardrail refused an action.

    Attributes:
        reason: a stable reason code (``namespace_denied``, ``cooldown`` …).
    """

    code = "actuator.guardrail"

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class GuardrailStoreError(ActuatorError):
    """The guardrail store (cooldowns, locks, breaker) failed; the action is refused."""

    code = "actuator.guardrail_store"


class ActionConflict(ActuatorError):
    """The target changed under us (409 after bounded retries, or a failed precondition)."""

    code = "actuator.conflict"


class TargetNotFoundError(ActuatorError):
    """The target object does not exist."""

    code = "actuator.not_found"


class ClusterForbiddenError(ActuatorError):
    """The Kubernetes API server refused the call (RBAC, 401/403)."""

    code = "actuator.forbidden"


class ClusterRejectedError(ActuatorError):
    """The Kubernetes API server rejected the call as invalid (400/422 and other 4xx)."""

    code = "actuator.rejected"


class ClusterUnavailableError(ActuatorError):
    """The Kubernetes API server failed (5xx) or could not be reached."""

    code = "actuator.unavailable"


class ClusterTimeoutError(ClusterUnavailableError):
    """A call to the Kubernetes API server timed out."""

    code = "actuator.timeout"
