"""Synthetic service metrics with labelled failures, to train and demo the classifier.

:func:`generate_scenarios` produces one continuous, time-ordered timeline (one row per
``step_seconds``) of eight service metrics with a daily cycle and noise, in which incidents of
every failure type start at random times with a realistic onset and end with a recovery:

======================= =====================================================================
failure type            onset
======================= =====================================================================
``service_down``        abrupt: ``up`` drops to 0, traffic and CPU collapse, errors saturate
``high_latency``        p99 latency ramps up over 5-15 minutes, errors creep up
``memory_leak``         memory grows linearly (and faster) towards the limit; latency follows
``connection_timeout``  connection errors burst, open connections pile up, latency pins near
                        the client timeout
``cpu_saturation``      CPU climbs to 90-100% within minutes; latency rises with it
======================= =====================================================================

Labels are ``normal`` outside incidents and the failure type from onset to recovery.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aegis.detectors.base import FAILURE_TYPES
from aegis.errors import ConfigurationError

__all__ = ["SCENARIO_METRICS", "generate_scenarios"]

SCENARIO_METRICS: tuple[str, ...] = (
    "cpu_usage",
    "memory_usage",
    "latency_p99_ms",
    "error_rate",
    "request_rate",
    "up",
    "connection_errors",
    "active_connections",
)
"""The columns :func:`generate_scenarios` returns."""

_FAILURES = tuple(f for f in FAILURE_TYPES if f != "normal")
_DAY = 86_400.0


def generate_scenarios(
    n_incidents: int = 40,
    *,
    seed: int | None = 0,
    step_seconds: int = 60,
    failure_types: tuple[str, ...] = _FAILURES,
    start: str = "2026-01-01",
    normal_rows: int = 2880,
) -> tuple[pd.DataFrame, pd.Series]:
    """A timeline of normal operation with ``n_incidents`` labelled incidents.

    Incident types cycle through ``failure_types`` (shuffled), each lasting 30-90 rows and
    separated by 120-300 rows of normal operation.

    Args:
        n_incidents: how many incidents to inject (0 gives a purely normal timeline of
            ``normal_rows`` rows).
        seed: random seed (``None``: nondeterministic).
        step_seconds: seconds between rows.
        failure_types: which failure types to inject.
        start: timestamp of the first row.
        normal_rows: length of a timeline without incidents (default: two days of minutes,
            so a detector trained on it has seen the whole daily cycle).

    Returns:
        ``(metrics, labels)``: a DataFrame indexed by timestamp with :data:`SCENARIO_METRICS`
        columns, and a Series of failure-type labels on the same index.

    Raises:
        ConfigurationError: an unknown failure type or a negative count.
    """
    unknown = [f for f in failure_types if f not in _FAILURES]
    if unknown or not failure_types or n_incidents < 0 or normal_rows < 1:
        raise ConfigurationError(
            f"failure types must be a non-empty subset of {', '.join(_FAILURES)} "
            "and the incident count non-negative"
        )
    rng = np.random.default_rng(seed)
    kinds = [failure_types[i % len(failure_types)] for i in range(n_incidents)]
    rng.shuffle(kinds)
    plan: list[tuple[str, int]] = []
    for kind in kinds:
        plan.append(("normal", int(rng.integers(120, 300))))
        plan.append((kind, int(rng.integers(30, 90))))
    plan.append(("normal", int(normal_rows) if n_incidents == 0 else int(rng.integers(120, 300))))
    n = sum(length for _, length in plan)

    t = np.arange(n) * float(step_seconds)
    phase = rng.uniform(0, _DAY)
    daily = 0.5 * (1 + np.sin(2 * np.pi * (t + phase) / _DAY))  # 0..1
    req = 200.0 * (0.4 + 0.6 * daily) * (1 + 0.05 * rng.standard_normal(n))
    cpu = 0.15 + 0.45 * req / 200.0 + 0.03 * rng.standard_normal(n)
    mem = 0.45 + 0.02 * daily + 0.01 * rng.standard_normal(n)
    lat = 120.0 + 80.0 * (cpu - 0.15) + 10.0 * rng.standard_normal(n)
    err = np.abs(0.002 + 0.002 * rng.standard_normal(n))
    up = np.ones(n)
    conn_err = rng.poisson(0.5, n).astype(np.float64)
    conns = 2.0 * req * (1 + 0.05 * rng.standard_normal(n))
    labels = np.empty(n, dtype=object)

    pos = 0
    for kind, length in plan:
        sl = slice(pos, pos + length)
        labels[sl] = kind
        k = np.arange(length, dtype=np.float64)
        ramp_len = float(rng.integers(5, 16))
        ramp = np.minimum(k / ramp_len, 1.0)
        if kind == "service_down":
            up[sl] = 0.0
            req[sl] *= 0.02
            cpu[sl] = 0.02 + 0.01 * rng.random(length)
            err[sl] = 0.95 + 0.05 * rng.random(length)
            conns[sl] = rng.poisson(1.0, length)
            lat[sl] = 0.0
        elif kind == "high_latency":
            lat[sl] *= 1 + rng.uniform(3, 8) * ramp
            err[sl] += 0.02 * ramp
            conns[sl] *= 1 + 0.5 * ramp
        elif kind == "memory_leak":
            target = rng.uniform(0.9, 0.99)
            growth = (k / max(length - 1, 1)) ** 1.5
            mem[sl] = mem[sl] + (target - mem[sl]) * growth
            lat[sl] *= 1 + 1.5 * np.maximum(growth - 0.6, 0.0)
        elif kind == "connection_timeout":
            conn_err[sl] += rng.uniform(20, 80) * ramp * (1 + 0.2 * rng.standard_normal(length))
            conns[sl] *= 1 + 2.0 * ramp
            lat[sl] = np.maximum(lat[sl], 5000.0 * ramp * (0.9 + 0.1 * rng.random(length)))
            err[sl] += 0.15 * ramp
            cpu[sl] *= 1 - 0.3 * ramp
        elif kind == "cpu_saturation":
            cpu[sl] = cpu[sl] + (rng.uniform(0.92, 1.0) - cpu[sl]) * ramp
            lat[sl] *= 1 + 2.5 * ramp
            err[sl] += 0.01 * ramp
        pos += length

    frame = pd.DataFrame(
        {
            "cpu_usage": np.clip(cpu, 0, 1),
            "memory_usage": np.clip(mem, 0, 1),
            "latency_p99_ms": np.maximum(lat, 0),
            "error_rate": np.clip(err, 0, 1),
            "request_rate": np.maximum(req, 0),
            "up": up,
            "connection_errors": np.maximum(conn_err, 0),
            "active_connections": np.maximum(conns, 0),
        },
        index=pd.date_range(start, periods=n, freq=f"{int(step_seconds)}s", tz="UTC"),
    )
    return frame, pd.Series(labels, index=frame.index, name="failure_type")
