"""Run the policy-engine benchmark: load, cross-check, then time every engine at every size.

For each size N the workload is generated once; then:

1. **load** — each engine times ``adapter.load(workload)`` in thread CPU time and in wall
   time (each engine first loads a tiny set once, so that one-time costs such as building a
   parser stay out of the figure) and records the growth of the process RSS (coarse;
   native engines included);
2. **cross-check** — each engine decides the *whole* request stream and every decision is
   compared with the workload's oracle; any mismatch aborts the run
   (:class:`DecisionMismatch`) before anything is timed. An engine whose cross-check would
   take longer than ``max_check_seconds`` (projected from its first 20 decisions) is
   skipped at that size, and the table says so;
3. **timing, interleaved** — once every size is loaded and checked, every engine at every
   size is timed round-robin, in rounds of at most about 50 ms per engine and at least
   :data:`MIN_ROUNDS` rounds each, so that a slow spell of a shared machine hits every
   engine and every size alike (a fast engine's samples are spread over the whole timing,
   not taken in one 2 ms stretch, and ratios across sizes are not ratios across phases).
   The order is shuffled every round (so that no engine always follows the same one: an
   engine after one that shares its code finds it warm), and each engine's turn starts with
   a few untimed decisions, which warm it again. Each decision is timed alone with two clocks: the
   thread's CPU time (``CLOCK_THREAD_CPUTIME_ID``: what the decision costs, unaffected by
   waiting for a CPU) and wall time; the clocks' own cost, calibrated, is subtracted.
   Median, p99 and decisions per second on one thread (``1 / mean``) are computed from CPU
   time; the wall median is reported beside them. Fast engines get ``max_samples``
   decisions (cycling over the stream), slow ones as many as fit in ``time_budget``
   seconds, at least ``min_samples``. The timed decisions are checked again;
4. **memory** — for loads under ``heap_limit_s``, a second load under ``tracemalloc`` gives
   the Python heap the engine keeps (Cedar, Rego and Oso allocate mostly outside Python).
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.policy.engines import ADAPTERS, Adapter
from benchmarks.policy.workload import Workload, expected_decision, generate

MIN_ROUNDS = 25
"""Each engine's samples are taken in at least this many interleaved rounds."""


class DecisionMismatch(RuntimeError):
    """An engine disagreed with the oracle: its numbers would be meaningless."""


@dataclass
class Measurement:
    """One engine at one size (times in seconds or microseconds as named)."""

    engine: str
    n_rules: int
    load_s: float | None = None
    load_wall_s: float | None = None
    rss_mb: float | None = None
    heap_mb: float | None = None
    checked: int = 0
    samples: int = 0
    median_us: float | None = None
    p99_us: float | None = None
    per_second: float | None = None
    wall_median_us: float | None = None
    first_pass_s: float | None = None
    """CPU time of the cross-check pass: the first decisions after the load, one per request
    of the stream (lazy work an engine defers from its load shows here)."""
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Live:
    """An engine loaded and checked, waiting to be timed."""

    adapter: Adapter
    result: Measurement
    prepared: list[Any]
    expected: Sequence[bool]
    target: int
    chunk: int
    rewarm: int
    """Untimed decisions at the start of each round: the engine's code and data are cold
    after the other engines' rounds, and that first-decision cost would otherwise land in
    the p99 once per round."""
    cpu: list[int] = field(default_factory=list)
    wall: list[int] = field(default_factory=list)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: no RSS figure
        return 0


def _clock_overheads() -> tuple[int, int]:
    """Median cost of the timing sequence itself, for (CPU, wall)."""
    wall_clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    cpu, wall = [], []
    for _ in range(20_000):
        w0 = wall_clock()
        c0 = cpu_clock()
        c1 = cpu_clock()
        w1 = wall_clock()
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
    return int(statistics.median(cpu)), int(statistics.median(wall))


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


def _load_and_check(
    adapter: Adapter,
    workload: Workload,
    expected: Sequence[bool],
    *,
    max_samples: int,
    min_samples: int,
    time_budget: float,
    max_check_seconds: float,
    log: Callable[[str], None],
) -> tuple[Measurement, _Live | None]:
    result = Measurement(adapter.name, workload.n_rules)
    adapter.before_load(workload)
    gc.collect()
    rss0 = _rss_bytes()
    t0, c0 = time.perf_counter(), time.thread_time()
    adapter.load(workload)
    result.load_s = time.thread_time() - c0
    result.load_wall_s = time.perf_counter() - t0
    result.engine = adapter.name  # an adapter may refine its name when it loads
    result.rss_mb = max(0, _rss_bytes() - rss0) / 2**20
    log(f"  {adapter.name}: loaded in {result.load_s:.3f} s CPU, {result.load_wall_s:.3f} s wall")
    prepared = [adapter.prepare(r) for r in workload.requests]

    started = time.thread_time()
    for i, (request, want) in enumerate(zip(prepared, expected, strict=True)):
        got = adapter.decide(request)
        if got is not want:
            raise DecisionMismatch(
                f"{adapter.name} at N={workload.n_rules}: request #{i} decided {got}, "
                f"expected {want}: {workload.requests[i]}"
            )
        result.checked = i + 1
        if i == 19:
            projected = (time.thread_time() - started) / 20 * len(prepared)
            if projected > max_check_seconds:
                result.note = (
                    f"skipped: whole-stream cross-check projected at {projected:,.0f} s CPU "
                    f"(limit {max_check_seconds:,.0f} s); the first 20 decisions agreed"
                )
                log(f"  {adapter.name}: {result.note}")
                adapter.close()
                return result, None
    result.first_pass_s = time.thread_time() - started
    log(
        f"  {adapter.name}: all {len(prepared)} decisions agree with the oracle "
        f"(first pass {result.first_pass_s:.3f} s CPU)"
    )
    # the cost of a decision now (after the pass: e.g. with a warm cache)
    started = time.thread_time()
    for request in prepared[:20]:
        adapter.decide(request)
    per_decision = max(1e-7, (time.thread_time() - started) / min(20, len(prepared)))
    if per_decision * max_samples <= time_budget:
        target = max_samples
    else:
        target = max(min_samples, min(max_samples, int(time_budget / per_decision)))
    chunk = max(1, min(-(-target // MIN_ROUNDS), int(0.05 / per_decision)))
    rewarm = max(1, min(20, int(0.001 / per_decision)))
    return result, _Live(adapter, result, prepared, expected, target, chunk, rewarm)


def _time_interleaved(live: list[_Live], log: Callable[[str], None]) -> None:
    warmed_at: dict[int, float] = {}
    for item in live:
        item.adapter.warm(item.prepared)
        warmed_at[id(item)] = time.monotonic()
    cpu_overhead, wall_overhead = _clock_overheads()
    wall_clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    gc.collect()
    pending = list(live)
    shuffle = random.Random(0).shuffle  # seeded: the same order in every run
    while pending:
        # a new order every round: no engine always follows the same one (an engine that
        # follows one sharing its code finds it warm; one that follows a native peer, cold)
        order = list(pending)
        shuffle(order)
        for item in order:
            decide = item.adapter.decide
            every = item.adapter.warm_every
            if every is not None and time.monotonic() - warmed_at[id(item)] > every:
                item.adapter.warm(item.prepared)
                warmed_at[id(item)] = time.monotonic()
            n = len(item.prepared)
            start = len(item.cpu)
            for i in range(start - item.rewarm, start):  # untimed: warm the engine again
                decide(item.prepared[i % n])
            for i in range(start, min(item.target, start + item.chunk)):
                request = item.prepared[i % n]
                w0 = wall_clock()
                c0 = cpu_clock()
                got = decide(request)
                c1 = cpu_clock()
                w1 = wall_clock()
                if got is not item.expected[i % n]:
                    raise DecisionMismatch(
                        f"{item.adapter.name} at N={item.result.n_rules}: timed #{i}"
                    )
                item.cpu.append(max(0, c1 - c0 - cpu_overhead))
                item.wall.append(max(0, w1 - w0 - wall_overhead))
        pending = [item for item in pending if len(item.cpu) < item.target]
    for item in live:
        cpu = sorted(item.cpu)
        wall = sorted(item.wall)
        result = item.result
        result.samples = len(cpu)
        result.median_us = _percentile(cpu, 0.5) / 1000
        result.p99_us = _percentile(cpu, 0.99) / 1000
        result.wall_median_us = _percentile(wall, 0.5) / 1000
        mean = sum(cpu) / len(cpu)
        result.per_second = 1e9 / mean if mean > 0 else None
        remark = item.adapter.timing_note()
        if remark:
            result.note = f"{result.note}; {remark}" if result.note else remark
        log(
            f"  {result.engine} at N={result.n_rules:,}: median {result.median_us:.1f} us CPU "
            f"({result.wall_median_us:.1f} us wall), p99 {result.p99_us:.1f} us, "
            f"{result.samples} decisions"
        )


def _heap(adapter: Adapter, workload: Workload) -> float:
    adapter.close()
    adapter.before_load(workload)
    gc.collect()
    tracemalloc.start()
    try:
        adapter.load(workload)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] / 2**20
    finally:
        tracemalloc.stop()
        adapter.close()


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
    results: list[Measurement] = []
    warmed: set[object] = set()
    live: list[tuple[_Live, Workload]] = []
    for n in sizes:
        log(f"N = {n:,} rules: generating the workload ({n_requests} requests)")
        workload = generate(n, n_requests, seed=seed)
        expected = [expected_decision(workload, r) for r in workload.requests]
        allowed = sum(expected)
        log(f"  oracle: {allowed} ALLOW / {len(expected) - allowed} DENY")
        for make in adapters:
            adapter = make()
            try:
                if make not in warmed:  # one-time costs (parser building) stay out of load
                    warmed.add(make)
                    adapter.load(generate(10, 1, seed=seed + 1))
                    adapter.close()
                result, item = _load_and_check(
                    adapter,
                    workload,
                    expected,
                    max_samples=max_samples,
                    min_samples=min_samples,
                    time_budget=time_budget,
                    max_check_seconds=max_check_seconds,
                    log=log,
                )
            except ImportError as exc:
                log(f"  {adapter.name}: not installed ({exc}); skipped")
                results.append(Measurement(adapter.name, n, note=f"not installed: {exc}"))
                continue
            results.append(result)
            if item is not None:
                live.append((item, workload))
    # every engine at every size is timed in the same rounds: a slow spell of a shared
    # machine then hits every size alike, and ratios across sizes stay within one phase
    log("timing every engine at every size, interleaved")
    _time_interleaved([item for item, _ in live], log)
    for item, workload in live:
        load_s = item.result.load_s or 0.0
        if load_s <= heap_limit_s:
            item.result.heap_mb = _heap(item.adapter, workload)
        item.adapter.close()
    return results
