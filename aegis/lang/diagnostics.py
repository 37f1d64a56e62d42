"""Diagnostics are data: a stable code, a message and a source span (habit H3).

``str(diagnostic)`` renders the form every tool prints::

    prod.aegis:12:5: error[duplicate-rule]: rule `x` is already defined at base.aegis:3:1
       |
    12 |     allow "x" {
       |     ^

Messages follow Cedar's rules: one lowercase sentence, no final period, user input in
backticks, no line breaks; help text is separate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

__all__ = ["Diagnostic", "Severity", "Span", "sort_diagnostics"]


class Span(NamedTuple):
    """A region of a source file: 1-based lines and columns; the end column is the column just
    after the last character (a one-character span at column 5 ends at column 6).

    A named tuple, so spans are cheap to build (a parse of 10,000 rules makes hundreds of
    thousands of them), immutable, and ordered by file, line, column.
    """

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def point(cls, file: str, line: int, column: int) -> Span:
        """A zero-width span at one position."""
        return cls(file, line, column, line, column)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def __repr__(self) -> str:
        return (
            f"Span({self.file!r}, {self.line}, {self.column}, {self.end_line}, {self.end_column})"
        )


UNKNOWN_SPAN = Span("<unknown>", 1, 1, 1, 1)


class Severity(StrEnum):
    """How serious a diagnostic is; only errors stop a load."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a policy file, a schema, or a set of them.

    Attributes:
        code: stable identifier (``syntax``, ``duplicate-rule``, ``unknown-attribute``…).
        message: one lowercase sentence.
        span: where the problem is.
        help: optional advice, rendered on its own line.
        severity: ``error`` (default) or ``warning``.
        source_line: the text of the span's first line, for the caret rendering.
    """

    code: str
    message: str
    span: Span
    help: str | None = None
    severity: Severity = Severity.ERROR
    source_line: str | None = field(default=None, compare=False, repr=False)

    @property
    def headline(self) -> str:
        """``file:line:col: error[code]: message`` on one line."""
        return f"{self.span}: {self.severity.value}[{self.code}]: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """The JSON form used by the API and ``--format json`` outputs."""
        return {
            "code": self.code,
            "message": self.message,
            "severity": self.severity.value,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "help": self.help,
        }

    def __str__(self) -> str:
        lines = [self.headline]
        if self.source_line is not None:
            number = str(self.span.line)
            pad = " " * len(number)
            text = self.source_line.rstrip("\r\n").expandtabs(1)
            width = 1
            if self.span.end_line == self.span.line and self.span.end_column > self.span.column:
                width = self.span.end_column - self.span.column
            lines.append(f"{pad} |")
            lines.append(f"{number} | {text}")
            lines.append(f"{pad} | {' ' * (self.span.column - 1)}{'^' * width}")
        if self.help:
            lines.append(f"  = help: {self.help}")
        return "\n".join(lines)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> tuple[Diagnostic, ...]:
    """Sort by file, line, column, then code and message; drop exact repeats."""
    unique = {(d.span, d.code, d.message): d for d in diagnostics}
    return tuple(
        sorted(
            unique.values(),
            key=lambda d: (d.span.file, d.span.line, d.span.column, d.code, d.message),
        )
    )
