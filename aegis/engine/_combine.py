"""Rule results → decision: spec §6 as one explicit truth table (habit H8).

Every evaluator (the reference interpreter today, a compiled one later) produces one
:class:`RuleResult` per rule and hands them to :func:`combine`, so the decision logic exists
exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from aegis.engine.decision import Decision, DecisionValue, RuleError
from aegis.lang.ast import Effect

__all__ = ["Outcome", "RuleResult", "combine"]


class Outcome(Enum):
    """What a rule's combined conditions evaluate to (spec §6)."""

    MATCH = "match"
    NO_MATCH = "no-match"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's outcome for one request.

    Attributes:
        name: the rule name.
        effect: ``"allow"`` or ``"deny"``.
        outcome: match, no-match or error.
        reason: the rule's ``reason`` text, if any.
        message: the error message when ``outcome`` is :attr:`Outcome.ERROR`, else ``None``.
    """

    name: str
    effect: Effect
    outcome: Outcome
    reason: str | None = None
    message: str | None = None


def combine(results: Iterable[RuleResult], version: str) -> Decision:
    """The decision of spec §6 from every rule's result.

    Args:
        results: one result per rule of the set, in any order.
        version: the policy set's version hash, copied into the decision.

    Returns:
        The :class:`~aegis.engine.decision.Decision`, its lists sorted by rule name.
    """
    ordered = sorted(results, key=lambda result: result.name)
    allow = [r for r in ordered if r.effect == "allow" and r.outcome is Outcome.MATCH]
    deny_matched = [r for r in ordered if r.effect == "deny" and r.outcome is Outcome.MATCH]
    deny_errored = [r for r in ordered if r.effect == "deny" and r.outcome is Outcome.ERROR]
    errors = tuple(
        RuleError(rule=r.name, message=r.message if r.message is not None else "evaluation failed")
        for r in ordered
        if r.outcome is Outcome.ERROR
    )
    deny_names = tuple(r.name for r in (*deny_matched, *deny_errored))
    deny_names = tuple(sorted(deny_names))

    decision: DecisionValue
    match (bool(deny_matched), bool(deny_errored), bool(allow)):
        case (True, _, _):
            # §6.1: a deny rule matches → DENY; the reason comes from the first matching
            # deny rule by name (its `reason`, or a generic sentence).
            first = deny_matched[0]
            decision = "DENY"
            reason = first.reason if first.reason is not None else f'denied by rule "{first.name}"'
        case (False, True, _):
            # §6.1: no deny rule matches but one errors → DENY (fail closed); the reason
            # names the first erroring deny rule by name and its error.
            first = deny_errored[0]
            decision = "DENY"
            reason = f'rule "{first.name}" failed: {first.message or "evaluation failed"}'
        case (False, False, True):
            # §6.2: no deny rule matches or errors, an allow rule matches → ALLOW (an allow
            # rule that errors does not count).
            decision, reason = "ALLOW", f'allowed by rule "{allow[0].name}"'
        case (False, False, False):
            # §6.3: nothing allows → DENY by default.
            decision, reason = "DENY", "no allow rule matched"

    return Decision(
        decision=decision,
        allowed=decision == "ALLOW",
        reason=reason,
        allow=tuple(r.name for r in allow),
        deny=deny_names,
        errors=errors,
        version=version,
    )
