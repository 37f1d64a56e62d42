"""Smoke test of the SMD benchmark code on a tiny SMD-shaped folder (the real run is slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _fake_smd(root: Path) -> None:
    rng = np.random.default_rng(0)
    for folder in ("train", "test", "test_label", "interpretation_label"):
        (root / folder).mkdir(parents=True)
    n, m = 400, 4
    for split in ("train", "test"):
        x = 0.5 + 0.05 * rng.standard_normal((n, m))
        labels = np.zeros(n, dtype=int)
        if split == "test":
            x[200:220, 2] += 0.5
            labels[200:220] = 1
            np.savetxt(root / "test_label" / "machine-9-9.txt", labels, fmt="%d")
        np.savetxt(root / split / "machine-9-9.txt", x, delimiter=",", fmt="%.5f")
    (root / "interpretation_label" / "machine-9-9.txt").write_text("200-219:3\n")
    (root / "columns.txt").write_text("\n".join(f"c{i}" for i in range(m)) + "\n")


def test_benchmark_runs_end_to_end_on_a_slice(tmp_path: Path) -> None:
    data, out = tmp_path / "smd", tmp_path / "out"
    _fake_smd(data)
    methods = ["aegis (default)", "IsolationForest", "max-|z|"]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.detection",
            "--data",
            str(data),
            "--out",
            str(out),
            "--stem",
            "smoke",
            "--methods",
            *methods,
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "smoke.json").read_text())
    assert set(results) == set(methods)
    ours = results["aegis (default)"]["machine-9-9"]
    assert ours["pr_auc"] > 0.5 and ours["finite"] and ours["hit_rate_at_3"] == 1.0
    assert results["IsolationForest"]["machine-9-9"]["hit_rate_at_3"] is None
    table = (out / "smoke.md").read_text()
    assert "| aegis (default) |" in table and "Hit@3" in table
    assert (out / "smoke.png").stat().st_size > 1000
