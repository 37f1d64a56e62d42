"""Docstring examples run, and the package's public names are exported and documented."""

from __future__ import annotations

import doctest
import importlib

import pytest

import aegis.detectors

MODULES = [
    "aegis.detectors.anomaly",
    "aegis.detectors.classifier",
    "aegis.detectors.persistence",
    "aegis.detectors.sources",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_exported_name_exists_and_is_documented() -> None:
    assert list(aegis.detectors.__all__) == sorted(
        aegis.detectors.__all__, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    for name in aegis.detectors.__all__:
        value = getattr(aegis.detectors, name)
        if not isinstance(value, tuple | dict) and not hasattr(value, "keys"):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"
