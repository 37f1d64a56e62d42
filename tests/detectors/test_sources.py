from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aegis.detectors import (
    InMemorySource,
    InvalidDataError,
    MetricSource,
    MetricSourceError,
    PrometheusSource,
    read_metrics_file,
)


def test_csv_and_parquet_give_the_same_time_indexed_frame(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "timestamp": [1_700_000_120, 1_700_000_000, 1_700_000_060],
            "cpu": [0.3, 0.1, 0.2],
            "mem": [1, 2, 3],
        }
    )
    frame.to_csv(tmp_path / "m.csv", index=False)
    frame.to_parquet(tmp_path / "m.parquet", index=False)
    a = read_metrics_file(tmp_path / "m.csv")
    b = read_metrics_file(tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["cpu", "mem"]
    assert a.index.is_monotonic_increasing and str(a.index.tz) == "UTC"
    assert a["cpu"].tolist() == [0.1, 0.2, 0.3]


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MetricSourceError, match="does not exist"):
        read_metrics_file(tmp_path / "nope.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(MetricSourceError, match="unknown file type"):
        read_metrics_file(tmp_path / "x.json")
    pd.DataFrame({"host": ["a", "b"], "cpu": [1, 2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InvalidDataError, match="non-numeric columns: `host`"):
        read_metrics_file(tmp_path / "bad.csv")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    with pytest.raises(MetricSourceError, match="unreadable"):
        read_metrics_file(tmp_path / "garbage.parquet")


def test_in_memory_source_slices_by_time() -> None:
    src = InMemorySource({"cpu": [1.0, 2.0, 3.0, 4.0]}, start="2026-01-01T00:00:00Z", step="60s")
    assert isinstance(src, MetricSource)
    part = src.fetch(
        pd.Timestamp("2026-01-01T00:01:00Z").to_pydatetime(),
        pd.Timestamp("2026-01-01T00:02:00Z").to_pydatetime(),
    )
    assert part["cpu"].tolist() == [2.0, 3.0]
    src.append(pd.DataFrame({"cpu": [5.0]}, index=pd.DatetimeIndex(["2026-01-01T00:04:00"])))
    assert src.fetch()["cpu"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_prometheus_source_validates_its_configuration() -> None:
    with pytest.raises(InvalidDataError, match="http or https"):
        PrometheusSource("file:///etc/passwd", {"x": "up"})
    with pytest.raises(InvalidDataError, match="at least one query"):
        PrometheusSource("http://127.0.0.1:9", {})
    with pytest.raises(InvalidDataError, match="step"):
        PrometheusSource("http://127.0.0.1:9", {"x": "up"}, step="-5s")


def test_unreachable_prometheus_is_a_source_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = PrometheusSource(f"http://127.0.0.1:{port}", {"up": "up"}, timeout=2)
    with pytest.raises(MetricSourceError, match="unreachable"):
        src.fetch()
