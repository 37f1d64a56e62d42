"""The policy engine: a loaded policy set that decides requests (spec §4–§6)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from aegis.engine._compiler import CompiledPolicySet
from aegis.engine.decision import Decision
from aegis.engine.errors import InvalidRequestError
from aegis.engine.request import parse_request
from aegis.lang.diagnostics import Severity
from aegis.lang.errors import PolicyLoadError
from aegis.lang.loader import PolicySet, load_paths, load_texts

if TYPE_CHECKING:
    from aegis.lang.schema import Schema

__all__ = ["PolicyEngine", "SchemaSource"]

SchemaSource: TypeAlias = "str | os.PathLike[str] | Schema | None"
"""What ``schema=`` accepts: a schema file path, a loaded :class:`~aegis.lang.schema.Schema`,
or ``None`` (no schema)."""


class PolicyEngine:
    """A loaded policy set that decides requests.

    An engine is immutable once built, so one instance may serve any number of threads at
    once. Build it from files, from texts, or from an already loaded
    :class:`~aegis.lang.loader.PolicySet`; a set that does not load raises
    :class:`~aegis.lang.errors.PolicyLoadError` carrying every diagnostic.

    With a schema (spec §7), the set is validated against it when the engine is built (every
    problem is a diagnostic of the ``PolicyLoadError``), and each request must conform to it
    (otherwise :class:`~aegis.engine.errors.InvalidRequestError`). A set that validates never
    yields an evaluation error on a conforming request.

    Usage::

        >>> from datetime import datetime, timezone
        >>> engine = PolicyEngine.from_texts({"ops.aegis": '''
        ... allow "sre-may-restart" {
        ...     action == "restart_pod"
        ...     "sre" in principal.roles
        ... }
        ... '''})
        >>> decision = engine.evaluate(
        ...     {"principal": {"id": "alice", "roles": ["sre"]}, "action": "restart_pod",
        ...      "resource": {"kind": "pod"}},
        ...     now=datetime(2026, 11, 26, 10, 15, tzinfo=timezone.utc))
        >>> decision.allowed, decision.reason
        (True, 'allowed by rule "sre-may-restart"')

    Args:
        policy_set: the loaded set.
        schema: optional schema (a path or a loaded schema).

    Raises:
        PolicyLoadError: the set does not validate against the schema.
        SchemaError: the schema file is unreadable or malformed.
    """

    __slots__ = ("_compiled", "_policy_set", "_schema")

    def __init__(self, policy_set: PolicySet, schema: SchemaSource = None) -> None:
        self._policy_set = policy_set
        self._schema = _load_schema(schema)
        if self._schema is not None:
            _validate(policy_set, self._schema)
        self._compiled = CompiledPolicySet(policy_set)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_paths(
        cls, paths: Iterable[str | os.PathLike[str]], schema: SchemaSource = None
    ) -> PolicyEngine:
        """An engine over ``.aegis`` files and directories (read recursively).

        Args:
            paths: files or directories.
            schema: optional schema (a path or a loaded schema).

        Raises:
            PolicyLoadError: the set does not load, or does not validate against the schema.
            SchemaError: the schema file is unreadable or malformed.
        """
        return cls(load_paths(paths), schema=schema)

    @classmethod
    def from_texts(cls, texts: Mapping[str, str], schema: SchemaSource = None) -> PolicyEngine:
        """An engine over policy texts given as ``{file name: source text}``.

        Raises:
            PolicyLoadError: the set does not load, or does not validate against the schema.
            SchemaError: the schema file is unreadable or malformed.
        """
        return cls(load_texts(texts), schema=schema)

    @classmethod
    def from_policy_set(cls, policy_set: PolicySet, schema: SchemaSource = None) -> PolicyEngine:
        """An engine over an already loaded set.

        Raises:
            PolicyLoadError: the set does not validate against the schema.
            SchemaError: the schema file is unreadable or malformed.
        """
        return cls(policy_set, schema=schema)

    # ------------------------------------------------------------------ properties

    @property
    def policy_set(self) -> PolicySet:
        """The loaded policy set."""
        return self._policy_set

    @property
    def version(self) -> str:
        """The policy set's content hash (spec §6), as every decision carries it."""
        return self._policy_set.version

    @property
    def schema(self) -> Schema | None:
        """The schema requests must conform to, if any."""
        return self._schema

    def __repr__(self) -> str:
        return f"PolicyEngine(rules={len(self._policy_set.rules)}, version={self.version[:12]})"

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, request: Mapping[str, Any], now: datetime | None = None) -> Decision:
        """Decide one request (spec §6).

        Args:
            request: the request object of spec §4, as parsed from JSON.
            now: a timezone-aware datetime standing in for the clock when the request has
                no ``context.time``; ``None`` reads the system clock.

        Returns:
            The decision. Rules that cannot be evaluated are reported in
            ``decision.errors``; they never raise.

        Raises:
            InvalidRequestError: the request breaks spec §4 or does not conform to the
                engine's schema, or ``now`` is not timezone-aware.
        """
        if self._schema is not None:
            parse_request(request, now=now)  # spec §4 first: an invalid request is not judged
            problems = self._schema.check_request(request)
            if problems:
                raise InvalidRequestError(
                    "the request does not conform to the schema: " + "; ".join(problems)
                )
        # The compiled, indexed evaluator; the reference interpreter (aegis.engine._reference)
        # is its oracle in the differential tests (spec §8).
        return self._compiled.evaluate(request, now)


def _load_schema(schema: SchemaSource) -> Schema | None:
    if schema is None:
        return None
    from aegis.lang.schema import Schema, load_schema

    if isinstance(schema, Schema):
        return schema
    return load_schema(schema)


def _validate(policy_set: PolicySet, schema: Schema) -> None:
    from aegis.lang.validator import validate

    problems = [d for d in validate(policy_set, schema) if d.severity == Severity.ERROR]
    if problems:
        raise PolicyLoadError(problems)
