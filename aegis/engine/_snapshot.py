"""Compiled sets kept by content: a set is parsed, compiled and indexed once per content.

Loading 10,000 rules means parsing about 1.4 MB, hashing the canonical form of every rule and
building the index — about a second in Python. A *snapshot* keeps what that work produced
and what a decision needs: the set's version, each rule's outcome (name, effect, reason) and
where its text is, the attributes the set reads, and the whole index (tables, masks, which
conjunct each candidate's residual test may skip). Restoring one reads a JSON document and
rebuilds the index's dictionaries; each rule is parsed and compiled only when it is first a
candidate, from its own slice of the text (:func:`~aegis.lang._fastparse.fast_parse_rule`).
The policy set itself (every rule's syntax tree) is loaded only if someone asks for it.

A snapshot is found by the SHA-256 of the format, the library's own code (every source file
of ``aegis.lang`` and ``aegis.engine``) and every policy file's name and text, so any change
of any of them misses. It is plain data — JSON, never a pickle or code — read back under
checks:

* the directory must belong to the process's user and be writable by nobody else
  (otherwise it is not used at all, and that is logged once), as an attacker who could plant
  a snapshot there could change what the index selects;
* the file carries the SHA-256 of its payload and the key it was written for; anything that
  does not match, parse or restore is ignored (and removed), and the set is compiled from its
  texts as if there were no snapshot;
* a rule parsed from its slice must have the name and effect the snapshot recorded, and the
  policy set, when loaded, the snapshot's version; otherwise the engine fails closed
  (:class:`~aegis.engine.errors.EngineError`), never deciding with a set it cannot trust.

Snapshots are written atomically (a temporary file renamed into place); at most
:data:`MAX_ENTRIES` are kept, the least recently written removed first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import cache, partial
from pathlib import Path
from typing import Any, Final

from aegis.engine._compiler import CompiledPolicySet, RuleSource, _path_reader, compile_at
from aegis.engine._index import (
    Pending,
    RuleIndex,
    _Dimension,
    _FlatIndex,
    _Ident,
    _ShardedIndex,
    always,
    fallback_flat,
    placed,
)
from aegis.engine.errors import EngineError
from aegis.lang import ast
from aegis.lang._fastparse import fast_parse_rule
from aegis.lang.loader import PolicySet, content_key, load_texts

__all__ = [
    "ENV_VAR",
    "FORMAT",
    "MAX_ENTRIES",
    "MIN_RULES",
    "SnapshotStore",
    "code_fingerprint",
    "default_store",
    "dump",
    "restore",
    "snapshot_key",
]

_log = logging.getLogger("aegis.engine")

FORMAT: Final = 2
"""The snapshot format; part of the key, so a new format never reads an old file."""

MAX_ENTRIES: Final = 64
"""Snapshots kept per directory."""

MIN_RULES = 100
"""Smaller sets compile in milliseconds: they are not worth a file."""

ENV_VAR: Final = "AEGIS_COMPILED_CACHE"
"""A directory for snapshots, or ``off`` (also ``0``, ``false``, ``no``, empty) for none."""

_MAGIC: Final = b"aegis-compiled-set"
_OFF: Final = frozenset({"", "0", "off", "false", "no", "none"})


@cache
def code_fingerprint() -> str:
    """SHA-256 of the code a snapshot's meaning depends on: every source file of
    ``aegis.lang`` and ``aegis.engine`` (parser, grammar, formatter, compiler, index, this
    module). A snapshot written by other code — another release, a local change — is never
    read, even when the version number did not change."""
    digest = hashlib.sha256()
    for package in (Path(ast.__file__).parent, Path(__file__).parent):
        for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".lark")):
            digest.update(f"{package.name}/{path.relative_to(package).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def snapshot_key(texts: Mapping[str, str]) -> str:
    """The content address of a set's snapshot: format, code, file names and texts.

    Raises:
        OSError: the library's own source files cannot be read (no snapshots then).
    """
    header = f"{_MAGIC.decode()} {FORMAT} {code_fingerprint()} {content_key(texts)}"
    return hashlib.sha256(header.encode()).hexdigest()


# --------------------------------------------------------------------------- dump


def dump(compiled: CompiledPolicySet) -> dict[str, Any]:
    """The JSON-ready snapshot of a compiled set (see the module docstring)."""
    rules = compiled.policy_set.rules
    locations = []
    for rule in rules:
        first = rule.annotations[0].span if rule.annotations else rule.span
        end = rule.span
        locations.append(
            [end.file, rule.timezone, first.line, first.column, end.end_line, end.end_column]
        )
    return {
        "format": FORMAT,
        "version": compiled.version,
        "outcomes": [list(outcome) for outcome in compiled._outcomes],
        "locations": locations,
        "reads": sorted(list(path) for path in compiled.reads),
        "index": _dump_index(compiled._index),
    }


def _dump_index(node: RuleIndex) -> dict[str, Any]:
    if isinstance(node, _FlatIndex):
        return {
            "dimensions": [
                [
                    d.kind,
                    d.path.root,
                    list(d.path.keys),
                    d.zone,
                    _hex(d.default),
                    [[_dump_key(key), _hex(mask)] for key, mask in d.table.items()],
                ]
                for d in node.dimensions
            ],
            "everything": _hex(node.everything),
            "members": list(node.members),
            "residual": [[member, sorted(proven)] for member, proven in node.residual_keys],
            "always": _hex(node.always),
        }
    assert isinstance(node, _ShardedIndex)
    return {
        "shard": [node.path.root, list(node.path.keys), node.zone],
        "shards": [[_dump_key(key), _dump_index(sub)] for key, sub in node.shards.items()],
        "unpinned": _dump_index(node.unpinned),
        "members": list(node.members),
        "proven": sorted([kind, root, list(keys), zone] for kind, root, keys, zone in node.proven),
    }


def _hex(value: int) -> str:
    return format(value, "x")  # hexadecimal: exempt from int()'s limit on decimal digits


def _dump_key(key: Any) -> Any:
    """An index key (see :func:`~aegis.engine._index.canonical_key`) as JSON."""
    if type(key) is str:
        return key
    if type(key) is int:  # a range dimension's integer
        return ["i", key]
    tag, value = key
    if tag == "b":
        return ["b", value]
    return ["n", str(value)] if isinstance(value, Decimal) else ["n", value]


def _load_key(raw: Any) -> Any:
    if type(raw) is str:
        return raw
    tag, value = raw
    if tag == "i" and type(value) is int:
        return value
    if tag == "b" and type(value) is bool:
        return ("b", value)
    if tag == "n" and type(value) is int:
        return ("n", value)
    if tag == "n" and type(value) is str:
        return ("n", Decimal(value))
    raise ValueError(f"bad index key {raw!r}")


# --------------------------------------------------------------------------- restore


class _Rules:
    """Rules of a restored set, each parsed from its own slice of its file when first needed."""

    __slots__ = ("_lines", "_loaded", "_locations", "_lock", "_materialize", "_outcomes", "_texts")

    def __init__(
        self,
        texts: Mapping[str, str],
        locations: list[list[Any]],
        outcomes: tuple[tuple[str, bool, str], ...],
        materialize: Callable[[], PolicySet],
    ) -> None:
        self._texts = texts
        self._locations = locations
        self._outcomes = outcomes
        self._materialize = materialize
        self._loaded: list[ast.Rule | None] = [None] * len(locations)
        self._lines: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def __call__(self, position: int) -> ast.Rule:
        rule = self._loaded[position]
        if rule is None:
            rule = self._loaded[position] = self._parse(position)
        return rule

    def _parse(self, position: int) -> ast.Rule:
        file, zone, line, column, end_line, end_column = self._locations[position]
        text = self._texts[file]
        starts = self._line_starts(file, text)
        start = starts[line - 1] + column - 1
        rule = fast_parse_rule(
            text,
            file,
            zone,
            start=start,
            end=starts[end_line - 1] + end_column - 1,
            line=line,
            line_start=starts[line - 1],
        )
        if rule is None:  # a construct the fast parser declines: the grammar parses the set
            rule = self._materialize().rules[position]
        name, deny, _ = self._outcomes[position]
        if rule.name != name or (rule.effect == "deny") != deny:
            raise EngineError(f"compiled snapshot does not match the policy texts at rule {name!r}")
        return rule

    def _line_starts(self, file: str, text: str) -> list[int]:
        starts = self._lines.get(file)
        if starts is None:
            with self._lock:
                starts = self._lines.get(file)
                if starts is None:
                    starts = [0, *(m.end() for m in re.finditer("\n", text))]
                    self._lines[file] = starts
        return starts


def restore(
    data: Mapping[str, Any], texts: Mapping[str, str], policy_set: PolicySet | None = None
) -> CompiledPolicySet:
    """A compiled set from its snapshot and the texts it was made from.

    With ``policy_set`` (already loaded from ``texts``), its rules are used as they are;
    without, rules are parsed from their slices when first needed and the whole set only if
    asked for.

    Raises:
        ValueError, KeyError, TypeError: the snapshot is malformed (the caller compiles).
    """
    if data.get("format") != FORMAT:
        raise ValueError("not a snapshot of this format")
    version = data["version"]
    outcomes = tuple((str(n), bool(d), str(s)) for n, d, s in data["outcomes"])
    locations = data["locations"]
    if len(locations) != len(outcomes):
        raise ValueError("snapshot rules and locations differ in number")
    source: RuleSource
    if policy_set is not None:
        if policy_set.version != version or len(policy_set.rules) != len(outcomes):
            raise ValueError("snapshot of another set")
        source = policy_set
        rule_at: Callable[[int], ast.Rule] = policy_set.rules.__getitem__
    else:
        source = _Materialize(texts)
        rule_at = _Rules(texts, locations, outcomes, source)
    residuals: dict[tuple[int, frozenset[int]], Pending] = {}
    index = _load_index(data["index"], rule_at, residuals, len(outcomes))
    reads = frozenset(tuple(str(step) for step in path) for path in data["reads"])
    return CompiledPolicySet.restored(
        source, rule_at=rule_at, index=index, version=version, outcomes=outcomes, reads=reads
    )


class _Materialize:
    """Loads the whole set from its texts, once (a compiled set's lazy source)."""

    __slots__ = ("_lock", "_set", "_texts")

    def __init__(self, texts: Mapping[str, str]) -> None:
        self._texts = texts
        self._set: PolicySet | None = None
        self._lock = threading.Lock()

    def __call__(self) -> PolicySet:
        with self._lock:
            if self._set is None:
                self._set = load_texts(self._texts)
            return self._set


def _load_index(
    raw: Mapping[str, Any],
    rule_at: Callable[[int], ast.Rule],
    residuals: dict[tuple[int, frozenset[int]], Pending],
    size: int,
) -> RuleIndex:
    if "shard" in raw:
        root, keys, zone = raw["shard"]
        path = ast.Path(root, tuple(keys))
        members = tuple(int(m) for m in raw["members"])
        proven: frozenset[_Ident] = frozenset(
            (kind, r, tuple(k), z) for kind, r, k, z in raw["proven"]
        )

        def make_flat() -> _FlatIndex:
            return fallback_flat(rule_at, members, proven, _path_reader)

        return _ShardedIndex(
            _path_reader(path, zone or "UTC"),
            {
                _load_key(key): _load_index(sub, rule_at, residuals, size)
                for key, sub in raw["shards"]
            },
            _load_index(raw["unpinned"], rule_at, residuals, size),
            make_flat,
            path,
            zone,
            members,
            proven,
        )
    everything = int(raw["everything"], 16)
    dimensions = []
    for kind, root, keys, zone, default, table in raw["dimensions"]:
        if kind not in ("eq", "contains", "range"):
            raise ValueError(f"bad dimension kind {kind!r}")
        dimension = _Dimension(kind, ast.Path(root, tuple(keys)), zone)
        dimension.table = {_load_key(key): int(mask, 16) for key, mask in table}
        dimension.finish(_path_reader(dimension.path, zone or "UTC"), int(default, 16), everything)
        dimensions.append(dimension)
    members = tuple(raw["members"])
    if any(type(m) is not int or not 0 <= m < size for m in members):
        raise ValueError("bad index member")
    if everything != (1 << len(members)) - 1:
        raise ValueError("bad index mask")
    always_mask = int(raw["always"], 16)
    if always_mask & ~everything:
        raise ValueError("bad index mask")
    residual_keys = []
    tests: list[Callable[[Any], Any]] = []
    for bit, (member, proof) in enumerate(raw["residual"]):
        key = (int(member), frozenset(int(p) for p in proof))
        test: Callable[[Any], Any] | None
        if always_mask >> bit & 1:
            test = always  # the index proves every conjunct: nothing to compile
        else:
            test = residuals.get(key)
            if test is None:
                test = residuals[key] = Pending(partial(compile_at, rule_at, key[0], key[1]))
        residual_keys.append(key)
        tests.append(test)
    if [m for m, _ in residual_keys] != list(members):
        raise ValueError("residual tests do not follow the members")
    return _FlatIndex(
        tuple(dimensions), everything, members, placed(tests), tuple(residual_keys), always_mask
    )


# --------------------------------------------------------------------------- the store


_warned: set[Path] = set()


class SnapshotStore:
    """A directory of snapshots by key (see the module docstring for the checks).

    Every failure to read or write is logged and leaves the caller compiling from the texts:
    a snapshot store can make loading faster, never make it fail.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"SnapshotStore({str(self.directory)!r})"

    def _usable(self, create: bool) -> bool:
        """The directory is ours and nobody else may write to it."""
        try:
            if create:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
        except OSError:
            return False
        owner_ok = not hasattr(os, "geteuid") or info.st_uid == os.geteuid()
        if owner_ok and not info.st_mode & 0o022:
            return True
        if self.directory not in _warned:
            _warned.add(self.directory)  # once per directory and process
            _log.warning(
                "compiled-set cache %s not used: it must belong to this user and be writable "
                "by nobody else (chmod 700)",
                self.directory,
            )
        return False

    def _file(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The snapshot stored under ``key``, or ``None`` (missing, unusable or damaged)."""
        if not self._usable(create=False):
            return None
        path = self._file(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        header, _, payload = raw.partition(b"\n")
        parts = header.split(b" ")
        if (
            len(parts) != 4
            or parts[0] != _MAGIC
            or parts[1] != str(FORMAT).encode()
            or parts[2] != key.encode()
            or parts[3] != hashlib.sha256(payload).hexdigest().encode()
        ):
            self.discard(key, "its header or checksum does not match")
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            self.discard(key, "it is not JSON")
            return None
        return data if isinstance(data, dict) else None

    def store(self, key: str, data: Mapping[str, Any]) -> None:
        """Write ``data`` under ``key`` atomically (best effort; failures are logged)."""
        if not self._usable(create=True):
            return
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        checksum = hashlib.sha256(payload).hexdigest().encode()
        header = b" ".join([_MAGIC, str(FORMAT).encode(), key.encode(), checksum])
        try:
            fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(header + b"\n" + payload)
                os.replace(temporary, self._file(key))
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            _log.info("compiled set not cached in %s: %s", self.directory, exc)
            return
        self._prune()

    def discard(self, key: str, why: str) -> None:
        """Remove a snapshot that cannot be used."""
        _log.warning("compiled-set snapshot %s… ignored: %s", key[:12], why)
        with contextlib.suppress(OSError):
            self._file(key).unlink()

    def _prune(self) -> None:
        try:
            entries = sorted(
                (entry.stat().st_mtime, entry)
                for entry in self.directory.glob("*.json")
                if entry.is_file()
            )
            for _, entry in entries[: max(0, len(entries) - MAX_ENTRIES)]:
                entry.unlink()
        except OSError:
            pass


def default_store() -> SnapshotStore | None:
    """The store named by ``AEGIS_COMPILED_CACHE``, else ``$XDG_CACHE_HOME/aegis/compiled``
    (``~/.cache/aegis/compiled``); ``None`` when the variable turns snapshots off."""
    configured = os.environ.get(ENV_VAR)
    if configured is not None:
        if configured.strip().lower() in _OFF:
            return None
        return SnapshotStore(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return SnapshotStore(os.path.join(base, "aegis", "compiled"))
