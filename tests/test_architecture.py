"""The import directions of style.md, checked on every module's import statements.

A ← B means B may import A:  errors, _plugins ← lang ← engine ← remediation ← server ← cli;
detectors and actuators import only errors and _plugins; testing never imports server.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aegis"

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    # INVARIANT: _plugins raises ConfigurationError, the one thing it needs from aegis
    "_plugins": {"errors"},
    "lang": {"errors"},
    "engine": {"errors", "_plugins", "lang"},
    "detectors": {"errors", "_plugins"},
    "actuators": {"errors", "_plugins"},
    "remediation": {"errors", "_plugins", "lang", "engine", "detectors", "actuators"},
    "testing": {"errors", "_plugins", "lang", "engine", "actuators"},
    "server": {"*"},
    "cli": {"*"},
    "__init__": {"_version", "errors", "lang", "engine", "detectors", "actuators"},
}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
        out.append((".".join(parts).removesuffix(".__init__"), path))
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "aegis" and node.level == 0:
            found.update(f"aegis.{a.name}" for a in node.names)  # `from aegis import _plugins`
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "aegis" or name.startswith("aegis.")}


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_follow_the_layering(module: str, path: Path) -> None:
    area = "__init__" if module == "aegis" else _area(module)
    allowed = ALLOWED.get(area, set())
    if "*" in allowed:
        return
    for imported in _imports(path):
        target = _area(imported)
        if target in (area, "__init__") and imported != "aegis":
            continue
        assert imported != "aegis", f"{module} imports the package front door `aegis`"
        assert target in allowed, f"{module} may not import {imported} (style.md, import rules)"


def test_import_aegis_stays_light() -> None:
    heavy = ["sklearn", "kubernetes", "redis", "sqlalchemy", "starlette", "numpy", "pandas"]
    code = (
        "import sys, aegis, aegis.lang, aegis.engine\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


def test_test_modules_have_unique_basenames() -> None:
    # pytest imports test files by basename (no packages under tests/): two files of the same
    # name in different folders would stop the whole collection
    tests = Path(__file__).resolve().parent
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
