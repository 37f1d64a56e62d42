"""Policy sets from files, directories or strings: all or nothing (spec §1).

A set is the union of the rules of its files. Loading either succeeds completely or raises
:class:`~aegis.lang.errors.PolicyLoadError` with every diagnostic of every file (syntax errors,
bad escapes, unknown time zones, duplicate rule names naming both places).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from aegis.lang import ast
from aegis.lang._gc import paused_gc
from aegis.lang._parser import MAX_FILE_BYTES, parse_text
from aegis.lang.diagnostics import Diagnostic, Span
from aegis.lang.errors import PolicyLoadError
from aegis.lang.formatter import format_rule, format_string

__all__ = [
    "PolicySet",
    "collect_policy_files",
    "content_key",
    "load_paths",
    "load_texts",
    "parse_policy",
    "read_paths",
]

_EXTENSION = ".aegis"


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A loaded, immutable policy set.

    Attributes:
        files: the parsed files, sorted by name.
        rules: every rule of every file, sorted by name (names are unique).
        version: the set's content hash (64 hex digits): SHA-256 of the canonical formatting
            of its rules sorted by name, each with its file's time zone. It does not depend on
            file names, rule or file order, comments or layout (spec §6).
        sources: file name → source text, for rendering diagnostics.
    """

    files: tuple[ast.PolicyFile, ...]
    rules: tuple[ast.Rule, ...]
    version: str
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def source_line(self, span: Span) -> str | None:
        """The text of the first line of ``span``, if its file's source is known."""
        return _line_of(self.sources.get(span.file), span.line)

    def rule(self, name: str) -> ast.Rule:
        """The rule called ``name``.

        Raises:
            KeyError: no rule has that name.
        """
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def set_version(rules: Iterable[ast.Rule]) -> str:
    """The content hash of a set of rules (see :attr:`PolicySet.version`)."""
    digest = hashlib.sha256()
    for rule in sorted(rules, key=lambda r: r.name):
        digest.update(f"timezone {format_string(rule.timezone)}\n".encode())
        digest.update(format_rule(rule).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def _line_of(text: str | None, line: int) -> str | None:
    if text is None:
        return None
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else None


def _with_sources(
    diagnostics: Iterable[Diagnostic], sources: Mapping[str, str]
) -> list[Diagnostic]:
    return [
        d
        if d.source_line is not None
        else dataclasses.replace(d, source_line=_line_of(sources.get(d.span.file), d.span.line))
        for d in diagnostics
    ]


@lru_cache(maxsize=1024)
def _parse_cached(text: str, file: str) -> tuple[ast.PolicyFile | None, tuple[Diagnostic, ...]]:
    """Parse once per (text, file name): a store reloading a set of many files re-parses only
    the files that changed. Trees are immutable, so sharing them is safe."""
    tree, diagnostics = parse_text(text, file)
    return tree, tuple(diagnostics)


def parse_policy(text: str, file: str = "<string>") -> ast.PolicyFile:
    """Parse one policy file's text.

    Args:
        text: the source.
        file: the name used in spans and diagnostics.

    Returns:
        The parsed file.

    Raises:
        PolicyLoadError: with every diagnostic found.

    Usage::

        policy = parse_policy('allow "read" { action == "read" }', "read.aegis")
    """
    tree, diagnostics = _parse_cached(text, file)
    if diagnostics or tree is None:
        raise PolicyLoadError(_with_sources(diagnostics, {file: text}))
    return tree


_LOADED_SETS = 8
"""Policy sets remembered by content (see :func:`load_texts`)."""
_loaded: dict[str, PolicySet] = {}
_loaded_lock = threading.Lock()


def content_key(texts: Mapping[str, str]) -> str:
    """SHA-256 of file names and texts (length-prefixed: no two different mappings share it)."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        for part in (name, texts[name]):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return digest.hexdigest()


def load_texts(texts: Mapping[str, str]) -> PolicySet:
    """Load a policy set from ``{file name: source text}``.

    Sets are immutable, so the last few loaded are remembered by the SHA-256 of their file
    names and texts: loading the same content again (a store re-reading unchanged files, a
    second engine over the same policies) returns the same set without parsing or hashing
    its rules again.

    Raises:
        PolicyLoadError: with every diagnostic of every file; nothing is loaded.
    """
    key = content_key(texts)
    known = _loaded.get(key)
    if known is not None:
        return known
    loaded = _load_texts(texts)
    with _loaded_lock:
        _loaded[key] = loaded
        while len(_loaded) > _LOADED_SETS:
            del _loaded[next(iter(_loaded))]  # the oldest remembered set
    return loaded


def _load_texts(texts: Mapping[str, str]) -> PolicySet:
    files: list[ast.PolicyFile] = []
    diagnostics: list[Diagnostic] = []
    with paused_gc(sum(map(len, texts.values()))):
        for name in sorted(texts):
            tree, found = _parse_cached(texts[name], name)
            diagnostics.extend(found)
            if tree is not None:
                files.append(tree)
    seen: dict[str, ast.Rule] = {}
    for policy in files:
        for rule in policy.rules:
            first = seen.get(rule.name)
            if first is None:
                seen[rule.name] = rule
                continue
            diagnostics.append(
                Diagnostic(
                    "duplicate-rule",
                    f"rule {format_string(rule.name)} is already defined at {first.name_span}",
                    rule.name_span,
                    help="rule names are unique in a set, across files and effects",
                )
            )
    if diagnostics:
        raise PolicyLoadError(_with_sources(diagnostics, texts))
    rules = tuple(sorted(seen.values(), key=lambda r: r.name))
    with paused_gc(sum(map(len, texts.values()))):
        version = set_version(rules)
    return PolicySet(tuple(files), rules, version, MappingProxyType(dict(texts)))


def collect_policy_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files named by ``paths``: files as given, directories searched for ``*.aegis``.

    Directories are read recursively; their files are returned sorted. A path that does not
    exist is returned as is, so that reading it reports the problem.
    """
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob(f"*{_EXTENSION}") if p.is_file()))
        else:
            out.append(path)
    return out


def load_paths(paths: Iterable[str | os.PathLike[str]]) -> PolicySet:
    """Load a policy set from files and directories (read recursively for ``*.aegis``).

    Raises:
        PolicyLoadError: with every diagnostic of every file (unreadable files included);
            nothing is loaded.

    Usage::

        policies = load_paths(["policies/"])
        print(policies.version, [rule.name for rule in policies.rules])
    """
    return load_texts(read_paths(paths))


def read_paths(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """The texts of the policy files named by ``paths`` (see :func:`collect_policy_files`),
    as ``{file name: source text}`` for :func:`load_texts`.

    Raises:
        PolicyLoadError: a file is unreadable, too large or not UTF-8; the diagnostics also
            include every problem of the files that could be read.
    """
    texts: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for path in collect_policy_files(paths):
        name = str(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                problems.append(
                    Diagnostic(
                        "file-too-large",
                        f"file is {size:,} bytes, more than the limit of {MAX_FILE_BYTES:,}",
                        Span(name, 1, 1, 1, 1),
                        help="split the policy set into several files",
                    )
                )
                continue
            data = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            message = f"cannot read file: {reason.lower()}"
            problems.append(Diagnostic("io-error", message, Span(name, 1, 1, 1, 1)))
            continue
        try:
            texts[name] = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode(
                "utf-8", "replace")) + 1
            problems.append(
                Diagnostic(
                    "encoding",
                    "file is not valid UTF-8",
                    Span(name, line, column, line, column + 1),
                )
            )
    if problems:
        try:
            load_texts(texts)
        except PolicyLoadError as exc:
            problems.extend(exc.diagnostics)
        raise PolicyLoadError(_with_sources(problems, texts))
    return texts
