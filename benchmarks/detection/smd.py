"""Load the Server Machine Dataset (SMD) shipped in ``shared/data/smd``."""

from __future__ import annotations

import lzma
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def default_smd_dir() -> Path:
    """``$AEGIS_SMD_DIR``, else ``../shared/data/smd`` next to the checkout."""
    env = os.environ.get("AEGIS_SMD_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "smd"


@dataclass
class Machine:
    """One machine: train and test matrices, test labels, expert-blamed segments."""

    name: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    segments: list[tuple[int, int, set[int]]]  # (start, end inclusive, 0-based metric indices)
    columns: list[str]


def _read_matrix(path: Path) -> np.ndarray:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt") as fh:
        return np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)


def _read_segments(path: Path) -> list[tuple[int, int, set[int]]]:
    segments = []
    if not path.exists():
        return segments
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        span, dims = line.split(":")
        start, end = (int(x) for x in span.split("-"))
        segments.append((start, end, {int(d) - 1 for d in dims.split(",") if d.strip()}))
    return segments


def machines(root: Path | None = None) -> list[str]:
    """Machine names found under ``root/train``."""
    root = root or default_smd_dir()
    return sorted(p.name.split(".")[0] for p in (root / "train").glob("*.txt*"))


def load_machine(name: str, root: Path | None = None, rows: int | None = None) -> Machine:
    """Load one machine; ``rows`` truncates both splits (for smoke tests)."""
    root = root or default_smd_dir()

    def find(folder: str) -> Path:
        for suffix in (".txt.xz", ".txt"):
            p = root / folder / f"{name}{suffix}"
            if p.exists():
                return p
        raise FileNotFoundError(f"{folder}/{name}.txt(.xz) not found under {root}")

    train = _read_matrix(find("train"))
    test = _read_matrix(find("test"))
    labels = np.loadtxt(find("test_label"), dtype=np.int64, ndmin=1)
    cols_file = root / "columns.txt"
    columns = (
        cols_file.read_text().split()
        if cols_file.exists()
        else [f"m{i}" for i in range(train.shape[1])]
    )
    segments = _read_segments(root / "interpretation_label" / f"{name}.txt")
    if rows is not None:
        train, test, labels = train[:rows], test[:rows], labels[:rows]
        segments = [(s, min(e, rows - 1), d) for s, e, d in segments if s < rows]
    return Machine(name, train, test, labels, segments, columns)
