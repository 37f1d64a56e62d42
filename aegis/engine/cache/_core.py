"""Keys, projections, the decision codec and the :class:`DecisionCache` protocol.

The public names are re-exported by :mod:`aegis.engine.cache`; see its docstring.
"""

from __future__ import annotations

import functools
import hashlib
import json
import json.encoder
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from aegis.engine.decision import Decision
from aegis.engine.errors import CacheUnavailableError, EngineError, InvalidRequestError
from aegis.errors import ConfigurationError

__all__ = [
    "DEFAULT_TTL",
    "MAX_TTL",
    "DecisionCache",
    "DecisionDecoder",
    "KeyBuilder",
    "cache_key",
    "canonical_json",
    "check_ttl",
    "decode_decision",
    "encode_decision",
    "project",
    "projector",
]

DEFAULT_TTL = 60.0
"""Seconds an entry lives when ``put`` is given no TTL (CACHE-1: at most 60 s)."""

MAX_TTL = 60.0
"""The largest TTL a shipped backend accepts (CACHE-1)."""


@runtime_checkable
class DecisionCache(Protocol):
    """A store of encoded decisions by cache key.

    Contract for every backend:

    * **Values** are opaque bytes: the engine stores :func:`encode_decision` output and reads
      it back with :func:`decode_decision`. ``get`` returns exactly the bytes given to the
      last ``put`` of that key while the entry lives, or ``None``. A backend whose storage can
      be written by others (a network cache) validates a value with :func:`decode_decision`
      before returning it and raises :class:`CacheUnavailableError` for garbage.
    * **TTL**: ``put(key, value, ttl)`` keeps the entry at most ``ttl`` seconds (``None``: the
      backend's default, at most :data:`MAX_TTL`). A backend may drop an entry earlier
      (eviction); a miss is always a correct answer.
    * **Thread safety**: both methods may be called concurrently from any number of threads.
    * **Errors**: the only exception a backend raises for an operational failure (unreachable
      server, timeout, open circuit breaker, corrupt value) is
      :class:`~aegis.engine.errors.CacheUnavailableError`, raised ``from`` the cause. The
      engine turns it into a cache bypass; it never becomes a decision.
    """

    def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or ``None`` on a miss or an expired entry.

        Raises:
            CacheUnavailableError: the backend failed or holds garbage under ``key``.
        """
        ...

    def put(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for at most ``ttl`` seconds (``None``: the default).

        Raises:
            CacheUnavailableError: the backend failed; nothing is known to be stored.
        """
        ...


# --------------------------------------------------------------------------- projection

_ObjectLike = Mapping


def project(
    request_parts: Mapping[str, Any], read_paths: Iterable[Sequence[str]]
) -> dict[str, Any]:
    """Project a request onto the attribute paths a policy set reads.

    The result keeps, for every read path, exactly what evaluation can observe there:

    * a read path that exists keeps its whole value (``("principal",)`` keeps the whole
      principal), ``null`` included;
    * a read path that is *missing* (spec §4: an absent key, or a step through something
      that is not an object) is left out, so *missing* and ``null`` differ;
    * nothing else is kept: an object on the way to a read path appears only with the keys
      that lead to present read paths, so ``labels: {}``, ``labels: null`` and no ``labels``
      project alike when only ``labels["app"]`` is read.

    Two requests therefore project equally exactly when every read path observes the same
    value (numbers compared by value, see :func:`canonical_json`) — the property the tests
    check. Requests whose projections are equal get the same decision from the set, provided
    ``read_paths`` lists every path the set reads (``has`` paths included).

    Args:
        request_parts: the request by root: ``principal``, ``action``, ``resource``,
            ``context`` as in the request (JSON values, or the engine's normalised values),
            and ``time`` as a mapping from IANA zone to that zone's time object (spec §4:
            ``year month day hour minute weekday date clock epoch``). Only the zones and
            fields named by ``read_paths`` are looked at, so ``time`` may be a lazy mapping.
        read_paths: path tuples, e.g. ``("resource", "kind")``, ``("principal",)`` for a
            whole root, ``("time", "Europe/Berlin", "hour")`` for a time field in a zone.

    Returns:
        A nested ``dict`` to give to :func:`cache_key`.
    """
    return projector(read_paths)(request_parts)


def projector(
    read_paths: Iterable[Sequence[str]],
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A reusable :func:`project` for one set of read paths (build it once per policy set).

    ``projector(paths)(parts) == project(parts, paths)``; the path tree is built only once.
    """
    tree = _path_tree(read_paths)

    def apply(request_parts: Mapping[str, Any]) -> dict[str, Any]:
        return _restrict(request_parts, tree)

    return apply


def _path_tree(read_paths: Iterable[Sequence[str]]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    # INVARIANT: a node of ``tree`` is either ``True`` (keep the whole value) or a dict of
    # child nodes; a shorter path absorbs every longer one through it.
    for path in read_paths:
        if not path:
            continue
        node = tree
        for i, step in enumerate(path):
            if i == len(path) - 1:
                node[step] = True
                break
            child = node.get(step)
            if child is True:
                break
            if child is None:
                child = node[step] = {}
            node = child
    return tree


def _restrict(value: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key not in value:
            continue
        child = value[key]
        if sub is True:
            out[key] = child
        elif isinstance(child, _ObjectLike):
            inner = _restrict(child, sub)
            if inner:
                out[key] = inner
    return out


# --------------------------------------------------------------------------- canonical JSON

_dump_str: Callable[[str], str] = json.encoder.encode_basestring_ascii


def canonical_json(value: Any) -> str:
    """Serialise a JSON value canonically: one text per value, for hashing.

    Objects have their keys sorted by code point; there is no whitespace; strings are
    ASCII-escaped JSON strings; numbers are written from their exact decimal value with
    trailing zeros removed, so ``1``, ``1.0`` and ``Decimal("1.00")`` are all ``1``, and a
    float is read as the shortest decimal that prints it (``0.1`` is ``0.1``). Booleans stay
    ``true``/``false``, never numbers. Tuples are lists; any ``Mapping`` is an object.

    Raises:
        InvalidRequestError: the value holds something that is not JSON (NaN, infinity, a
            non-string key, another type).
    """
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    # Exact-type dispatch first (the common case), then the general isinstance checks.
    kind = type(value)
    if kind is str:
        out.append(_dump_str(value))
    elif kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        out.append("{")
        first = True
        for key in sorted(value):
            if not isinstance(key, str):
                raise InvalidRequestError(f"object key `{key!r}` is not a string")
            if first:
                first = False
            else:
                out.append(",")
            out.append(_dump_str(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif kind is list or kind is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(_int_text(value))
    elif kind is Decimal or kind is float:
        out.append(_decimal_text(value))
    elif isinstance(value, str):
        _write(str(value), out)
    elif isinstance(value, bool):
        _write(bool(value), out)
    elif isinstance(value, int):
        out.append(_int_text(int(value)))
    elif isinstance(value, float | Decimal):
        out.append(_decimal_text(value))
    elif isinstance(value, list | tuple):
        _write(list(value), out)
    else:
        raise InvalidRequestError(f"value of type `{type(value).__name__}` is not JSON")


def _int_text(value: int) -> str:
    return str(value)


# Integral numbers are written as plain digits up to this many trailing zeros (an int has no
# other form); beyond it, ``<digits>e<zeros>``, so that a request cannot make us expand
# ``1e999999`` into a million digits. The two forms never describe different values, so
# the only cost of the cut is a cache miss between a 1,000-digit int and its Decimal.
_MAX_PLAIN_EXPONENT = 1000


def _decimal_text(value: float | Decimal) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequestError(f"number `{value!r}` is not a JSON number")
        number = Decimal(repr(value))
    else:
        number = value
        if not number.is_finite():
            raise InvalidRequestError(f"number `{value}` is not a JSON number")
    if number.is_zero():
        return "0"
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    # Drop trailing zeros from the digits (exact, unlike Decimal.normalize under a context).
    while len(digits) > 1 and digits[-1] == 0:
        digits = digits[:-1]
        exponent += 1
    text = "".join(map(str, digits))
    minus = "-" if sign else ""
    if exponent >= 0:
        if exponent <= _MAX_PLAIN_EXPONENT:
            return f"{minus}{text}{'0' * exponent}"
        return f"{minus}{text}e{exponent}"
    if -exponent > _MAX_PLAIN_EXPONENT:
        return f"{minus}{text}e{exponent}"
    if -exponent >= len(text):
        return f"{minus}0.{'0' * (-exponent - len(text))}{text}"
    return f"{minus}{text[:exponent]}.{text[exponent:]}"


def cache_key(version: str, projection: Mapping[str, Any]) -> str:
    """The cache key of a projected request under a policy-set version (CACHE-1).

    The key is ``"<version>:<sha256>"``: the SHA-256 (hex) of the canonical JSON of
    ``[version, projection]``. The digest alone separates entries (it covers the version);
    the readable version prefix only namespaces them, so that an operator can find or drop
    one set's entries in a shared store.

    Args:
        version: the policy set's version (its content hash).
        projection: the output of :func:`project`.

    Returns:
        The key to give to :meth:`DecisionCache.get` / :meth:`DecisionCache.put`.

    Raises:
        InvalidRequestError: the projection holds a value that is not JSON.
    """
    text = canonical_json([version, projection])
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()
    return f"{version}:{digest}"


class KeyBuilder:
    """The cache key of a request for one set of read paths: the engine's hot path.

    It observes exactly what :func:`project` keeps — the value at every read path, *missing*
    distinct from ``null``, numbers by value — but encodes it positionally, which is about
    three times cheaper than building and serialising the projection: the canonical JSON of
    ``[version, paths, o1, o2, ...]`` where ``paths`` is the sorted list of read paths (a
    path under another read path is covered by it and dropped) and ``oi`` is ``[value]`` when
    path ``i`` is present and ``0`` when it is missing. A present observation is always a
    one-element list, so it can never be confused with a missing one, and the hashed text
    names the paths, so two sets' keys never meet even under one version.

    Keys have the form of :func:`cache_key` (``"<version>:<sha256>"``) but a different text
    is hashed, so use one scheme per cache: the engine uses this one.

    Args:
        read_paths: as for :func:`project`.

    Usage::

        keys = KeyBuilder(compiled_set.reads)          # once per policy set
        key = keys.key(version, parts, time_view=view)  # per request
    """

    __slots__ = ("_paths", "_paths_text")

    def __init__(self, read_paths: Iterable[Sequence[str]]) -> None:
        unique = sorted({tuple(p) for p in read_paths if p})
        kept: list[tuple[str, ...]] = []
        for path in unique:  # sorted: a covering prefix comes before the paths under it
            if not any(path[: len(prefix)] == prefix for prefix in kept):
                kept.append(path)
        self._paths = tuple(kept)
        self._paths_text = canonical_json([list(p) for p in kept])

    @property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        """The read paths observed, in key order (covered paths dropped)."""
        return self._paths

    def key(
        self,
        version: str,
        parts: Mapping[str, Any],
        time_view: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> str:
        """The key of ``parts`` under ``version``.

        Args:
            version: the policy set's version.
            parts: as for :func:`project`; ``time`` may be left out when ``time_view`` is given.
            time_view: ``zone -> time object``; when given, ``time`` paths read it, and only
                the zones the set reads are computed. (A path ``("time",)`` reading the whole
                root needs ``parts["time"]``.)

        Raises:
            InvalidRequestError: a read value is not JSON.
        """
        pieces = [_dump_str(version), self._paths_text]
        for value in self._observed(parts, time_view):
            pieces.append("0" if value is _MISSING_MARK else f"[{_leaf_text(value)}]")
        text = f"[{','.join(pieces)}]"
        return f"{version}:{hashlib.sha256(text.encode('ascii')).hexdigest()}"


    def observation(
        self,
        parts: Mapping[str, Any],
        time_view: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> tuple[Any, ...]:
        """A hashable in-process key: what the read paths observe, as Python values.

        Cheaper than :meth:`key` (no text, no hash function), for an in-process memo in
        front of a :class:`DecisionCache` (combine it with the version). Two observations
        are equal only when every read path observes the same value: lists become tuples,
        objects frozensets of items, and booleans tagged so that ``True`` never equals
        ``1``. Numbers compare as Python does, by value (``1 == 1.0``), except that a float
        and a ``Decimal`` of the same decimal value can differ (``0.1`` vs
        ``Decimal("0.1")``): a miss, never a wrong hit. Not stable across processes: never
        use it as a key in a shared store.

        Raises:
            InvalidRequestError: a read value is not JSON.
        """
        out: list[Any] = []
        for value in self._observed(parts, time_view):
            kind = type(value)
            out.append(value if kind is str or kind is int else _frozen(value))
        return tuple(out)

    def _observed(
        self,
        parts: Mapping[str, Any],
        time_view: Callable[[str], Mapping[str, Any]] | None,
    ) -> Iterator[Any]:
        """What each read path observes, in path order (``_MISSING_MARK`` when missing)."""
        for path in self._paths:
            value: Any = parts
            steps = path
            if time_view is not None and path[0] == "time" and len(path) > 1:
                value = time_view(path[1])
                steps = path[2:]
            for step in steps:
                kind = type(value)
                if (
                    kind is dict or kind is MappingProxyType or isinstance(value, Mapping)
                ) and step in value:
                    value = value[step]
                else:
                    value = _MISSING_MARK
                    break
            yield value



_MISSING_MARK: Any = object()
_TRUE: Any = object()
_FALSE: Any = object()


def _frozen(value: Any) -> Any:
    """A hashable stand-in equal to another exactly when the JSON values are equal."""
    kind = type(value)
    if kind is str or kind is int or value is None or value is _MISSING_MARK:
        return value
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if kind is float or kind is Decimal:
        if not value.is_finite() if kind is Decimal else not math.isfinite(value):
            raise InvalidRequestError(f"number `{value!r}` is not a JSON number")
        return value
    if kind is list or kind is tuple:
        if all(type(item) is str for item in value):
            return ("l", *value)
        return ("l", *map(_frozen, value))
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise InvalidRequestError(f"object key `{key!r}` is not a string")
        return frozenset((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, str | int | float | Decimal | list | tuple):
        return _frozen(_plain_copy(value))
    raise InvalidRequestError(f"value of type `{type(value).__name__}` is not JSON")


def _plain_copy(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Decimal):
        return Decimal(value)
    return list(value)


def _leaf_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _dump_str(value)
    if kind is int:
        return str(value)
    if kind is Decimal:
        text = str(value)  # "10" for Decimal(10); a sign, "." or "E" goes the long way
        return text if text.isdigit() else _decimal_text(value)
    if (kind is list or kind is tuple) and all(type(item) is str for item in value):
        return f"[{','.join(map(_dump_str, value))}]"
    return canonical_json(value)


# --------------------------------------------------------------------------- decision codec

_DECISION_KEYS = frozenset({"decision", "allowed", "reason", "allow", "deny", "errors", "version"})


def encode_decision(decision: Mapping[str, Any]) -> bytes:
    """Encode a decision's ``to_dict()`` form as the bytes a cache stores (compact JSON).

    Raises:
        CacheUnavailableError: the mapping is not a decision (see :func:`decode_decision`).
    """
    data = json.dumps(decision, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoded = data.encode("utf-8")
    decode_decision(encoded)
    return encoded


def decode_decision(value: bytes) -> dict[str, Any]:
    """Decode and check cached bytes: the ``Decision.to_dict()`` shape, nothing else.

    The shape is ``{"decision": "ALLOW"|"DENY", "allowed": bool (agreeing with it), "reason":
    str, "allow": [str], "deny": [str], "errors": [{"rule": str, "message": str}],
    "version": str}``.

    Raises:
        CacheUnavailableError: the bytes are not such a decision (corrupt or foreign entry).
    """
    try:
        data = json.loads(value)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise CacheUnavailableError("cached value is not valid json") from exc
    if not isinstance(data, dict) or set(data) != _DECISION_KEYS:
        raise CacheUnavailableError("cached value is not a decision")
    ok = (
        data["decision"] in ("ALLOW", "DENY")
        and data["allowed"] is (data["decision"] == "ALLOW")
        and isinstance(data["reason"], str)
        and isinstance(data["version"], str)
        and _strings(data["allow"])
        and _strings(data["deny"])
        and isinstance(data["errors"], list)
        and all(
            isinstance(e, dict)
            and set(e) == {"rule", "message"}
            and isinstance(e["rule"], str)
            and isinstance(e["message"], str)
            for e in data["errors"]
        )
    )
    if not ok:
        raise CacheUnavailableError("cached value is not a decision")
    return data


class DecisionDecoder:
    """Cached bytes -> :class:`~aegis.engine.decision.Decision`, memoised by the bytes.

    A hit decodes the same few bytes over and over (``json.loads``, the shape check and
    ``Decision.from_dict`` cost about as much as evaluating a small set); decisions are
    immutable, so the decoder keeps the last ``maxsize`` distinct values' decisions. Garbage
    is never memoised: it raises every time. Thread-safe.

    Args:
        maxsize: distinct encoded decisions remembered (least recently used dropped).

    Usage::

        decode = DecisionDecoder()
        decision = decode(cache.get(key))
    """

    __slots__ = ("_memo",)

    def __init__(self, maxsize: int = 4096) -> None:
        self._memo = functools.lru_cache(maxsize=maxsize)(_decode_to_decision)

    def __call__(self, value: bytes) -> Decision:
        """Decode (or recall) one cached value.

        Raises:
            CacheUnavailableError: the bytes are not a decision.
        """
        return self._memo(bytes(value))


def _decode_to_decision(value: bytes) -> Decision:
    data = decode_decision(value)
    try:
        return Decision.from_dict(data)
    except (EngineError, ValueError) as exc:
        raise CacheUnavailableError("cached value is not a decision") from exc


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def check_ttl(ttl: float | None, default: float) -> float:
    """Resolve ``ttl`` (``None``: ``default``) and check it is in ``(0, MAX_TTL]``.

    Raises:
        ConfigurationError: the TTL is out of range (a programming or configuration error,
            not a cache failure).
    """
    resolved = default if ttl is None else ttl
    try:
        ok = 0 < float(resolved) <= MAX_TTL
    except (TypeError, ValueError, InvalidOperation):
        ok = False
    if not ok:
        raise ConfigurationError(f"ttl `{ttl}` is not in (0, {MAX_TTL:g}] seconds")
    return float(resolved)
