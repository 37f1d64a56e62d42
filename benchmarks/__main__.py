"""``python -m benchmarks [policy|audit|detection|all] [options]`` (``make bench``: policy).

``policy`` options: ``--sizes 10,100,1000,10000``, ``--requests`` (stream length per N),
``--engines`` (substrings of engine names), ``--max-samples``, ``--budget`` (seconds of timing
per slow engine and N), ``--max-check-seconds`` (skip an engine whose whole-stream
cross-check would take longer), ``--out`` (default ``benchmarks/results``), ``--quick``
(sizes 10 and 100, 200 requests: a smoke run that writes nothing unless ``--out`` is given).
The other suites are delegated to their own modules with the remaining arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def policy(argv: list[str]) -> int:
    from benchmarks.policy import engines, report, runner

    parser = argparse.ArgumentParser(prog="python -m benchmarks policy")
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--engines", nargs="*", help="substrings of engine names (default: all)")
    parser.add_argument("--max-samples", type=int, default=2_000)
    parser.add_argument("--min-samples", type=int, default=100)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--max-check-seconds", type=float, default=600.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    n_requests = args.requests
    if args.quick:
        sizes, n_requests = [10, 100], min(n_requests, 200)
    out = args.out or (None if args.quick else RESULTS)
    chosen = [
        a for a in engines.ADAPTERS
        if not args.engines or any(s.lower() in a.name.lower() for s in args.engines)
    ]  # fmt: skip
    info = report.machine()
    settings = {
        "sizes": sizes,
        "n_requests": n_requests,
        "max_samples": args.max_samples,
        "min_samples": args.min_samples,
        "time_budget": args.budget,
        "max_check_seconds": args.max_check_seconds,
        "heap_limit_s": 5.0,
    }
    try:
        results = runner.run(
            sizes,
            chosen,
            n_requests=n_requests,
            max_samples=args.max_samples,
            min_samples=args.min_samples,
            time_budget=args.budget,
            max_check_seconds=args.max_check_seconds,
            heap_limit_s=5.0,
        )
    except runner.DecisionMismatch as exc:
        print(f"\nABORTED: engines disagree, no figures written:\n  {exc}", file=sys.stderr)
        return 2
    page = report.markdown(results, info, settings)
    if out is not None:
        for path in report.write(results, info, settings, out):
            print(f"wrote {path}")
    print(page)
    return 0


def delegate(module: str, argv: list[str]) -> int:
    try:
        target = importlib.import_module(module)
    except ImportError as exc:
        print(f"suite `{module}` is not available: {exc}", file=sys.stderr)
        return 1
    main = getattr(target, "main", None)
    if main is None:
        print(f"suite `{module}` has no main()", file=sys.stderr)
        return 1
    return int(main(argv) or 0)


def audit(argv: list[str]) -> int:
    return delegate("benchmarks.audit_bench", argv)


def detection(argv: list[str]) -> int:
    return delegate("benchmarks.detection.__main__", argv)


SUITES: dict[str, Callable[[list[str]], int]] = {
    "policy": policy,
    "audit": audit,
    "detection": detection,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = argv.pop(0) if argv and argv[0] in (*SUITES, "all") else "policy"
    if suite == "all":
        return max(SUITES[name](list(argv) if name == "policy" else []) for name in SUITES)
    return SUITES[suite](argv)


if __name__ == "__main__":
    raise SystemExit(main())
