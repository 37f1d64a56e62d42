"""The server's ``aegis`` subcommands: ``serve``, ``admin create``, ``db upgrade``, ``secrets``.

``aegis/cli.py`` calls :func:`register`; each subparser stores its handler in ``handler``
(``args.handler(args) -> int`` exit code). Settings come from ``AEGIS_*`` variables; a
missing or short ``AEGIS_JWT_SECRET`` stops ``serve`` with exit code 2 and a log line that names
the variable, never its value (JWT-5, FLT-20).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis.errors import ConfigurationError

__all__ = ["register"]

_log = logging.getLogger("aegis.server")
EXIT_CONFIG = 2


def _settings() -> Any:
    from aegis.server.settings import Settings

    return Settings.from_env()


class JsonFormatter(logging.Formatter):
    """One JSON object per line (LOG-2); the server's own events are JSON already and merged."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            payload = json.loads(message)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {"message": message}
        payload.setdefault("at", datetime.fromtimestamp(record.created, tz=UTC).isoformat())
        payload["level"] = record.levelname.lower()
        payload["logger"] = record.name
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, sort_keys=True, default=str, ensure_ascii=True)


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _serve(args: argparse.Namespace) -> int:
    _setup_logging()
    try:
        settings = _settings()
    except ConfigurationError as exc:
        _log.error("refusing to start: %s", exc)
        return EXIT_CONFIG
    import uvicorn

    from aegis.server.app import create_app
    from aegis.server.db import upgrade

    upgrade(settings.database_url)
    app = create_app(settings)
    # proxy_headers=False: the client address comes from the socket unless the peer is one of
    # AEGIS_TRUSTED_PROXIES, which the server itself decides (BF-3).
    # log_config=None: uvicorn's records go through our JSON handler; our middleware already
    # writes one access line per request, so uvicorn's own access log is off.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        access_log=False,
    )
    return 0


def _admin_create(args: argparse.Namespace) -> int:
    _setup_logging()
    if args.password_stdin == args.generate_password:
        print(
            "aegis admin create: give exactly one of --password-stdin and --generate-password",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        settings = _settings()
    except ConfigurationError as exc:
        _log.error("refusing to start: %s", exc)
        return EXIT_CONFIG
    from aegis.server.bootstrap import create_admin
    from aegis.server.db import upgrade
    from aegis.server.errors import ServerError

    if args.generate_password:
        password = secrets.token_urlsafe(18)  # 144 bits, 24 characters
    else:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    upgrade(settings.database_url)
    try:
        user_id = create_admin(settings, args.email, password)
    except ServerError as exc:
        print(f"aegis admin create: {exc}", file=sys.stderr)
        return 1
    print(user_id)
    if args.generate_password:
        print(f"administrator {args.email} password (shown once): {password}")
    return 0


def _secrets(args: argparse.Namespace) -> int:
    path = Path(args.env_file)
    if path.exists():
        print(f"{path} exists; its secrets are kept")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    content = f"AEGIS_JWT_SECRET={secrets.token_urlsafe(48)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    print(f"wrote a new AEGIS_JWT_SECRET to {path} (mode 600; keep it out of version control)")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    _setup_logging()
    try:
        settings = _settings()
    except ConfigurationError as exc:
        _log.error("refusing to start: %s", exc)
        return EXIT_CONFIG
    from aegis.server.db import upgrade

    upgrade(settings.database_url)
    return 0


def register(subparsers: Any) -> None:
    """Add ``serve``, ``admin create`` and ``db upgrade`` to an argparse subparsers object.

    Args:
        subparsers: the result of ``parser.add_subparsers()``.
    """
    serve = subparsers.add_parser("serve", help="run the control-plane server (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    admin = subparsers.add_parser("admin", help="administer the server")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_sub.add_parser("create", help="create an administrator")
    create.add_argument("--email", required=True)
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input (the newline is dropped)",
    )
    create.add_argument(
        "--generate-password",
        action="store_true",
        help="make a random password and print it once (for local setups)",
    )
    create.set_defaults(handler=_admin_create)

    init = subparsers.add_parser(
        "secrets", help="create a local env file with a fresh AEGIS_JWT_SECRET (once)"
    )
    init.add_argument("--env-file", default=".env.local", help="the file to create")
    init.set_defaults(handler=_secrets)

    db = subparsers.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="bring the schema up to date, then exit")
    up.set_defaults(handler=_db_upgrade)

    from aegis.server import _policies_cli  # part 2: `aegis policies import`

    _policies_cli.register(subparsers)
