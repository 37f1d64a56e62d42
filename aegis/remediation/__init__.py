"""The closed loop: the executor pipeline (signature → validation → guardrails → policy →
write-ahead audit → actuator → outcome), usable and testable without HTTP."""

from aegis.remediation.errors import ExecutorStoreError
from aegis.remediation.executor import Executor, ExecutorResponse, build_executor, policy_request
from aegis.remediation.store import ExecutorStore, Outbox

__all__ = [
    "Executor",
    "ExecutorResponse",
    "ExecutorStore",
    "ExecutorStoreError",
    "Outbox",
    "build_executor",
    "policy_request",
]
