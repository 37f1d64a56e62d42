"""Errors of the policy language (see the tree in :mod:`aegis.errors`)."""

from __future__ import annotations

from collections.abc import Iterable

from aegis.errors import AegisError
from aegis.lang.diagnostics import Diagnostic, sort_diagnostics

__all__ = ["PolicyError", "PolicyLoadError", "SchemaError"]


class PolicyError(AegisError):
    """Root of the policy-language errors."""

    code = "policy.error"


class _DiagnosticsError(PolicyError):
    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        ordered = sort_diagnostics(diagnostics)
        if not ordered:
            raise ValueError(f"{type(self).__name__} needs at least one diagnostic")
        self.diagnostics: tuple[Diagnostic, ...] = ordered
        first = ordered[0].headline
        more = len(ordered) - 1
        super().__init__(first if not more else f"{first} (and {more} more)")

    def render(self) -> str:
        """Every diagnostic with its source line and caret, separated by blank lines."""
        return "\n\n".join(str(d) for d in self.diagnostics)


class PolicyLoadError(_DiagnosticsError):
    """A policy set did not load; ``diagnostics`` holds every problem, sorted by position.

    A set is never half-loaded (spec §1): when this is raised, nothing was loaded.
    """

    code = "policy.load"


class SchemaError(_DiagnosticsError):
    """A schema file is malformed; ``diagnostics`` holds every problem found."""

    code = "schema.invalid"
