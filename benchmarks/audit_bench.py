"""Audit sink throughput: sync/async x SQLite/PostgreSQL/JSON-lines x 1 and 32 callers.

``python -m benchmarks audit [--seconds 3] [--threads 1,32] [--modes sync,async]
[--backends sqlite,sqlite-normal,postgresql,jsonl] [--out benchmarks/results]``

Each caller builds a decision record (with the default masking) and appends it alone, the
way ``PolicyEngine(audit=...)`` does per decision; it counts as done when ``append``
returns. In ``async`` mode the clock stops only after ``close()`` has flushed every record,
so the figure is what reached the store, not what was queued. Every run ends by verifying
the chain it wrote. PostgreSQL: ``AEGIS_BENCH_DATABASE_URL`` (default
``AEGIS_TEST_DATABASE_URL``, then ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
in a throw-away schema.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aegis.engine.audit import decision_record, open_sink, verify_url

RESULTS = Path(__file__).resolve().parent / "results"

DECISION = {
    "decision": "ALLOW",
    "allowed": True,
    "reason": "sre may restart pods in prod during the day",
    "allow": ["sre-restart-prod"],
    "deny": [],
    "errors": [],
    "version": "ab" * 32,
}


def request(i: int) -> dict[str, Any]:
    return {
        "principal": {"id": f"user-{i % 50}", "roles": ["sre", "oncall"], "token": "secret"},
        "action": "restart_pod",
        "resource": {
            "kind": "pod",
            "namespace": f"ns-{i % 50}",
            "name": f"api-{i}",
            "labels": {"app.kubernetes.io/name": "api"},
        },
        "context": {"time": "2026-11-26T10:15:00Z", "source": "detector"},
    }


@dataclass
class Row:
    backend: str
    mode: str
    threads: int
    records: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    verified: bool


def _pg_url() -> str:
    return (
        os.environ.get("AEGIS_BENCH_DATABASE_URL")
        or os.environ.get("AEGIS_TEST_DATABASE_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@contextmanager
def _store(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh store URL for one run."""
    name = uuid.uuid4().hex[:10]
    if backend.startswith("sqlite"):
        yield f"sqlite:///{workdir / f'{name}.db'}"
    elif backend == "jsonl":
        yield f"jsonl:{workdir / f'{name}.jsonl'}"
    else:
        import sqlalchemy as sa

        base = _pg_url()
        schema = f"bench_{name}"
        admin = sa.create_engine(base)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in base else "?"
        try:
            yield f"{base}{sep}options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def run_one(backend: str, mode: str, threads: int, seconds: float, workdir: Path) -> Row:
    with _store(backend, workdir) as url:
        options: dict[str, Any] = {}
        if backend == "sqlite-normal":  # WAL + synchronous=NORMAL: survives kill -9, not power loss
            options["sqlite_synchronous"] = "NORMAL"
        if mode == "async":
            options |= {
                "spill_path": workdir / f"spill-{uuid.uuid4().hex[:8]}.jsonl",
                "put_timeout": 60.0,
                "queue_size": 10_000,
            }
        sink = open_sink(url, mode, **options)  # type: ignore[arg-type]
        latencies: list[list[float]] = [[] for _ in range(threads)]
        counts = [0] * threads
        start = threading.Barrier(threads + 1)
        stop_at = [0.0]

        def caller(k: int) -> None:
            lat = latencies[k]
            i = k * 10_000_000
            start.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                sink.append([decision_record(DECISION, request(i))])
                lat.append(time.perf_counter() - t0)
                i += 1
            counts[k] = len(lat)

        workers = [threading.Thread(target=caller, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        t0 = time.perf_counter()
        stop_at[0] = t0 + seconds
        start.wait()
        for w in workers:
            w.join()
        sink.close()  # async: the clock includes flushing the queue
        elapsed = time.perf_counter() - t0
        total = sum(counts)
        results = verify_url(url)
        verified = (
            all(r.ok for r in results.values())
            and sum(r.checked for r in results.values()) == total
        )
        flat = sorted(x for lat in latencies for x in lat)
        p99 = flat[min(len(flat) - 1, int(len(flat) * 0.99))] if flat else 0.0
        return Row(
            backend=backend,
            mode=mode,
            threads=threads,
            records=total,
            seconds=round(elapsed, 3),
            per_second=round(total / elapsed, 1),
            p50_ms=round(statistics.median(flat) * 1000, 3) if flat else 0.0,
            p99_ms=round(p99 * 1000, 3),
            verified=verified,
        )


def machine() -> dict[str, str]:
    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(_pg_url())
        with engine.connect() as conn:
            info["postgresql"] = str(conn.execute(sa.text("SHOW server_version")).scalar())
        engine.dispose()
    except Exception as exc:  # the report says why PostgreSQL rows are missing
        info["postgresql"] = f"unavailable ({type(exc).__name__})"
    return info


def markdown(rows: list[Row], info: dict[str, str], seconds: float) -> str:
    out = [
        "# Audit sink throughput",
        "",
        "`python -m benchmarks audit` (`benchmarks/audit_bench.py`). Each caller builds one "
        "decision record (default masking) and appends it alone; `sync` counts a record when "
        "`append` returned (durable: committed and fsynced), `async` stops the clock after "
        "`close()` flushed the queue. Group commit lets concurrent `sync` callers share one "
        "transaction. Every run is verified afterwards (`verified`).",
        "",
        f"Run of {seconds:g} s per row. Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| backend | mode | callers | records | records/s | append p50 ms | append p99 ms "
        "| verified |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.backend} | {r.mode} | {r.threads} | {r.records:,} | {r.per_second:,.0f} | "
            f"{r.p50_ms:.3f} | {r.p99_ms:.3f} | {'yes' if r.verified else 'NO'} |"
        )
    goal = [r for r in rows if (r.backend, r.mode, r.threads) == ("sqlite", "sync", 32)]
    if goal:
        ok = goal[0].per_second >= 5_000
        out += [
            "",
            f"Goal (issue #3): `sync` on SQLite with 32 concurrent callers >= 5,000 decisions/s: "
            f"**{goal[0].per_second:,.0f}/s — {'met' if ok else 'NOT met'}**.",
        ]
    out += [
        "",
        "`sqlite` runs with `journal_mode=WAL`, `synchronous=FULL` (the default: each commit "
        "fsyncs the WAL, durable on power loss); `sqlite-normal` with `synchronous=NORMAL` "
        "(no fsync per commit: survives `kill -9`, not a power loss or OS crash). "
        "PostgreSQL runs with its defaults (`synchronous_commit=on`). JSON-lines fsyncs each "
        "batch. The machine is shared (2 cores for several concurrent jobs): compare rows of "
        "one run, not runs.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks audit")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", default="1,32")
    parser.add_argument("--backends", default="sqlite,sqlite-normal,postgresql,jsonl")
    parser.add_argument("--modes", default="sync,async")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    info = machine()
    rows: list[Row] = []
    backends = args.backends.split(",")
    if "postgresql" in backends and info["postgresql"].startswith("unavailable"):
        print(f"skipping PostgreSQL: {info['postgresql']}")
        backends.remove("postgresql")
    runs: list[tuple[str, str, int]] = [
        (b, m, int(t))
        for b in backends
        for m in args.modes.split(",")
        for t in args.threads.split(",")
    ]
    with tempfile.TemporaryDirectory(prefix="aegis-audit-bench-") as tmp:
        for backend, mode, threads in runs:
            row = run_one(backend, mode, threads, args.seconds, Path(tmp))
            print(
                f"{backend:10} {mode:5} x{threads:<3} {row.per_second:>10,.0f} rec/s "
                f"p50 {row.p50_ms:.3f} ms p99 {row.p99_ms:.3f} ms verified={row.verified}",
                flush=True,
            )
            rows.append(row)
    page = markdown(rows, info, args.seconds)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "audit.md").write_text(page, encoding="utf-8")
        (args.out / "audit.json").write_text(
            json.dumps({"machine": info, "rows": [asdict(r) for r in rows]}, indent=2) + "\n",
            encoding="utf-8",
        )
        print(f"wrote {args.out / 'audit.md'}")
    return 0 if all(r.verified for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
