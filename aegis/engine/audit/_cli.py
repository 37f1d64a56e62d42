"""``aegis audit verify`` and :func:`open_sink` (the ``--audit URL`` of ``aegis eval``).

The lead's ``aegis/cli.py`` calls :func:`register` with its subparsers; the parsed
namespace carries ``handler`` (a function of the namespace returning the exit code).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from aegis.engine.audit._batching import BatchingSink, Mode
from aegis.engine.audit._chain import ChainHead, VerifyResult
from aegis.engine.audit._files import HeadAnchor
from aegis.engine.audit._record import redact_url
from aegis.errors import AegisError

__all__ = ["open_sink", "register", "run_verify", "verify_url"]

_SQL_HINT = "use `jsonl:PATH`, `memory:`, `sqlite:///FILE` or `postgresql+psycopg://...`"


def open_sink(
    url: str,
    mode: Mode = "sync",
    *,
    anchor_path: str | Path | None = None,
    **options: Any,
) -> BatchingSink:
    """Open the audit sink a URL names.

    * ``jsonl:PATH`` — :class:`~aegis.engine.audit.JsonlAuditSink` on ``PATH``;
    * ``memory:`` — :class:`~aegis.engine.audit.MemoryAuditSink`;
    * a SQLAlchemy URL (``sqlite:///audit.db``, ``postgresql+psycopg://u@h/db``) —
      ``SqlAuditSink``, creating the schema if missing.

    Args:
        url: the sink URL.
        mode: ``"sync"`` or ``"async"``.
        anchor_path: a :class:`HeadAnchor` file to publish chain heads to (AUD-3).
        **options: passed to the sink (``spill_path``, ``max_batch``, ``anchor_interval``...).

    Returns:
        The open sink (an ``AuditSink``); close it when done.

    Raises:
        AuditError: the URL is malformed or the store cannot be opened.
        MissingDependencyError: a SQL URL without SQLAlchemy installed.
    """
    from aegis.engine.errors import AuditError

    if anchor_path is not None:
        options["anchor"] = HeadAnchor(anchor_path)
    if url.startswith("jsonl:"):
        from aegis.engine.audit.jsonl import JsonlAuditSink

        path = url[len("jsonl:") :]
        if not path:
            raise AuditError(f"audit URL `{url}` names no file ({_SQL_HINT})")
        return JsonlAuditSink(path, mode=mode, **options)
    if url == "memory:":
        from aegis.engine.audit.memory import MemoryAuditSink

        return MemoryAuditSink(mode, **options)
    if "://" in url:
        from aegis.engine.audit.sql import SqlAuditSink

        return SqlAuditSink(url, mode=mode, **options)
    raise AuditError(f"unknown audit URL `{redact_url(url)}` ({_SQL_HINT})")


def verify_url(
    url: str, *, anchors: Mapping[str, ChainHead] | None = None
) -> dict[str, VerifyResult]:
    """Verify every chain kept at ``url`` (``jsonl:PATH`` or a database URL), by chain.

    Raises:
        AuditError: the store cannot be read.
    """
    from aegis.engine.errors import AuditError

    if url.startswith("jsonl:"):
        from aegis.engine.audit.jsonl import verify_jsonl

        result = verify_jsonl(url[len("jsonl:") :], anchors=anchors)
        return {result.chain or "(empty)": result}
    if "://" in url:
        from aegis.engine.audit.sql import verify_database

        return verify_database(url, anchors=anchors)
    raise AuditError(f"unknown audit URL `{redact_url(url)}` ({_SQL_HINT})")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``audit verify`` to the ``aegis`` command's subparsers.

    Returns:
        The ``audit`` parser.
    """
    audit = subparsers.add_parser("audit", help="check audit chains")
    commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="recompute audit hash chains and name the first bad record",
        description=(
            "Verify the audit chains of a database (every chain in it) or of a JSON-lines "
            "file. Exit 0 when every chain verifies, 1 when one does not, 2 when the store "
            "cannot be read."
        ),
    )
    where = verify.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the audit database")
    where.add_argument("--jsonl", metavar="FILE", help="JSON-lines audit file")
    verify.add_argument(
        "--anchor",
        metavar="FILE",
        help="head anchor file (AUD-3): also detects records removed from the tail",
    )
    verify.add_argument(
        "--json", action="store_true", help="print one JSON object per chain instead of text"
    )
    verify.set_defaults(handler=run_verify)
    return audit  # type: ignore[no-any-return]


def _describe_ok(chain: str, result: VerifyResult) -> str:
    head = result.head
    return (
        f"ok: chain `{chain}`: {result.checked} records verified "
        f"(head seq {head.seq}, hash {head.hash[:16]})"
    )


def _describe_bad(chain: str, result: VerifyResult) -> str:
    parts = [f"seq {result.first_bad_seq}"]
    if result.bad_id:
        parts.append(f"id {result.bad_id}")
    if result.where:
        parts.append(result.where)
    return (
        f"FAILED: chain `{chain}`: first bad record {', '.join(parts)}: "
        f"{result.problem}: {result.reason}"
    )


def run_verify(
    args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Handler of ``aegis audit verify``.

    Returns:
        0 when every chain verifies, 1 when one does not, 2 when the store cannot be read.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    url = f"jsonl:{args.jsonl}" if args.jsonl is not None else str(args.db)
    try:
        anchors = HeadAnchor(args.anchor).latest() if args.anchor else None
        results = verify_url(url, anchors=anchors)
    except AegisError as exc:
        print(f"aegis audit verify: error: {exc}", file=err)
        return 2
    failed = sum(not r.ok for r in results.values())
    if getattr(args, "json", False):
        for chain, result in sorted(results.items()):
            print(json.dumps({**dataclasses.asdict(result), "chain": chain}), file=out)
        return 1 if failed else 0
    for chain, result in sorted(results.items()):
        describe = _describe_ok if result.ok else _describe_bad
        print(describe(chain, result), file=out)
    if not results:
        print("ok: no audit chains stored", file=out)
    if failed:
        print(f"{failed} of {len(results)} audit chains do not verify", file=out)
        return 1
    return 0
