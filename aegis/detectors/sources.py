"""Where metrics come from: Prometheus, CSV/Parquet files, memory.

Every source returns the same shape: a pandas DataFrame indexed by UTC timestamps in time
order, one numeric column per metric, missing samples as NaN. That is what
:class:`~aegis.detectors.AnomalyDetector` and :class:`~aegis.detectors.MetricsDetector` take.

:class:`PrometheusSource` runs one ``query_range`` per named PromQL query over the HTTP API
and aligns the results on the common ``start + k * step`` grid (Prometheus evaluates range
queries exactly on that grid), so several queries become one multivariate frame. A query that
returns several series yields one column per series, named ``name{label="value",...}``.
It uses only the standard library's HTTP client.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from aegis.detectors.errors import InvalidDataError, MetricSourceError

__all__ = [
    "TIMESTAMP_COLUMNS",
    "InMemorySource",
    "MetricSource",
    "PrometheusSource",
    "read_metrics_file",
]

TIMESTAMP_COLUMNS: tuple[str, ...] = ("timestamp", "time", "ts", "datetime")
"""Column names :func:`read_metrics_file` treats as the time axis."""


@runtime_checkable
class MetricSource(Protocol):
    """A source of aligned multivariate metrics.

    ``fetch`` returns a DataFrame indexed by UTC timestamps (ascending), one float column per
    metric, NaN for missing samples. It raises
    :class:`~aegis.detectors.MetricSourceError` when the source cannot be read. Sources hold
    no per-call state and may be shared between threads.
    """

    def fetch(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """Metrics between ``start`` and ``end`` (inclusive; ``None``: unbounded or default)."""


def _to_datetime(value: datetime | float | str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    parsed = pd.Timestamp(value)
    result: datetime = (parsed if parsed.tzinfo else parsed.tz_localize("UTC")).to_pydatetime()
    return result


def _parse_step(step: str | float | timedelta) -> float:
    if isinstance(step, timedelta):
        seconds = step.total_seconds()
    elif isinstance(step, int | float):
        seconds = float(step)
    else:
        try:
            seconds = pd.Timedelta(step).total_seconds()
        except ValueError as exc:
            raise InvalidDataError(f"invalid step `{step}`") from exc
    if not seconds > 0:
        raise InvalidDataError(f"the step must be positive, got `{step}`")
    return seconds


def _series_name(name: str, labels: Mapping[str, str], multiple: bool) -> str:
    if not multiple:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{inner}}}"


class PrometheusSource:
    """Metrics from the Prometheus HTTP API (``/api/v1/query_range``).

    Args:
        url: base URL of the Prometheus server (``http://127.0.0.1:9090``).
        queries: column name → PromQL expression.
        step: resolution (``"60s"``, seconds, or a timedelta).
        lookback: default span when ``start`` is not given.
        timeout: seconds per HTTP request.
        headers: extra HTTP headers (``Authorization``...).

    Example:
        >>> src = PrometheusSource(
        ...     "http://127.0.0.1:9090",
        ...     {"cpu": "rate(process_cpu_seconds_total[1m])", "up": "up"},
        ...     step="15s",
        ... )
        >>> src.step_seconds
        15.0
    """

    def __init__(
        self,
        url: str,
        queries: Mapping[str, str],
        *,
        step: str | float | timedelta = "60s",
        lookback: timedelta = timedelta(hours=1),
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not queries:
            raise InvalidDataError("a Prometheus source needs at least one query")
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise InvalidDataError(f"the Prometheus URL must be http or https, got `{url}`")
        self.url = url.rstrip("/")
        self.queries = dict(queries)
        self.step_seconds = _parse_step(step)
        self.lookback = lookback
        self.timeout = timeout
        self.headers = dict(headers or {})

    def fetch(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """Run every query over ``[start, end]`` and align them into one frame.

        Raises:
            MetricSourceError: Prometheus is unreachable, answers with an error, or returns
                something that is not a range-query matrix.
        """
        end_dt = _to_datetime(end) if end is not None else datetime.now(UTC)
        start_dt = _to_datetime(start) if start is not None else end_dt - self.lookback
        if start_dt > end_dt:
            raise InvalidDataError("`start` is after `end`")
        t0, t1, step = start_dt.timestamp(), end_dt.timestamp(), self.step_seconds
        grid = t0 + step * np.arange(math.floor((t1 - t0) / step + 1e-9) + 1)
        columns: dict[str, pd.Series] = {}
        for name, query in self.queries.items():
            for column, series in self._query_range(name, query, t0, t1, step).items():
                columns[column] = series
        index = pd.to_datetime(grid, unit="s", utc=True)
        frame = pd.DataFrame(index=index)
        for column, series in columns.items():
            frame[column] = series.reindex(grid, method="nearest", tolerance=step / 2).to_numpy()
        if frame.columns.empty:
            for name in self.queries:
                frame[name] = np.nan
        frame.index.name = "timestamp"
        return frame.astype(np.float64)

    def _query_range(
        self, name: str, query: str, t0: float, t1: float, step: float
    ) -> dict[str, pd.Series]:
        params = urllib.parse.urlencode(
            {"query": query, "start": f"{t0:.3f}", "end": f"{t1:.3f}", "step": f"{step:g}"}
        )
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.url}/api/v1/query_range?{params}", headers=self.headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            raise MetricSourceError(
                f"prometheus rejected the query `{name}` ({exc.code}): {detail}"
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise MetricSourceError(f"prometheus at `{self.url}` is unreachable: {exc}") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetricSourceError(
                f"prometheus answered the query `{name}` with non-JSON"
            ) from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error", "unknown error") if isinstance(body, dict) else "bad body"
            raise MetricSourceError(f"prometheus failed the query `{name}`: {detail}")
        data = body.get("data", {})
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise MetricSourceError(f"the query `{name}` did not return a range matrix")
        results = data["result"]
        out: dict[str, pd.Series] = {}
        for item in results:
            try:
                stamps = [float(ts) for ts, _ in item["values"]]
                values = [float(v) for _, v in item["values"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise MetricSourceError(f"the query `{name}` returned malformed samples") from exc
            column = _series_name(name, item.get("metric", {}), len(results) > 1)
            series = pd.Series(values, index=stamps, dtype=np.float64)
            out[column] = series.replace([np.inf, -np.inf], np.nan)
        if not results:
            out[name] = pd.Series(dtype=np.float64)
        return out


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode("utf-8"))
        return str(payload.get("error", exc.reason))
    except Exception:
        return str(exc.reason)


class InMemorySource:
    """Metrics held in memory (a DataFrame, or column → values).

    Args:
        data: a DataFrame indexed by time, or a mapping of column → list of values (then
            ``start`` and ``step`` build the index).
        start: timestamp of the first row for mapping data.
        step: spacing of mapping data.
    """

    def __init__(
        self,
        data: pd.DataFrame | Mapping[str, Any],
        *,
        start: datetime | str = "1970-01-01",
        step: str | float | timedelta = "60s",
    ) -> None:
        if isinstance(data, pd.DataFrame):
            frame = data.copy()
        else:
            frame = pd.DataFrame(dict(data))
            seconds = _parse_step(step)
            frame.index = pd.date_range(
                _to_datetime(start), periods=len(frame), freq=pd.Timedelta(seconds=seconds)
            )
        if isinstance(frame.index, pd.DatetimeIndex) and frame.index.tz is None:
            frame.index = frame.index.tz_localize("UTC")
        self._frame = _numeric(frame.sort_index(), "in-memory data")

    def append(self, rows: pd.DataFrame) -> None:
        """Add newer rows (for feeding a live detector in tests and demos)."""
        more = rows.copy()
        if isinstance(more.index, pd.DatetimeIndex) and more.index.tz is None:
            more.index = more.index.tz_localize("UTC")
        self._frame = pd.concat([self._frame, _numeric(more, "appended rows")]).sort_index()

    def fetch(self, start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
        """The rows between ``start`` and ``end`` (inclusive)."""
        frame = self._frame
        if start is not None:
            frame = frame[frame.index >= pd.Timestamp(_to_datetime(start))]
        if end is not None:
            frame = frame[frame.index <= pd.Timestamp(_to_datetime(end))]
        return frame.copy()


def _numeric(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        converted = frame[bad].apply(pd.to_numeric, errors="coerce")
        really_bad = [c for c in bad if converted[c].isna().all() and frame[c].notna().any()]
        if really_bad:
            names = ", ".join(f"`{c}`" for c in really_bad[:5])
            raise InvalidDataError(f"{what} has non-numeric columns: {names}")
        frame = frame.copy()
        frame[bad] = converted
    frame.columns = [str(c) for c in frame.columns]
    return frame.astype(np.float64)


def read_metrics_file(path: str | Path, *, timestamp_column: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet metrics table (one row per sample, one column per metric).

    A column named ``timestamp``/``time``/``ts``/``datetime`` (or ``timestamp_column``)
    becomes the sorted index; numbers are read as Unix seconds. Other columns must be numeric.

    Raises:
        MetricSourceError: the file is missing, unreadable or of an unknown type.
        InvalidDataError: no rows, or non-numeric metric columns.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(p)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        else:
            raise MetricSourceError(f"`{p}`: unknown file type (use .csv or .parquet)")
    except MetricSourceError:
        raise
    except FileNotFoundError as exc:
        raise MetricSourceError(f"`{p}` does not exist") from exc
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise MetricSourceError(f"`{p}` is unreadable: {exc}") from exc
    if frame.empty:
        raise InvalidDataError(f"`{p}` has no rows")
    ts = timestamp_column
    if ts is None:
        ts = next((c for c in frame.columns if str(c).lower() in TIMESTAMP_COLUMNS), None)
    elif ts not in frame.columns:
        raise InvalidDataError(f"`{p}` has no column `{ts}`")
    if ts is not None:
        raw = frame.pop(ts)
        try:
            index = (
                pd.to_datetime(raw, unit="s", utc=True)
                if pd.api.types.is_numeric_dtype(raw)
                else pd.to_datetime(raw, utc=True)
            )
        except (ValueError, TypeError) as exc:
            raise InvalidDataError(f"`{p}`: column `{ts}` is not a timestamp") from exc
        frame.index = pd.DatetimeIndex(index, name="timestamp")
        frame = frame.sort_index()
    return _numeric(frame, f"`{p}`")
