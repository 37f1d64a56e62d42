"""``aegis policies import PATH...``: store ``.aegis`` files as the server's policy documents.

Registered by :func:`aegis.server._cli.register`. Reads ``AEGIS_DATABASE_URL`` (and the other
``AEGIS_*`` settings), brings the schema up to date, then imports (see
:func:`aegis.server.policy_service.import_documents`). Exit codes: 0 imported (or nothing new),
1 the files do not load (every diagnostic on stderr), 2 a configuration or usage error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from aegis.errors import ConfigurationError

__all__ = ["register"]


def _import(args: argparse.Namespace) -> int:
    from aegis.lang import PolicyLoadError
    from aegis.server.db import Database, upgrade
    from aegis.server.policy_service import import_documents
    from aegis.server.settings import Settings

    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"aegis policies import: {exc}", file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        names = import_documents(db, args.paths, datetime.now(UTC), enabled=not args.disabled)
    except PolicyLoadError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"aegis policies import: cannot read `{exc.filename}`", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(f"imported {len(names)} policy documents" + (f": {', '.join(names)}" if names else ""))
    return 0


def register(subparsers: Any) -> None:
    """Add ``policies import`` to an argparse subparsers object."""
    policies = subparsers.add_parser("policies", help="the server's managed policy documents")
    sub = policies.add_subparsers(dest="policies_command", required=True)
    imp = sub.add_parser("import", help="store .aegis files as policy documents (by file stem)")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--disabled", action="store_true", help="import them disabled")
    imp.set_defaults(handler=_import)
