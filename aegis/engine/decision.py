"""The decision object (spec §6) and its JSON form.

``Decision.to_dict()`` gives exactly the object that ``aegis eval`` prints and the server
returns::

    {"decision": "DENY", "allowed": false, "reason": "production is frozen at weekends",
     "allow": ["sre-may-restart"], "deny": ["prod-weekend-freeze"],
     "errors": [], "version": "3f1c…"}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from aegis.engine.errors import EngineError

__all__ = ["Decision", "DecisionValue", "RuleError"]

DecisionValue: TypeAlias = Literal["ALLOW", "DENY"]


@dataclass(frozen=True, slots=True)
class RuleError:
    """A rule whose combined conditions evaluated to an error.

    Attributes:
        rule: the rule name.
        message: what went wrong (``\\`resource.replicas\\` is missing``).
    """

    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """``{"rule": ..., "message": ...}``."""
        return {"rule": self.rule, "message": self.message}


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one request (spec §6).

    Attributes:
        decision: ``"ALLOW"`` or ``"DENY"``.
        allowed: ``decision == "ALLOW"``.
        reason: human-readable, from the deciding rule.
        allow: every matching allow rule, sorted by name, whatever the decision.
        deny: every deny rule that matched or errored, sorted by name.
        errors: one entry per rule (allow or deny) that evaluated to an error, sorted by name.
        version: the content hash of the policy set that decided.
    """

    decision: DecisionValue
    allowed: bool
    reason: str
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    errors: tuple[RuleError, ...]
    version: str

    def __post_init__(self) -> None:
        if self.decision not in ("ALLOW", "DENY"):
            raise ValueError(f"decision must be `ALLOW` or `DENY`, not `{self.decision}`")
        if self.allowed != (self.decision == "ALLOW"):
            raise ValueError("`allowed` must be true exactly when the decision is `ALLOW`")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the decision, as ``aegis eval`` prints it.

        Keys: ``decision allowed reason allow deny errors version``.
        Lists are sorted by rule name; ``errors`` is a list of ``{"rule", "message"}``.
        """
        return {
            "decision": self.decision,
            "allowed": self.allowed,
            "reason": self.reason,
            "allow": sorted(self.allow),
            "deny": sorted(self.deny),
            "errors": [e.to_dict() for e in sorted(self.errors, key=lambda e: e.rule)],
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Read the JSON form back (``Decision.from_dict(d.to_dict()) == d``).

        Args:
            data: a mapping as produced by :meth:`to_dict`.

        Returns:
            The decision.

        Raises:
            EngineError: ``data`` is not a decision object of that shape.
        """
        try:
            if set(data) != _FIELDS:
                raise ValueError(f"keys must be {sorted(_FIELDS)}, not {sorted(map(str, data))}")
            decision = data["decision"]
            allowed = data["allowed"]
            reason = data["reason"]
            version = data["version"]
            if decision not in ("ALLOW", "DENY") or not isinstance(allowed, bool):
                raise ValueError("`decision` must be ALLOW or DENY and `allowed` a boolean")
            if not isinstance(reason, str) or not isinstance(version, str):
                raise ValueError("`reason` and `version` must be strings")
            allow = _names(data["allow"], "allow")
            deny = _names(data["deny"], "deny")
            errors_raw = data["errors"]
            if not isinstance(errors_raw, list | tuple):
                raise ValueError("`errors` must be a list")
            errors: list[RuleError] = []
            for entry in errors_raw:
                if (
                    not isinstance(entry, Mapping)
                    or set(entry) != {"rule", "message"}
                    or not isinstance(entry["rule"], str)
                    or not isinstance(entry["message"], str)
                ):
                    raise ValueError(
                        "each error must be an object with string `rule` and `message`"
                    )
                errors.append(RuleError(rule=entry["rule"], message=entry["message"]))
            return cls(
                decision=decision,
                allowed=allowed,
                reason=reason,
                allow=allow,
                deny=deny,
                errors=tuple(sorted(errors, key=lambda e: e.rule)),
                version=version,
            )
        except (ValueError, TypeError) as exc:
            raise EngineError(f"malformed decision object: {exc}") from exc


_FIELDS = frozenset({"decision", "allowed", "reason", "allow", "deny", "errors", "version"})


def _names(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{key}` must be a list of rule names")
    return tuple(sorted(value))
