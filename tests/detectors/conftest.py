"""Small synthetic metric tables shared by the detector tests (fast: a few hundred rows)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


def make_metrics(n: int = 600, m: int = 6, seed: int = 0) -> pd.DataFrame:
    """Correlated, seasonal, noisy metrics, rows in time order."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.sin(2 * np.pi * t / 120.0)
    cols = {}
    for j in range(m):
        cols[f"metric_{j}"] = (
            0.5 + 0.3 * base * (1 + 0.1 * j) + 0.05 * rng.standard_normal(n) + 0.02 * j
        )
    return pd.DataFrame(cols)


@pytest.fixture(scope="session")
def metrics_factory() -> Callable[..., pd.DataFrame]:
    """The :func:`make_metrics` function, for tests that need their own tables."""
    return make_metrics


@pytest.fixture
def train_frame() -> pd.DataFrame:
    return make_metrics(600, 6, seed=0)


@pytest.fixture
def test_frame() -> pd.DataFrame:
    return make_metrics(300, 6, seed=1)
