"""The policy engine: requests, decisions, and the evaluator of spec §4–§6.

Usage::

    from aegis.engine import PolicyEngine

    engine = PolicyEngine.from_paths(["policies/"])
    decision = engine.evaluate({
        "principal": {"id": "alice", "roles": ["sre"]},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "prod"},
        "context": {"time": "2026-11-26T10:15:00Z"},
    })
    print(decision.decision, decision.reason)
    print(decision.to_dict())
"""

from aegis.engine.decision import Decision, DecisionValue, RuleError
from aegis.engine.errors import (
    AuditError,
    AuditIntegrityError,
    CacheUnavailableError,
    EngineError,
    InvalidRequestError,
    PolicyStoreError,
)
from aegis.engine.evaluator import EngineStats, PolicyEngine, SchemaSource
from aegis.engine.request import TIME_ATTRIBUTES, Request, parse_request, parse_time, time_view

__all__ = [
    "TIME_ATTRIBUTES",
    "AuditError",
    "AuditIntegrityError",
    "CacheUnavailableError",
    "Decision",
    "DecisionValue",
    "EngineError",
    "EngineStats",
    "InvalidRequestError",
    "PolicyEngine",
    "PolicyStoreError",
    "Request",
    "RuleError",
    "SchemaSource",
    "parse_request",
    "parse_time",
    "time_view",
]
