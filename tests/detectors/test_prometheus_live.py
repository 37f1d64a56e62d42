"""The Prometheus source against a real Prometheus server scraping an exporter we run.

Needs the `prometheus` binary (``scripts/install-prometheus.sh``). Without it the tests skip;
with ``AEGIS_REQUIRE_SERVICES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aegis.detectors import AnomalyDetector, MetricSourceError, PrometheusSource


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str:
    found = os.environ.get("AEGIS_PROMETHEUS_BIN") or shutil.which("prometheus")
    if not found:
        reason = "needs the prometheus binary: run scripts/install-prometheus.sh"
        if os.environ.get("AEGIS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (AEGIS_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    return found


class _Exporter:
    """A tiny exporter: a sine-wave gauge, a counter and a labelled gauge, updated live."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.cpu = Gauge("aegis_test_cpu", "fake cpu", registry=self.registry)
        self.requests = Counter("aegis_test_requests", "fake requests", registry=self.registry)
        self.disk = Gauge("aegis_test_disk", "fake disk", ["device"], registry=self.registry)
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self.server.server_port)
        self._stop = threading.Event()
        self._updater = threading.Thread(target=self._run, daemon=True)
        self._updater.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            self.cpu.set(0.5 + 0.25 * math.sin(t / 3.0))
            self.requests.inc(10)
            self.disk.labels("sda").set(0.3)
            self.disk.labels("sdb").set(0.7)
            self._stop.wait(0.1)

    def close(self) -> None:
        self._stop.set()
        self._updater.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as r:
        data: dict[str, object] = json.loads(r.read())
        return data


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _binary()
    exporter = _Exporter()
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: exporter\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter.port}']\n"
    )
    port = _free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"prometheus exited: {Path(log.name).read_text()[-2000:]}")
            try:
                result = _get(f"{url}/api/v1/query?query=count_over_time(aegis_test_cpu[1m])")
                data = result.get("data", {})
                assert isinstance(data, dict)
                samples = data.get("result", [])
                if samples and float(samples[0]["value"][1]) >= 6:  # type: ignore[index]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not collect samples within 60 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        exporter.close()


def test_query_range_gives_an_aligned_multivariate_frame(prometheus: str) -> None:
    src = PrometheusSource(
        prometheus,
        {
            "cpu": "aegis_test_cpu",
            "req_rate": "rate(aegis_test_requests_total[3s])",
            "up": 'up{job="exporter"}',
        },
        step="1s",
    )
    end = datetime.now(UTC)
    frame = src.fetch(end - timedelta(seconds=5), end)
    assert list(frame.columns) == ["cpu", "req_rate", "up"]
    assert len(frame) == 6
    assert (np.diff(frame.index.asi8) == 1_000_000_000).all()
    assert str(frame.index.tz) == "UTC"
    values = frame.dropna()
    assert len(values) >= 3
    assert values["cpu"].between(0.25, 0.75).all()
    assert (values["req_rate"] > 0).all()
    assert (values["up"] == 1).all()


def test_multi_series_queries_get_one_column_per_series(prometheus: str) -> None:
    src = PrometheusSource(prometheus, {"disk": "aegis_test_disk"}, step="1s")
    frame = src.fetch(datetime.now(UTC) - timedelta(seconds=3))
    sda = [c for c in frame.columns if 'device="sda"' in c]
    sdb = [c for c in frame.columns if 'device="sdb"' in c]
    assert len(sda) == 1 and len(sdb) == 1
    assert frame[sda[0]].dropna().eq(0.3).all() and frame[sdb[0]].dropna().eq(0.7).all()


def test_bad_promql_and_empty_results(prometheus: str) -> None:
    with pytest.raises(MetricSourceError, match="rejected the query `broken`"):
        PrometheusSource(prometheus, {"broken": "rate(aegis_test_cpu[5s"}).fetch()
    frame = PrometheusSource(prometheus, {"ghost": "no_such_metric"}, step="1s").fetch(
        datetime.now(UTC) - timedelta(seconds=2)
    )
    assert list(frame.columns) == ["ghost"] and frame["ghost"].isna().all()


def test_detector_scores_live_prometheus_data(prometheus: str) -> None:
    src = PrometheusSource(
        prometheus,
        {"cpu": "aegis_test_cpu", "req_rate": "rate(aegis_test_requests_total[3s])"},
        step="1s",
    )
    frame = src.fetch(datetime.now(UTC) - timedelta(seconds=8))
    det = AnomalyDetector(n_estimators=10, window=3).fit(frame)
    scores = det.score_samples(frame)
    assert scores.shape == (len(frame),) and np.isfinite(scores).all()
