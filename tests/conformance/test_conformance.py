"""Every case of ../shared/spec/conformance/ through the public API and through ``aegis test``.

Test ids are ``<file stem>::<case name>`` (habit H9). The shared folder sits beside the
repository, on developers' machines and in CI alike.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aegis.testing.policy_cases import CaseResult, collect_case_files, run_case_file

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT.parent / "shared" / "spec" / "conformance"
EXAMPLE_TESTS = ROOT / "examples" / "policies" / "tests"


def _results(folder: Path) -> list[CaseResult]:
    return [r for path in collect_case_files([folder]) for r in run_case_file(path)]


def _cases(folder: Path) -> list[pytest.param]:  # type: ignore[valid-type]
    if not folder.is_dir():
        return [pytest.param(None, id="missing", marks=pytest.mark.skip(f"no {folder}"))]
    return [pytest.param(r, id=r.id) for r in _results(folder)]


@pytest.mark.parametrize("result", _cases(CONFORMANCE))
def test_conformance_case(result: CaseResult) -> None:
    assert result.ok, result.describe()


@pytest.mark.parametrize("result", _cases(EXAMPLE_TESTS))
def test_example_policy_case(result: CaseResult) -> None:
    assert result.ok, result.describe()


def test_conformance_folder_is_present() -> None:
    assert CONFORMANCE.is_dir(), f"the shared conformance cases belong at {CONFORMANCE}"
    assert len(collect_case_files([CONFORMANCE])) >= 10


@pytest.mark.parametrize("folder", [CONFORMANCE, EXAMPLE_TESTS], ids=["shared", "examples"])
def test_aegis_test_command_passes(folder: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aegis.cli", "test", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].endswith(" 0 failed")
    assert "Traceback" not in done.stderr
