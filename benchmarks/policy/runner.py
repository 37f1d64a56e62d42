"""Run the policy-engine benchmark: load, cross-check, then time every engine at every size.

For each size N the workload is generated once; then, for each engine:

1. **load** — time ``adapter.load(workload)`` (each engine first loads a tiny set once, so
   that one-time costs such as building a parser stay out of the figure); the RSS growth is
   recorded, and for loads under a few seconds a second load under ``tracemalloc`` gives
   the Python heap it keeps (native engines — Cedar, Rego, Oso — allocate outside Python and
   show little there);
2. **cross-check** — decide the *whole* request stream and compare every decision with the
   workload's oracle; any mismatch aborts the run (:class:`DecisionMismatch`) before
   anything is timed. An engine whose cross-check would take longer than
   ``max_check_seconds`` (projected from its first decisions) is skipped at that size, and
   the table says so;
3. **timing** — each decision timed alone with ``perf_counter_ns`` (the timer's own cost,
   calibrated, is subtracted): median, p99 and decisions per second on one thread
   (``1 / mean``). Fast engines are timed on ``max_samples`` decisions (cycling over the
   stream); slow ones on as many as fit in ``time_budget`` seconds, at least
   ``min_samples``. The timed decisions are checked again.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from benchmarks.policy.engines import ADAPTERS, Adapter
from benchmarks.policy.workload import Workload, expected_decision, generate


class DecisionMismatch(RuntimeError):
    """An engine disagreed with the oracle: its numbers would be meaningless."""


@dataclass
class Measurement:
    """One engine at one size (times in seconds or microseconds as named)."""

    engine: str
    n_rules: int
    load_s: float | None = None
    rss_mb: float | None = None
    heap_mb: float | None = None
    checked: int = 0
    samples: int = 0
    median_us: float | None = None
    p99_us: float | None = None
    per_second: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: no RSS figure
        return 0


def _timer_overhead_ns() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20_000):
        t0 = clock()
        samples.append(clock() - t0)
    return int(statistics.median(samples))


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def measure(
    adapter: Adapter,
    workload: Workload,
    expected: Sequence[bool],
    *,
    max_samples: int,
    min_samples: int,
    time_budget: float,
    max_check_seconds: float,
    heap_limit_s: float,
    log: Callable[[str], None],
) -> Measurement:
    """Load, cross-check and time one adapter on one workload (see the module docstring).

    Raises:
        DecisionMismatch: a decision differs from the oracle.
    """
    result = Measurement(adapter.name, workload.n_rules)
    gc.collect()
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    adapter.load(workload)
    result.load_s = time.perf_counter() - t0
    result.engine = adapter.name
    result.rss_mb = max(0, _rss_bytes() - rss0) / 2**20
    log(f"  {adapter.name}: loaded in {result.load_s:.3f} s")

    prepared = [adapter.prepare(r) for r in workload.requests]

    # ---- cross-check the whole stream before any timing
    started = time.perf_counter()
    for i, (request, want) in enumerate(zip(prepared, expected, strict=True)):
        got = adapter.decide(request)
        if got is not want:
            raise DecisionMismatch(
                f"{adapter.name} at N={workload.n_rules}: request #{i} decided {got}, "
                f"expected {want}: {workload.requests[i]}"
            )
        result.checked = i + 1
        if i == 19:
            projected = (time.perf_counter() - started) / 20 * len(prepared)
            if projected > max_check_seconds:
                result.note = (
                    f"skipped: cross-check projected at {projected:,.0f} s "
                    f"(> {max_check_seconds:,.0f} s); first 20 decisions agreed"
                )
                log(f"  {adapter.name}: {result.note}")
                adapter.close()
                return result
    log(f"  {adapter.name}: {len(prepared)} decisions agree with the oracle")
    # estimate the cost of a decision now (after the pass, e.g. with a warm cache)
    started = time.perf_counter()
    for request in prepared[:20]:
        adapter.decide(request)
    per_decision = (time.perf_counter() - started) / min(20, len(prepared))

    # ---- timing
    if per_decision * max_samples <= time_budget:
        n = max_samples
    else:
        n = max(min_samples, min(max_samples, int(time_budget / per_decision)))
    overhead = _timer_overhead_ns()
    clock = time.perf_counter_ns
    decide = adapter.decide
    latencies: list[int] = []
    gc.collect()
    for i in range(n):
        request = prepared[i % len(prepared)]
        t0 = clock()
        got = decide(request)
        t1 = clock()
        if got is not expected[i % len(prepared)]:
            raise DecisionMismatch(f"{adapter.name} at N={workload.n_rules}: timed #{i} differs")
        latencies.append(max(0, t1 - t0 - overhead))
    latencies.sort()
    result.samples = n
    result.median_us = _percentile(latencies, 0.5) / 1000
    result.p99_us = _percentile(latencies, 0.99) / 1000
    mean = sum(latencies) / n
    result.per_second = 1e9 / mean if mean > 0 else None

    # ---- Python heap kept by a fresh load (tracemalloc slows loading: only for quick loads)
    if result.load_s <= heap_limit_s:
        adapter.close()
        gc.collect()
        tracemalloc.start()
        try:
            adapter.load(workload)
            gc.collect()
            result.heap_mb = tracemalloc.get_traced_memory()[0] / 2**20
        finally:
            tracemalloc.stop()
    adapter.close()
    log(
        f"  {adapter.name}: median {result.median_us:.1f} us, p99 {result.p99_us:.1f} us "
        f"over {n} decisions"
    )
    return result


def run(
    sizes: Iterable[int] = (10, 100, 1_000, 10_000),
    adapters: Sequence[Callable[[], Adapter]] = ADAPTERS,
    *,
    n_requests: int = 1_000,
    max_samples: int = 2_000,
    min_samples: int = 100,
    time_budget: float = 5.0,
    max_check_seconds: float = 600.0,
    heap_limit_s: float = 5.0,
    seed: int = 7,
    log: Callable[[str], None] = print,
) -> list[Measurement]:
    """Run every adapter at every size, in one process; return the measurements.

    Raises:
        DecisionMismatch: an engine disagreed with the oracle (nothing is reported then).
    """
    results = []
    warmed: set[object] = set()
    for n in sizes:
        log(f"N = {n:,} rules: generating the workload ({n_requests} requests)")
        workload = generate(n, n_requests, seed=seed)
        expected = [expected_decision(workload, r) for r in workload.requests]
        allowed = sum(expected)
        log(f"  oracle: {allowed} ALLOW / {len(expected) - allowed} DENY")
        for make in adapters:
            adapter = make()
            if make not in warmed:  # one-time costs (grammar, JIT-like caches) stay out of load
                warmed.add(make)
                try:
                    adapter.load(generate(10, 1, seed=seed + 1))
                    adapter.close()
                except ImportError:
                    pass
            try:
                results.append(
                    measure(
                        adapter,
                        workload,
                        expected,
                        max_samples=max_samples,
                        min_samples=min_samples,
                        time_budget=time_budget,
                        max_check_seconds=max_check_seconds,
                        heap_limit_s=heap_limit_s,
                        log=log,
                    )
                )
            except ImportError as exc:
                log(f"  {adapter.name}: not installed ({exc}); skipped")
                results.append(Measurement(adapter.name, n, note=f"not installed: {exc}"))
    return results
