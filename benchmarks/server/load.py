"""Throughput of ``POST /api/v1/evaluate`` beside an authenticated no-op, with wrk.

``python -m benchmarks.server.load [--duration 10] [--connections 16] [--backends sqlite,postgres]``

For each backend one ``aegis serve`` process is started (SQLite file; PostgreSQL + Redis from
``AEGIS_BENCH_DATABASE_URL`` / ``AEGIS_BENCH_REDIS_URL``, default the local services), an
administrator logs in and creates a small policy set, then wrk (a second process, bearer token
in a Lua script) drives ``GET /api/v1/ping-auth`` (the ceiling: framework, token, session check
in the database, rate limit and route policy) and ``POST /api/v1/evaluate`` (the same plus the
decision, the Redis or in-process cache, and a sync audit append) with random principals, in
one run. Afterwards the decisions answered (``/api/v1/metrics/current``) are compared with the
records added to the ``decisions`` chain, which must verify. Results: ``benchmarks/results/
server.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parents[1] / "results" / "server.md"
ADMIN = ("bench@example.com", "benchmark administrator password")
POLICY = """
allow "sre-may-restart" {
    action == "restart_pod"
    "sre" in principal.roles
    principal.id != "mallory"
}

deny "no-prod-for-interns" {
    "intern" in principal.roles
    resource.namespace == "prod"
}
"""
LUA = """
wrk.method = "%(method)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
local evaluate = %(evaluate)s
request = function()
  if evaluate then
    local id = math.random(1, 100000)
    local body = '{"principal":{"id":"u' .. id .. '","roles":["sre"]},"action":"restart_pod",'
      .. '"resource":{"kind":"pod","namespace":"prod"}}'
    return wrk.format(nil, nil, nil, body)
  end
  return wrk.format(nil, nil, nil, nil)
end
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrk(url: str, token: str, evaluate: bool, duration: int, connections: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(
            LUA
            % {
                "method": "POST" if evaluate else "GET",
                "token": token,
                "evaluate": "true" if evaluate else "false",
            }
        )
    path = "/api/v1/evaluate" if evaluate else "/api/v1/ping-auth"
    done = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            handle.name,
            url + path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(handle.name)
    out = done.stdout

    def latency(pct: str) -> float:
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert found, out
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def run_backend(
    name: str, env_extra: dict[str, str], duration: int, connections: int
) -> dict[str, Any]:
    env = {
        **os.environ,
        "AEGIS_JWT_SECRET": "benchmark-secret-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "AEGIS_PASSWORD_HASH_PROFILE": "fast",
        "AEGIS_RATE_LIMIT_AUTHENTICATED": "100000000/minute",
        **env_extra,
    }
    env.pop("AEGIS_REDIS_URL", None) if "AEGIS_REDIS_URL" not in env_extra else None
    cli = [sys.executable, "-m", "aegis.cli"]
    subprocess.run(
        [*cli, "admin", "create", "--email", ADMIN[0], "--password-stdin"],
        input=ADMIN[1] + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    port = _port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        token = httpx.post(
            f"{url}/api/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{url}/api/v1/policies", headers=headers, json={"name": "bench", "source": POLICY}
        )
        assert created.status_code == 201, created.text

        def figures() -> tuple[int, int]:
            current = httpx.get(f"{url}/api/v1/metrics/current", headers=headers).json()
            chain = httpx.get(f"{url}/api/v1/audit/verify", headers=headers, timeout=120).json()
            return current["decisions"], chain["chains"]["decisions"]["checked"]

        decided0, audited0 = figures()
        ping = _wrk(url, token, False, duration, connections)
        evaluate = _wrk(url, token, True, duration, connections)
        decided1, audited1 = figures()
        verdict = httpx.get(f"{url}/api/v1/audit/verify", headers=headers, timeout=120).json()
        return {
            "backend": name,
            "ping": ping,
            "evaluate": evaluate,
            "decided": decided1 - decided0,
            "audited": audited1 - audited0,
            "chain_ok": verdict["ok"],
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server.load")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                extra = {"AEGIS_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
            else:
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                base = os.environ.get(
                    "AEGIS_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
                )
                import sqlalchemy as sa

                admin = sa.create_engine(base)
                with admin.begin() as conn:
                    conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                extra = {
                    "AEGIS_DATABASE_URL": f"{base}?options=-csearch_path%3D{schema}",
                    "AEGIS_REDIS_URL": os.environ.get(
                        "AEGIS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"
                    ),
                    "AEGIS_REDIS_PREFIX": f"{schema}:",
                }
            try:
                rows.append(run_backend(backend, extra, args.duration, args.connections))
            finally:
                if backend != "sqlite":
                    with admin.begin() as conn:
                        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                    admin.dispose()
            print(json.dumps(rows[-1]))
    lines = [
        "# Server load: `POST /api/v1/evaluate` beside the authenticated no-op",
        "",
        f"`python -m benchmarks.server.load --duration {args.duration} --connections "
        f"{args.connections}` — wrk, 2 threads, {args.connections} connections, "
        f"{args.duration} s per route, one `aegis serve` process (one uvicorn worker), on "
        "the shared 2-core machine (wrk and the server share the cores). Audit: SQL sink, "
        "`sync` mode (SQLite `synchronous=FULL`). Principals are random, so most evaluations "
        "miss the decision cache.",
        "",
        "| backend | route | requests/s | p50 ms | p99 ms | non-2xx | evaluate / ping |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["evaluate"]["rps"] / row["ping"]["rps"] if row["ping"]["rps"] else 0.0
        for route in ("ping", "evaluate"):
            r = row[route]
            label = "GET /api/v1/ping-auth" if route == "ping" else "POST /api/v1/evaluate"
            lines.append(
                f"| {row['backend']} | `{label}` | {r['rps']:.0f} | {r['p50']:.1f} | "
                f"{r['p99']:.1f} | {r['non_2xx']} | {ratio:.2f} |"
            )
    lines += ["", "Audit completeness after the run:", ""]
    for row in rows:
        lines.append(
            f"- {row['backend']}: {row['decided']} decisions answered, {row['audited']} records "
            f"added to chain `decisions`, missing {row['decided'] - row['audited']}; chain "
            f"verifies: {row['chain_ok']}"
        )
    lines += [
        "",
        "Records ≥ answers is expected: a request wrk cuts off at the end of its run can be "
        "audited (the record is durable first) and then not answered; a decision answered "
        "without its record would show as a positive `missing`. Figures move with the load of "
        "the other jobs on the machine (load average is printed by `uptime`).",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
