"""Run every method on every SMD machine and write the table, JSON and plot."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from benchmarks.detection.methods import METHODS, Method
from benchmarks.detection.smd import Machine, load_machine, machines

RESULTS = Path(__file__).resolve().parents[1] / "results"


def best_f1(y: np.ndarray, s: np.ndarray) -> float:
    """Best point-wise F1 over all thresholds (never point-adjusted)."""
    p, r, _ = precision_recall_curve(y, s)
    return float(np.max(2 * p * r / np.maximum(p + r, 1e-12)))


def hit_rate(
    contrib: np.ndarray | None, segments: Sequence[tuple[int, int, set[int]]], top: int = 3
) -> float | None:
    """Share of expert-labelled segments whose top-``top`` metrics (mean contribution over the
    segment's rows) include at least one metric the experts blamed."""
    if contrib is None or not segments:
        return None
    hits = 0
    for start, end, blamed in segments:
        mean = contrib[start : end + 1].mean(axis=0)
        best = set(np.argsort(-mean, kind="stable")[:top].tolist())
        hits += bool(best & blamed)
    return hits / len(segments)


def evaluate(method: Method, m: Machine) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    scorer = method(m.train)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    scores, contrib = scorer(m.test)
    score_s, score_cpu = time.perf_counter() - t0, time.process_time() - c0
    if contrib is None and hasattr(scorer, "contributions"):
        contrib = scorer.contributions(m.test)
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=float(np.nanmin(scores)))
    y = m.labels
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "best_f1": best_f1(y, scores),
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu,
        "score_ms_per_1000": 1000.0 * score_s * 1000.0 / len(m.test),
        "score_cpu_ms_per_1000": 1000.0 * score_cpu * 1000.0 / len(m.test),
        "hit_rate_at_3": hit_rate(contrib, m.segments),
        "finite": bool(np.isfinite(scores).all()),
    }


def run(
    names: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    rows: int | None = None,
    root: Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``results[method][machine] = metrics``."""
    names = list(names or machines(root))
    chosen = {k: METHODS[k] for k in (methods or METHODS)}
    # Warm up: the first call of a method pays for imports (and JIT compilation in PyOD);
    # that is not fit time, and it would otherwise be charged to the first machine only.
    rng = np.random.default_rng(0)
    warm = rng.normal(size=(300, 5))
    for method in chosen.values():
        method(warm)(warm)
    results: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in chosen}
    for name in names:
        m = load_machine(name, root, rows)
        for label, method in chosen.items():
            r = evaluate(method, m)
            results[label][name] = r
            if progress:
                print(
                    f"{name:12s} {label:18s} pr_auc={r['pr_auc']:.3f} roc_auc={r['roc_auc']:.3f} "
                    f"f1={r['best_f1']:.3f} fit={r['fit_s']:.2f}s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def _mean(rows: dict[str, dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows.values() if r[key] is not None]
    return float(np.mean(vals)) if vals else None


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sklearn

    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}; "
        f"OMP/OPENBLAS threads = {os.environ.get('OMP_NUM_THREADS', 'default')}"
    )


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    def fmt(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    names = sorted(next(iter(results.values())))
    lines = [
        "# Detection quality on SMD",
        "",
        f"Machine: {machine_description()}.",
        "",
        "Every method is fitted on the train split and scores the whole test split, in one run",
        "(`.venv/bin/python -m benchmarks.detection`). Point-wise metrics only: PR-AUC is",
        "average precision, F1 is the best point-wise F1 over thresholds. Hit@3 is the share of",
        "expert-labelled segments whose top-3 metrics (mean contribution over the segment)",
        "include a metric the experts blamed (`interpretation_label`); n/a for methods that do",
        "not explain. Score time is for the whole test split, per 1,000 rows. Times are wall",
        "clock and, in brackets, CPU time of the process: the reference machine is shared, so",
        "wall time includes waiting for the CPU.",
        "",
        "## Mean over machines",
        "",
        "| method | PR-AUC | ROC-AUC | best F1 | fit s, mean / max [CPU] "
        "| score ms / 1000 rows [CPU] | Hit@3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        fits = [r["fit_s"] for r in rows.values()]
        lines.append(
            f"| {label} | {fmt(_mean(rows, 'pr_auc'))} | {fmt(_mean(rows, 'roc_auc'))} | "
            f"{fmt(_mean(rows, 'best_f1'))} | {np.mean(fits):.2f} / {np.max(fits):.2f} "
            f"[{fmt(_mean(rows, 'fit_cpu_s'), '.2f')}] | "
            f"{fmt(_mean(rows, 'score_ms_per_1000'), '.1f')} "
            f"[{fmt(_mean(rows, 'score_cpu_ms_per_1000'), '.1f')}] | "
            f"{fmt(_mean(rows, 'hit_rate_at_3'), '.2f')} |"
        )
    for metric, title in (
        ("pr_auc", "PR-AUC"),
        ("roc_auc", "ROC-AUC"),
        ("best_f1", "best F1"),
        ("hit_rate_at_3", "Hit@3"),
    ):
        lines += [
            "",
            f"## {title} per machine",
            "",
            "| method | " + " | ".join(names) + " | mean |",
            "|---|" + "---|" * (len(names) + 1),
        ]
        for label, rows in results.items():
            cells = [
                fmt(rows[n][metric], ".3f" if metric != "hit_rate_at_3" else ".2f") for n in names
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {fmt(_mean(rows, metric))} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(next(iter(results.values())))
    labels = list(results)
    x = np.arange(len(names) + 1)
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for i, label in enumerate(labels):
        vals = [results[label][n]["pr_auc"] for n in names] + [_mean(results[label], "pr_auc")]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label)
    ax.set_xticks(x, [*names, "mean"], rotation=20)
    ax.set_ylabel("PR-AUC (point-wise)")
    ax.set_title("SMD: PR-AUC per machine, fitted on train, scored on test")
    ax.legend(fontsize=8, ncols=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(
    results: dict[str, dict[str, dict[str, Any]]], out: Path = RESULTS, stem: str = "detection"
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(markdown(results))
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    plot(results, out / f"{stem}.png")
