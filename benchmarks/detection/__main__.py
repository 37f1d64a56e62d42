"""``python -m benchmarks.detection [--machines ...] [--rows N] [--out DIR]``.

Runs the Aegis default detector and the baselines on the SMD machines side by side and writes
``benchmarks/results/detection.{md,json,png}``. BLAS threads are pinned to one (two cores are
shared on the reference machine; see the issue's note on oversubscription).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

from benchmarks.detection.run import RESULTS, run, write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection")
    parser.add_argument("--machines", nargs="*", help="machine names (default: all)")
    parser.add_argument("--methods", nargs="*", help="method labels (default: all)")
    parser.add_argument("--rows", type=int, help="truncate each split (smoke runs)")
    parser.add_argument("--data", type=Path, help="SMD folder (default: ../shared/data/smd)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stem", default="detection")
    args = parser.parse_args(argv)
    results = run(args.machines, args.methods, args.rows, args.data)
    write(results, args.out, args.stem)
    print((args.out / f"{args.stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
