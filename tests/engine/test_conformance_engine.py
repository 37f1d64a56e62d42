"""Every case of the spec's conformance files (§9), run through ``PolicyEngine.from_texts``.

A deliberately small loader of the case format; the official runner lives elsewhere.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis.engine import InvalidRequestError, PolicyEngine
from aegis.lang import PolicyLoadError

_REPO = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    Path(os.environ.get("AEGIS_CONFORMANCE_DIR", _REPO / "spec" / "conformance")),
    _REPO / "tests" / "conformance" / "cases",
    _REPO.parent / "shared" / "spec" / "conformance",
]
CASES_DIR = next((p for p in _CANDIDATES if any(p.glob("*.yaml"))), _CANDIDATES[-1])
NOW = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)


class _JsonishLoader(yaml.SafeLoader):
    """YAML without timestamp conversion: a request holds only JSON values."""


_JsonishLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _files() -> list[Path]:
    return sorted(CASES_DIR.glob("*.yaml"))


def _texts(doc: dict[str, Any]) -> dict[str, str]:
    if "files" in doc:
        return dict(doc["files"])
    return {"policies.aegis": doc["policies"]}


def _params() -> list[Any]:
    params: list[Any] = []
    for path in _files():
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_JsonishLoader)
        if doc.get("load_error"):
            params.append(pytest.param(doc, None, id=f"{path.stem}::load_error"))
            continue
        for case in doc["cases"]:
            params.append(pytest.param(doc, case, id=f"{path.stem}::{case['name']}"))
    return params


def test_the_conformance_directory_is_found() -> None:
    assert len(_files()) >= 10, f"no conformance cases in any of {_CANDIDATES}"


@pytest.mark.parametrize(("doc", "case"), _params())
def test_conformance_case(doc: dict[str, Any], case: dict[str, Any] | None) -> None:
    if case is None:
        with pytest.raises(PolicyLoadError):
            PolicyEngine.from_texts(_texts(doc))
        return
    engine = PolicyEngine.from_texts(_texts(doc))
    if case.get("invalid_request"):
        with pytest.raises(InvalidRequestError):
            engine.evaluate(case["request"], now=NOW)
        return
    decision = engine.evaluate(case["request"], now=NOW)
    got = decision.to_dict()
    assert got["decision"] == case["decision"], got
    if "allow" in case:
        assert got["allow"] == sorted(case["allow"]), got
    if "deny" in case:
        assert got["deny"] == sorted(case["deny"]), got
    if "errors" in case:
        assert len(got["errors"]) == case["errors"], got
