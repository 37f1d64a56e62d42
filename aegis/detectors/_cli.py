"""``aegis detectors train`` and ``aegis detectors evaluate``.

The lead's ``aegis/cli.py`` calls :func:`register` with its subparsers; the parsed namespace
carries ``handler`` (a function of the namespace returning the exit code). Exit codes:
0 success; 1 the model was refused (unsigned, tampered, incompatible); 2 bad usage or input
that could not be used (unreadable data, no key). Errors are one line on stderr, never a
traceback. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from aegis.detectors.errors import ModelIntegrityError
from aegis.errors import AegisError

__all__ = ["main", "register", "run_evaluate", "run_train"]


class _Progress:
    """Numbered stages with elapsed time, on stderr."""

    def __init__(self, total: int, stream: TextIO, quiet: bool) -> None:
        self.total = total
        self.step = 0
        self.stream = stream
        self.quiet = quiet
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.step += 1
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{self.step}/{self.total}] {message} ({elapsed:.1f}s)", file=self.stream)
            self.stream.flush()


def _key(args: argparse.Namespace) -> str:
    from aegis.errors import ConfigurationError

    value = os.environ.get(args.key_env)
    if not value:
        raise ConfigurationError(f"no model signing key: set the `{args.key_env}` variable")
    return value


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``aegis detectors train``."""
    from aegis.detectors.anomaly import AnomalyDetector
    from aegis.detectors.persistence import ModelRegistry
    from aegis.detectors.sources import read_metrics_file

    progress = _Progress(3, sys.stderr, args.quiet)
    key = _key(args)
    progress(f"reading `{args.data}`")
    frame = read_metrics_file(args.data)
    progress(f"fitting on {len(frame):,} rows x {frame.shape[1]} metrics")
    started = time.perf_counter()
    model = AnomalyDetector(window=args.window).fit(frame)
    fit_seconds = time.perf_counter() - started
    registry = ModelRegistry(args.out, key=key)
    progress(f"signing and saving into `{args.out}`")
    version = registry.register(
        model,
        training_data=frame,
        metrics={
            "fit_seconds": round(fit_seconds, 3),
            "training_rows": len(frame),
            "metrics": frame.shape[1],
        },
        promote=not args.no_promote,
    )
    state = "promoted" if not args.no_promote else "not promoted"
    print(f"trained {version} ({state}) in {fit_seconds:.1f}s: {args.out}")
    return 0


def _read_labels(path: str) -> Any:
    import numpy as np
    import pandas as pd

    from aegis.detectors.errors import InvalidDataError, MetricSourceError

    p = Path(path)
    try:
        if p.suffix.lower() in (".csv", ".parquet", ".pq"):
            frame = pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
            column = "label" if "label" in frame.columns else frame.columns[-1]
            values = frame[column].to_numpy()
        else:
            values = np.loadtxt(p, dtype=np.float64, ndmin=1)
    except FileNotFoundError as exc:
        raise MetricSourceError(f"`{p}` does not exist") from exc
    except Exception as exc:
        raise MetricSourceError(f"`{p}` is unreadable: {exc}") from exc
    try:
        labels = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(f"`{p}`: labels must be 0 or 1") from exc
    if not np.isin(labels, (0.0, 1.0)).all():
        raise InvalidDataError(f"`{p}`: labels must be 0 or 1")
    return labels.astype(int)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``aegis detectors evaluate``."""
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    from aegis.detectors.errors import InvalidDataError
    from aegis.detectors.persistence import ModelRegistry
    from aegis.detectors.sources import read_metrics_file

    progress = _Progress(3, sys.stderr, args.quiet)
    key = _key(args)
    progress(f"verifying and loading the model in `{args.model}`")
    registry = ModelRegistry(args.model, key=key)
    model = registry.load(args.version)
    version = args.version or registry.current()
    progress(f"reading `{args.data}` and `{args.labels}`")
    frame = read_metrics_file(args.data)
    labels = _read_labels(args.labels)
    if len(labels) != len(frame):
        raise InvalidDataError(f"{len(frame)} rows of data but {len(labels)} labels")
    progress(f"scoring {len(frame):,} rows")
    started = time.perf_counter()
    scores = -np.asarray(model.score_samples(frame), dtype=np.float64)
    score_ms = 1000.0 * (time.perf_counter() - started) / max(len(frame), 1) * 1000.0
    result: dict[str, Any] = {
        "version": version,
        "rows": len(frame),
        "anomalous_rows": int(labels.sum()),
        "score_ms_per_1000_rows": round(score_ms, 2),
    }
    if 0 < labels.sum() < len(labels):
        precision, recall, _ = precision_recall_curve(labels, scores)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        result.update(
            roc_auc=round(float(roc_auc_score(labels, scores)), 4),
            pr_auc=round(float(average_precision_score(labels, scores)), 4),
            best_f1=round(float(f1.max()), 4),
        )
    else:
        result.update(roc_auc=None, pr_auc=None, best_f1=None)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for name, value in result.items():
            print(f"{name:24s} {value}")
    return 0


def _guard(handler: Any) -> Any:
    """Turn errors into one line on stderr and the documented exit code."""

    def run(args: argparse.Namespace) -> int:
        command = f"aegis detectors {args.detectors_command}"
        try:
            return int(handler(args))
        except ModelIntegrityError as exc:
            print(f"{command}: error: {exc}", file=sys.stderr)
            return 1
        except AegisError as exc:
            print(f"{command}: error: {exc}", file=sys.stderr)
            return 2
        except MemoryError:
            print(f"{command}: error: out of memory", file=sys.stderr)
            return 2

    run.__doc__ = handler.__doc__
    return run


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``detectors train`` and ``detectors evaluate`` to the ``aegis`` subparsers.

    Returns:
        The ``detectors`` parser.
    """
    detectors = subparsers.add_parser("detectors", help="train and evaluate anomaly detectors")
    commands = detectors.add_subparsers(dest="detectors_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--key-env",
            default="AEGIS_MODEL_KEY",
            metavar="NAME",
            help="environment variable holding the signing key (default: AEGIS_MODEL_KEY)",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    train = commands.add_parser(
        "train",
        help="fit the default anomaly detector and register a signed model version",
        description="Fit the default AnomalyDetector on a metrics table (rows in time order, "
        "one numeric column per metric, optional timestamp column) and save it as the next "
        "signed version of the registry in --out, promoted unless --no-promote.",
    )
    train.add_argument("--data", required=True, metavar="FILE", help=".csv or .parquet")
    train.add_argument("--out", required=True, metavar="DIR", help="model registry folder")
    train.add_argument("--window", type=int, default=30, help="feature window in rows")
    train.add_argument("--no-promote", action="store_true", help="register without promoting")
    common(train)
    train.set_defaults(handler=_guard(run_train))

    evaluate = commands.add_parser(
        "evaluate",
        help="score labelled data with a registered model (verified before loading)",
        description="Verify the model's signature, load it, score --data and compare with "
        "--labels (one 0/1 per row: .txt, or .csv/.parquet with a `label` column). Prints "
        "ROC-AUC, PR-AUC and best point-wise F1. Exit 1 if the model is refused.",
    )
    evaluate.add_argument("--model", required=True, metavar="DIR", help="model registry folder")
    evaluate.add_argument("--version", help="version to load (default: the promoted one)")
    evaluate.add_argument("--data", required=True, metavar="FILE", help=".csv or .parquet")
    evaluate.add_argument("--labels", required=True, metavar="FILE", help="0/1 per row")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    common(evaluate)
    evaluate.set_defaults(handler=_guard(run_evaluate))
    return detectors  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``detectors ...`` on its own (``python -m aegis.detectors._cli train ...``)."""
    parser = argparse.ArgumentParser(prog="aegis")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
