"""Policy test files (spec §9): the format ``aegis test`` runs, as a library.

A case file is YAML. It gives the policy set (``policies:`` one file's text, or ``files:`` a
mapping of file names to texts, or — an Aegis extension of §9, for testing the policy files of
a repository — ``paths:``, a list of files or directories relative to the case file), then
either ``cases:`` — requests with their expected
decisions — or ``load_error: true``. A case gives ``decision`` (``ALLOW``/``DENY``) and
optionally ``allow`` / ``deny`` (exactly these rule names) and ``errors`` (this many errors), or
``invalid_request: true``. A case may also give ``now`` (RFC 3339), the clock for requests
without ``context.time``; this is an Aegis extension of §9.

Usage::

    from aegis.testing import run_case_files
    report = run_case_files(["policies/tests/"])
    print(report.summary)     # "12 passed, 0 failed"
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from aegis.engine import InvalidRequestError, PolicyEngine
from aegis.lang import PolicyLoadError

__all__ = [
    "CaseResult",
    "CasesReport",
    "collect_case_files",
    "load_case_file",
    "run_case_file",
    "run_case_files",
]


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings: requests carry RFC 3339 text (spec §4)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case: ``ok``, and when not, what was expected and what happened."""

    file: str
    name: str
    ok: bool
    expected: str = ""
    actual: str = ""

    @property
    def id(self) -> str:
        """``<file stem>::<case name>``."""
        return f"{Path(self.file).stem}::{self.name}"

    def describe(self) -> str:
        """One line: ``FAIL file::case: expected …; got …``."""
        if self.ok:
            return f"ok   {self.file}::{self.name}"
        return f"FAIL {self.file}::{self.name}: expected {self.expected}; got {self.actual}"


@dataclass(slots=True)
class CasesReport:
    """Every case result of a run."""

    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        """How many cases failed."""
        return sum(1 for r in self.results if not r.ok)

    @property
    def summary(self) -> str:
        """``N passed, M failed``."""
        return f"{self.passed} passed, {self.failed} failed"


def collect_case_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories searched recursively for ``*.yaml`` / ``*.yml``."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [*path.rglob("*.yaml"), *path.rglob("*.yml")]
            out.extend(sorted(p for p in found if p.is_file()))
        else:
            out.append(path)
    return out


def load_case_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and shape-check one case file.

    Raises:
        ValueError: the file is unreadable, not YAML, or not of the §9 form; the message says why.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read case file: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ValueError("a case file is a mapping with `policies` or `files`")
    has_policies, has_files = "policies" in data, "files" in data
    if has_policies + has_files + ("paths" in data) != 1:
        raise ValueError("a case file gives exactly one of `policies`, `files` and `paths`")
    if "paths" in data and not (
        isinstance(data["paths"], list) and all(isinstance(p, str) for p in data["paths"])
    ):
        raise ValueError("`paths` lists policy files or directories")
    if has_policies and not isinstance(data["policies"], str):
        raise ValueError("`policies` is one file's text")
    if has_files and not (
        isinstance(data["files"], dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in data["files"].items())
    ):
        raise ValueError("`files` maps file names to texts")
    if data.get("load_error") is True:
        return data
    cases = data.get("cases")
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise ValueError("a case file gives `cases` (a list) or `load_error: true`")
    return data


def _engine(data: Mapping[str, Any], path: Path) -> PolicyEngine:
    if "paths" in data:
        return PolicyEngine.from_paths([path.parent / p for p in data["paths"]])
    return PolicyEngine.from_texts(_texts(data, path))


def _texts(data: Mapping[str, Any], path: Path) -> dict[str, str]:
    if "files" in data:
        return {str(k): str(v) for k, v in data["files"].items()}
    return {f"{path.stem}.aegis": str(data["policies"])}


def _names(value: Any) -> list[str]:
    return sorted(str(v) for v in (value or []))


def _now(case: Mapping[str, Any]) -> datetime | None:
    raw = case.get("now")
    if raw is None:
        return None
    moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("`now` needs an offset")
    return moment


def _check_case(engine: PolicyEngine, file: str, index: int, case: Mapping[str, Any]) -> CaseResult:
    name = str(case.get("name", f"case {index + 1}"))
    request = case.get("request")
    try:
        now = _now(case)
        decision = engine.evaluate(request, now=now) if isinstance(request, dict) else None
        if decision is None:
            raise InvalidRequestError("the request is not a mapping")
    except InvalidRequestError as exc:
        if case.get("invalid_request") is True:
            return CaseResult(file, name, True)
        return CaseResult(file, name, False, "a decision", f"invalid request ({exc})")
    except ValueError as exc:
        return CaseResult(file, name, False, "a well-formed case", str(exc))
    if case.get("invalid_request") is True:
        return CaseResult(file, name, False, "an invalid request", decision.decision)
    problems: list[tuple[str, str]] = []
    want = case.get("decision")
    if want is not None and str(want).upper() != decision.decision:
        problems.append((f"decision {str(want).upper()}", f"decision {decision.decision}"))
    if "allow" in case and _names(case["allow"]) != list(decision.allow):
        problems.append((f"allow {_names(case['allow'])}", f"allow {list(decision.allow)}"))
    if "deny" in case and _names(case["deny"]) != list(decision.deny):
        problems.append((f"deny {_names(case['deny'])}", f"deny {list(decision.deny)}"))
    if "errors" in case and int(case["errors"]) != len(decision.errors):
        messages = "; ".join(f"{e.rule}: {e.message}" for e in decision.errors)
        actual = f"errors {len(decision.errors)}" + (f" ({messages})" if messages else "")
        problems.append((f"errors {case['errors']}", actual))
    if want is None and "allow" not in case and "deny" not in case and "errors" not in case:
        problems.append(("`decision` or `invalid_request` in the case", "neither"))
    if problems:
        return CaseResult(
            file, name, False, ", ".join(p[0] for p in problems), ", ".join(p[1] for p in problems)
        )
    return CaseResult(file, name, True)


def run_case_file(path: str | os.PathLike[str]) -> list[CaseResult]:
    """Run every case of one file; a file that cannot be read is one failed result."""
    file = str(path)
    try:
        data = load_case_file(path)
    except ValueError as exc:
        return [CaseResult(file, "(file)", False, "a §9 case file", str(exc))]
    try:
        engine = _engine(data, Path(path))
    except PolicyLoadError as exc:
        if data.get("load_error") is True:
            return [CaseResult(file, "load_error", True)]
        first = exc.diagnostics[0].headline
        return [
            CaseResult(file, str(c.get("name", f"case {i + 1}")), False, "the set to load", first)
            for i, c in enumerate(data["cases"])
        ] or [CaseResult(file, "(file)", False, "the set to load", first)]
    if data.get("load_error") is True:
        return [CaseResult(file, "load_error", False, "a load error", "the set loaded")]
    return [_check_case(engine, file, i, case) for i, case in enumerate(data["cases"])]


def run_case_files(paths: Iterable[str | os.PathLike[str]]) -> CasesReport:
    """Run every case file under ``paths`` (files, or directories searched for ``*.yaml``)."""
    report = CasesReport()
    for path in collect_case_files(paths):
        report.results.extend(run_case_file(path))
    return report
