"""Run the real ``aegis executor`` as a subprocess and talk to it as an outside caller would."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aegis.actuators.signing import SigningClient, new_nonce, sign_request

KEY_ID = "ops"
SECRET = "executor-test-secret-0123456789-abcdef"  # 38 bytes
OTHER_KEY_ID = "ci"
OTHER_SECRET = "another-executor-secret-9876543210-xyz"
KEYS = f"{KEY_ID}:{SECRET},{OTHER_KEY_ID}:{OTHER_SECRET}"
SEED = """
deployments:
  - {namespace: prod, name: api, replicas: 3, image: "registry.local/api:1.4.2",
     history: ["registry.local/api:1.4.1"]}
  - {namespace: prod, name: web, replicas: 2, image: "registry.local/web:2.0.0"}
  - {namespace: staging, name: api, replicas: 1, image: "registry.local/api:1.5.0"}
"""
# Zero cooldowns and a wide breaker, so one server can take many actions on one target.
GUARDRAILS = """
cooldown_seconds: {restart_pod: 0, restart_deployment: 0, scale_deployment: 0,
                   rollback_deployment: 0}
breaker_max_actions: 1000
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(keys: str | None = KEYS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    if keys is not None:
        env["AEGIS_EXECUTOR_KEYS"] = keys
    return env


def command(*args: str) -> list[str]:
    """The installed ``aegis`` script when there is one (what users run), else ``-m``."""
    script = Path(sys.executable).with_name("aegis")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "aegis.cli"]
    return [*prefix, "executor", *args]


@dataclass
class Server:
    """One ``aegis executor`` process on a loopback port."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tmp: Path
    database: str
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @contextmanager
    def client(self, key_id: str = KEY_ID, secret: str = SECRET) -> Iterator[SigningClient]:
        """The library's signing client (closed afterwards)."""
        client = SigningClient(self.url, key_id, secret, timeout=30)
        try:
            yield client
        finally:
            client.close()

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=15)


def start_server(
    tmp: Path,
    *extra: str,
    database: str | None = None,
    env: dict[str, str] | None = None,
    cluster: str | None = SEED,
    name: str = "executor",
) -> Server:
    """Start ``aegis executor`` and wait until it answers ``/health`` (any status)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    database = database or f"sqlite:///{tmp / (name + '.db')}"
    args = ["--host", "127.0.0.1", "--port", str(port), "--database", database, *extra]
    if cluster is not None and "--actuator" not in extra:
        seed = tmp / "cluster.yaml"
        seed.write_text(cluster, encoding="utf-8")
        args += ["--actuator", "simulated", "--cluster", str(seed)]
    log_path = tmp / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command(*args), stdout=log, stderr=subprocess.STDOUT, env=env or base_env()
        )
    server = Server(proc, port, log_path, tmp, database, args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"executor exited {proc.returncode}:\n{server.log()}")
        try:
            httpx.get(f"{server.url}/health", timeout=2)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"executor did not start:\n{server.log()}")


def action(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": f"req-{new_nonce()[:12]}",
        "type": "scale_deployment",
        "namespace": "prod",
        "name": "api",
        "params": {"replicas": 4},
        "requested_by": "attack-suite",
        "reason": "test",
        "dry_run": False,
    }
    return {**data, **over}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    key_id: str = KEY_ID,
    secret: str = SECRET,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    return sign_request(
        method,
        path,
        query=query,
        body=body,
        key_id=key_id,
        secret=secret,
        timestamp=timestamp,
        nonce=nonce,
    )


def independent_signature(
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    key_id: str,
    secret: str,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """The wire format of issue 5 written out with hmac/hashlib only (no aegis code).

    ``query`` must already be canonical (sorted, RFC 3986 encoded).
    """
    message = "\n".join(
        [
            "AEGIS-HMAC-SHA256-V1",
            method,
            path,
            query,
            str(timestamp),
            nonce,
            key_id,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    mac = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "Aegis-Key-Id": key_id,
        "Aegis-Timestamp": str(timestamp),
        "Aegis-Nonce": nonce,
        "Aegis-Signature": f"v1={mac}",
    }


def post(
    server: Server,
    body: bytes,
    headers: dict[str, str] | list[tuple[str, str]],
    path: str = "/v1/actions",
    method: str = "POST",
) -> httpx.Response:
    with server.http() as http:
        return http.request(method, path, content=body, headers=headers)


class TcpProxy:
    """A loopback TCP forwarder that can be cut (FLT-02: "proxy down")."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._down = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._down:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Stop listening and reset every open connection."""
        with self._lock:
            self._down = True
            self._listener.close()
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
