"""`import aegis` must not load scikit-learn, numpy or pandas (architecture.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_aegis_and_detectors_does_not_load_heavy_dependencies() -> None:
    code = (
        "import sys, aegis, aegis.detectors\n"
        "from aegis.detectors import Finding, Severity, Detector, ModelIntegrityError\n"
        "heavy = [m for m in ('sklearn', 'numpy', 'pandas', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from aegis.detectors import AnomalyDetector\n"
        "assert 'sklearn' in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_unknown_attribute_is_an_attribute_error() -> None:
    import aegis.detectors

    with pytest.raises(AttributeError, match="DoesNotExist"):
        aegis.detectors.DoesNotExist  # noqa: B018
