"""The ``aegis`` command.

A stable interface: scripts and CI jobs call it. Exit codes: 0 success; 1 the check failed
(diagnostics, files that would change, failing policy tests, a chain that does not verify);
2 bad usage or input that could not be used (a set that does not load in ``eval``, an invalid
request, an unreadable file). No input, however malformed, produces a Python traceback.

Subcommands::

    aegis check PATH... [--schema FILE]
    aegis fmt PATH... [--check] [--diff]
    aegis eval --policies PATH... --request FILE|- [--schema FILE] [--now RFC3339] [--audit URL]
    aegis test PATH...

and those of the other packages (``audit``, ``detectors``, ``serve``, ``executor``…), each
registered by its own package when its dependencies are installed.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TextIO

from aegis._version import __version__
from aegis.errors import AegisError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]

# Subcommands that live with their package: (module, register function). A module whose
# optional dependencies are missing is skipped; its commands then say what to install.
_PLUGGED = (
    ("aegis.engine.audit._cli", "register"),
    ("aegis.detectors._cli", "register"),
    ("aegis.server._cli", "register"),
    ("aegis.server.executor._cli", "register"),
)


class _UsageError(Exception):
    """Bad input to a subcommand: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _print_diagnostics(diagnostics: Sequence[Any], stream: TextIO) -> None:
    for diagnostic in diagnostics:
        print(str(diagnostic), file=stream)


# -- aegis check ------------------------------------------------------------------------------
def _cmd_check(args: argparse.Namespace) -> int:
    from aegis.lang import PolicyLoadError, SchemaError, load_paths

    try:
        policies = load_paths(args.paths)
    except PolicyLoadError as exc:
        _print_diagnostics(exc.diagnostics, sys.stderr)
        return 1
    if args.schema:
        from aegis.lang.schema import load_schema
        from aegis.lang.validator import validate

        try:
            schema = load_schema(args.schema)
        except SchemaError as exc:
            _print_diagnostics(exc.diagnostics, sys.stderr)
            return 1
        except OSError as exc:
            raise _UsageError(f"cannot read schema `{args.schema}`: {exc.strerror}") from exc
        problems = validate(policies, schema)
        if problems:
            _print_diagnostics(_with_sources(problems, policies), sys.stderr)
            return 1
    count = len(policies.rules)
    print(
        f"ok: {count} rule{'s' if count != 1 else ''} in {len(policies.files)} file"
        f"{'s' if len(policies.files) != 1 else ''}, version {policies.version[:12]}",
        file=sys.stderr,
    )
    return 0


def _with_sources(diagnostics: Sequence[Any], policies: Any) -> list[Any]:
    import dataclasses

    return [
        d
        if d.source_line is not None
        else dataclasses.replace(d, source_line=policies.source_line(d.span))
        for d in diagnostics
    ]


# -- aegis fmt --------------------------------------------------------------------------------
def _write_atomically(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cmd_fmt(args: argparse.Namespace) -> int:
    from aegis.lang import PolicyLoadError, collect_policy_files, format_policy, parse_policy

    status = 0
    changed: list[Path] = []
    for path in collect_policy_files(args.paths):
        try:
            original = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}:1:1: error[io-error]: cannot read file: {exc}", file=sys.stderr)
            status = 1
            continue
        try:
            formatted = format_policy(parse_policy(original.removeprefix("\ufeff"), str(path)))
        except PolicyLoadError as exc:
            _print_diagnostics(exc.diagnostics, sys.stderr)
            status = 1
            continue
        if formatted == original:
            continue
        changed.append(path)
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    original.splitlines(keepends=True),
                    formatted.splitlines(keepends=True),
                    f"{path}",
                    f"{path} (formatted)",
                )
            )
        if not args.check and not args.diff:
            _write_atomically(path, formatted)
    verb = "would reformat" if (args.check or args.diff) else "reformatted"
    for path in changed:
        print(f"{verb} {path}", file=sys.stderr)
    if args.check and changed:
        return 1
    return status


# -- aegis eval -------------------------------------------------------------------------------
def _read_request(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read request `{source}`: {exc}") from exc
    try:
        return json.loads(text, parse_float=Decimal)
    except RecursionError as exc:
        raise _UsageError("invalid request: JSON nested too deeply") from exc
    except ValueError as exc:
        raise _UsageError(f"invalid request: not valid JSON ({exc})") from exc


def _parse_now(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    from aegis.engine.request import parse_time

    try:
        return parse_time(raw)
    except ValueError as exc:
        raise _UsageError(f"--now: {exc}") from exc


def _cmd_eval(args: argparse.Namespace) -> int:
    from aegis.engine import InvalidRequestError, PolicyEngine
    from aegis.lang import PolicyLoadError, SchemaError

    now = _parse_now(args.now)
    try:
        engine = PolicyEngine.from_paths(args.policies, schema=args.schema)
    except (PolicyLoadError, SchemaError) as exc:
        raise _UsageError(f"policy set did not load: {exc}") from exc
    except OSError as exc:
        raise _UsageError(f"cannot read schema `{args.schema}`: {exc.strerror}") from exc
    request = _read_request(args.request)
    try:
        decision = engine.evaluate(request, now=now)
    except InvalidRequestError as exc:
        raise _UsageError(f"invalid request: {exc}") from exc
    if args.audit:
        _append_audit(args.audit, request, decision)
    print(json.dumps(decision.to_dict(), ensure_ascii=False, sort_keys=False))
    return 0


def _append_audit(url: str, request: Any, decision: Any) -> None:
    """Append the decision's record to the audit store at ``url`` (durable on return)."""
    from aegis.engine.audit import decision_record, open_sink
    from aegis.engine.errors import AuditError

    try:
        sink = open_sink(url, mode="sync")
    except (AuditError, ValueError) as exc:
        raise _UsageError(f"--audit: {exc}") from exc
    try:
        sink.append([decision_record(decision, request)])
    finally:
        sink.close()


# -- aegis test -------------------------------------------------------------------------------
def _cmd_test(args: argparse.Namespace) -> int:
    from aegis.testing.policy_cases import collect_case_files, run_case_file

    files = collect_case_files(args.paths)
    if not files:
        raise _UsageError("no test files (*.yaml) found")
    passed = failed = 0
    for path in files:
        for result in run_case_file(path):
            if result.ok:
                passed += 1
                if args.verbose:
                    print(result.describe())
            else:
                failed += 1
                print(result.describe())
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


# -- wiring -----------------------------------------------------------------------------------
_CORE = frozenset({"check", "fmt", "eval", "test"})


def build_parser(*, plugged: bool = True) -> argparse.ArgumentParser:
    """The argument parser of the ``aegis`` command.

    Args:
        plugged: also register the subcommands of the other packages (audit, detectors,
            server, executor); the core language commands never need them.
    """
    parser = _Parser(prog="aegis", description="Aegis: policy-as-code for self-healing.")
    parser.add_argument("--version", action="version", version=f"aegis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    check = sub.add_parser("check", help="load policy files and report every diagnostic")
    check.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    check.add_argument("--schema", metavar="FILE", help="validate against this schema (YAML)")
    check.set_defaults(handler=_cmd_check)

    fmt = sub.add_parser("fmt", help="format policy files canonically, in place")
    fmt.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    fmt.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    fmt.add_argument("--diff", action="store_true", help="print a diff instead of writing")
    fmt.set_defaults(handler=_cmd_fmt)

    evaluate = sub.add_parser("eval", help="decide one request and print the decision as JSON")
    evaluate.add_argument("--policies", nargs="+", required=True, metavar="PATH")
    evaluate.add_argument("--request", required=True, metavar="FILE", help="JSON file, or -")
    evaluate.add_argument("--schema", metavar="FILE", help="validate the set and the request")
    evaluate.add_argument("--now", metavar="RFC3339", help="the clock, for requests without time")
    evaluate.add_argument(
        "--audit",
        metavar="URL",
        help="append the decision's audit record (database URL or jsonl:PATH)",
    )
    evaluate.set_defaults(handler=_cmd_eval)

    test = sub.add_parser("test", help="run policy test files (spec §9 format)")
    test.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (*.yaml)")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(handler=_cmd_test)

    for module_name, function in _PLUGGED if plugged else ():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        getattr(module, function)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aegis`` command; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(plugged=command not in _CORE)
    args = parser.parse_args(arguments)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except _UsageError as exc:
        print(f"aegis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except AegisError as exc:
        print(f"aegis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # the last resort: a message, never a traceback
        print(
            f"aegis {args.command}: internal error: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
