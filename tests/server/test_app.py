"""The application shell: error bodies, input limits, startup checks (INP, LOG-4, AC-1, JWT-5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from server_helpers import Env, bearer
from starlette.requests import Request
from starlette.responses import Response

from aegis.errors import ConfigurationError
from aegis.server import Endpoint, ServerError, Settings, create_app
from aegis.server.errors import STATUS_BY_CODE

SIGNUP = "/api/v1/auth/signup"


def test_unknown_route_and_method_answer_json(env: Env) -> None:
    missing = env.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "resource.not_found", "details": [], "message": "no such resource"}
    }
    wrong = env.client.delete("/api/v1/health/ping")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method.not_allowed"


def test_same_error_same_bytes_and_request_id_in_header(env: Env) -> None:
    one = env.client.get("/api/v1/users/me")
    two = env.client.get("/api/v1/users/me")
    assert one.status_code == two.status_code == 401
    assert one.content == two.content
    assert one.headers["x-request-id"] != two.headers["x-request-id"]
    assert one.headers["x-request-id"] not in one.text


def test_error_table_codes_are_dotted() -> None:
    assert all("." in code for code in STATUS_BY_CODE)


def test_INP1_body_too_large_with_and_without_length(env: Env) -> None:
    big = b'{"email": "' + b"a" * (2 << 20) + b'"}'
    declared = env.client.post(SIGNUP, content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413

    def chunks() -> Any:
        for _ in range(64):
            yield b"a" * (64 * 1024)

    streamed = env.client.post(
        SIGNUP, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "request.too_large"


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        b'{"email": 1' + b"0" * 5000 + b"}",
        b'{"email": NaN}',
        b'{"email": "a@b.c", "email": "x@y.z"}',
        b"\xff\xfe",
        b"",
    ],
)
def test_INP2_malformed_or_oversized_json_is_400(env: Env, payload: bytes) -> None:
    started = time.perf_counter()
    response = env.client.post(
        SIGNUP, content=payload, headers={"Content-Type": "application/json"}
    )
    assert time.perf_counter() - started < 5
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "request.malformed"


def test_INP3_duplicate_role_keys_rejected(env: Env) -> None:
    pair = env.user("dup@example.com")
    body = b'{"name": "a", "name": "b"}'
    response = env.client.patch(
        "/api/v1/users/me",
        content=body,
        headers={**bearer(pair), "Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_INP3_json_content_type_required(env: Env) -> None:
    response = env.client.post(
        SIGNUP,
        content=json.dumps({"email": "a@b.c", "password": "x"}),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "request.unsupported_media_type"


def test_INP3_unknown_fields_and_wrong_types_are_422(env: Env) -> None:
    unknown = env.signup("u@example.com", is_active=False)
    assert unknown.status_code == 422
    wrong = env.client.post(SIGNUP, json={"email": 5, "password": "long enough pass"})
    assert wrong.status_code == 422
    details = wrong.json()["error"]["details"]
    assert details
    assert details[0]["loc"] == ["email"]


def _crash(request: Request) -> Response:
    raise RuntimeError("SELECT secret FROM /etc/passwd")


async def _crash_async(request: Request) -> Response:
    return _crash(request)


def test_LOG4_crash_gives_generic_500(make_env: Any, tmp_path: Any) -> None:
    env = make_env()
    app = create_app(
        env.settings,
        database=env.db,
        extra_endpoints=[
            Endpoint("/api/v1/health/crash", "GET", "api:health:read", _crash_async, "crash")
        ],
    )
    from server_helpers import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/health/crash")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal.error", "details": [], "message": "an internal error occurred"}
    }
    for leak in ("Traceback", 'File "', "SELECT", "passwd"):
        assert leak not in response.text


def test_AC1_route_without_action_refuses_to_start(env: Env) -> None:
    undeclared = Endpoint("/api/v1/secret", "GET", "", _crash_async, "no action")
    with pytest.raises(ServerError, match="declares no action"):
        create_app(env.settings, database=env.db, extra_endpoints=[undeclared])
    malformed = Endpoint("/api/v1/secret", "GET", "users write", _crash_async, "bad action")
    with pytest.raises(ServerError, match="malformed action"):
        create_app(env.settings, database=env.db, extra_endpoints=[malformed])


@pytest.mark.parametrize("secret", [None, "", "short-16-bytes!!", "x" * 31])
def test_JWT5_secret_missing_or_short_is_refused(secret: str | None) -> None:
    environ = {} if secret is None else {"AEGIS_JWT_SECRET": secret}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    assert "AEGIS_JWT_SECRET" in str(caught.value)
    if secret:
        assert secret not in str(caught.value)


def test_settings_from_env_reads_lists_and_numbers() -> None:
    settings = Settings.from_env(
        {
            "AEGIS_JWT_SECRET": "s" * 32,
            "AEGIS_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "AEGIS_ACCESS_TOKEN_TTL": "600",
            "AEGIS_SIGNUP_MODE": "closed",
        }
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert settings.access_token_ttl == 600
    assert settings.signup_mode == "closed"
    with pytest.raises(ConfigurationError, match="AEGIS_ACCESS_TOKEN_TTL"):
        Settings.from_env({"AEGIS_JWT_SECRET": "s" * 32, "AEGIS_ACCESS_TOKEN_TTL": "3600"})
    assert "s" * 32 not in repr(settings)


_AEGIS = [sys.executable, "-m", "aegis.cli"]


@pytest.mark.parametrize("secret", [None, "sixteen-byte-key"])
def test_FLT20_serve_exits_non_zero_naming_the_setting(tmp_path: Any, secret: str | None) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    environ["AEGIS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'x.db'}"
    if secret:
        environ["AEGIS_JWT_SECRET"] = secret
    result = subprocess.run(
        [*_AEGIS, "serve", "--port", "1"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "AEGIS_JWT_SECRET" in result.stderr
    if secret:
        assert secret not in result.stderr + result.stdout
    assert not (tmp_path / "x.db").exists()


def test_cli_db_upgrade_and_admin_create(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AEGIS_")}
    environ["AEGIS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    environ["AEGIS_JWT_SECRET"] = "k" * 40
    environ["AEGIS_PASSWORD_HASH_PROFILE"] = "fast"
    run = _AEGIS
    up = subprocess.run(
        [*run, "db", "upgrade"], env=environ, capture_output=True, timeout=60, check=False
    )
    assert up.returncode == 0, up.stderr
    created = subprocess.run(
        [*run, "admin", "create", "--email", "ops@example.com", "--password-stdin"],
        env=environ,
        input="a long admin passphrase\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    # the newline was dropped: the stored hash verifies the password without it
    import asyncio

    from aegis.server.auth.passwords import PasswordHasher
    from aegis.server.db import Database
    from aegis.server.db.models import User

    db = Database(environ["AEGIS_DATABASE_URL"])
    stored = db.run_sync(lambda s: s.query(User).one().password_hash)
    db.dispose()
    assert asyncio.run(PasswordHasher("fast").verify("a long admin passphrase", stored))[0]
    # the refusals, in process (the subprocess above covers the wiring)
    import argparse
    import io

    from aegis.server._cli import register

    parser = argparse.ArgumentParser(prog="aegis")
    register(parser.add_subparsers(dest="command", required=True))
    for email, line, expected in [
        ("ops@example.com", "a long admin passphrase\n", "already exists"),
        ("o2@example.com", "short pass 1\n", "15 characters"),
    ]:
        args = parser.parse_args(["admin", "create", "--email", email, "--password-stdin"])
        monkeypatch.setattr(sys, "stdin", io.StringIO(line))
        for key, value in environ.items():
            if key.startswith("AEGIS_"):
                monkeypatch.setenv(key, value)
        assert args.handler(args) == 1
        assert expected in capsys.readouterr().err


def test_INP2_lone_surrogates_are_refused(env: Env) -> None:
    body = b'{"email": "a\\ud92f@example.com", "password": "long enough pass"}'
    response = env.client.post(SIGNUP, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_405_lists_every_method_of_the_path(env: Env) -> None:
    response = env.client.request("OPTIONS", "/api/v1/users/x")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {
        "GET",
        "HEAD",
        "PATCH",
        "DELETE",
    }


def test_security_headers_on_every_answer(env: Env) -> None:
    for response in (env.client.get("/api/v1/health/ping"), env.client.get("/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers.get_list("cache-control") == ["no-store"]


def test_local_setup_commands(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import argparse
    import stat

    from aegis.server._cli import register

    parser = argparse.ArgumentParser(prog="aegis")
    register(parser.add_subparsers(dest="command", required=True))
    env_file = tmp_path / ".env.local"
    args = parser.parse_args(["secrets", "--env-file", str(env_file)])
    assert args.handler(args) == 0
    first = env_file.read_text()
    assert first.startswith("AEGIS_JWT_SECRET=")
    assert len(first.strip().split("=", 1)[1]) >= 43
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert args.handler(args) == 0
    assert env_file.read_text() == first  # generated once, never replaced
    monkeypatch.setenv("AEGIS_JWT_SECRET", first.strip().split("=", 1)[1])
    monkeypatch.setenv("AEGIS_DATABASE_URL", f"sqlite:///{tmp_path / 'local.db'}")
    monkeypatch.setenv("AEGIS_PASSWORD_HASH_PROFILE", "fast")
    capsys.readouterr()
    args = parser.parse_args(
        ["admin", "create", "--email", "me@localhost.dev", "--generate-password"]
    )
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    password = out.strip().rsplit(": ", 1)[1]
    assert len(password) == 24
    both = parser.parse_args(
        ["admin", "create", "--email", "x@y.dev", "--generate-password", "--password-stdin"]
    )
    assert both.handler(both) == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AEGIS_DATABASE_URL", "not a url"),
        ("AEGIS_DATABASE_URL", "mysql://x/y"),
        ("AEGIS_REDIS_URL", "http://x"),
    ],
)
def test_bad_storage_urls_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({"AEGIS_JWT_SECRET": "s" * 32, name: value})


def test_cli_logs_are_json_lines() -> None:
    import logging

    from aegis.server._cli import JsonFormatter

    record = logging.LogRecord("aegis.server", logging.INFO, __file__, 1, "plain\r\ntext", (), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == "plain\r\ntext"
    merged = logging.LogRecord(
        "aegis.server", logging.INFO, __file__, 1, '{"event": "x"}', (), None
    )
    assert json.loads(JsonFormatter().format(merged))["event"] == "x"
