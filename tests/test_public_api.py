"""The public surface of `import aegis`, compared with a checked-in list (habit H1).

Every change to the public API shows up as a diff of tests/public_api.txt in review.
"""

from __future__ import annotations

import types
from pathlib import Path

import aegis

EXPECTED = Path(__file__).with_name("public_api.txt")


def test_exported_names_match_the_checked_in_list() -> None:
    expected = [
        line.strip()
        for line in EXPECTED.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(aegis.__all__) == expected


def test_all_is_sorted_and_every_name_exists_and_is_documented() -> None:
    assert list(aegis.__all__) == sorted(aegis.__all__)
    for name in aegis.__all__:
        value = getattr(aegis, name)
        if name != "__version__":
            assert (getattr(value, "__doc__", None) or "").strip(), f"{name} has no docstring"


def test_public_names_are_the_non_underscore_names() -> None:
    # subpackages appear as attributes once imported anywhere; they are not re-exports
    public = {
        name
        for name, value in vars(aegis).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(aegis.__all__) - {"__version__"}
