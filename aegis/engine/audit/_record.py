"""The audit record (``AuditRecordV1``), its canonical JSON, and request masking."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson

from aegis.engine.errors import AuditError
from aegis.engine.request import as_document

__all__ = [
    "DEFAULT_SENSITIVE_KEYS",
    "GENESIS_HASH",
    "SCHEMA_VERSION",
    "AuditRecordV1",
    "Masker",
    "canonical_json",
    "decision_record",
    "event_record",
    "utc_timestamp",
]

SCHEMA_VERSION = 1
GENESIS_HASH = "00" * 32
"""``prev_hash`` of the first record of every chain: 32 zero bytes, hex."""

DEFAULT_SENSITIVE_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "set-cookie",
        "signature",
        "private_key",
        "client_secret",
        "credentials",
    }
)
"""Key names masked wherever they appear in a request (case-insensitive), unless disabled."""

# Random per process: user content cannot guess them (checked anyway in prepare()).
_PREV_MARK = f"aegis-prev-{uuid.uuid4().hex}"
_SEQ_MARK = f"aegis-seq-{uuid.uuid4().hex}"

_FIELDS = (
    "schema_version",
    "seq",
    "id",
    "time",
    "chain",
    "kind",
    "policy_version",
    "request",
    "decision",
    "allow",
    "deny",
    "errors",
    "reason",
    "data",
    "prev_hash",
    "hash",
)


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no whitespace, raw UTF-8, no NaN.

    Raises:
        AuditError: the value holds something JSON cannot represent (NaN, a set, an object).
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit record is not representable as JSON: {exc}") from exc


_FLOAT_TOKEN = re.compile(
    r"[:,\[]-?[0-9]+(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)(?=[,\]}])"
)
"""A float token of compact JSON text: a number with a fraction or an exponent, after ``:``,
``,`` or ``[`` and before ``,``, ``]`` or ``}`` (a lookahead: the delimiter may start the next
token). The same characters inside a string match too, which only costs a fallback."""


def _record_json(body: Mapping[str, Any]) -> str:
    """:func:`canonical_json` of a record's body, built through ``orjson`` when that gives
    the same text.

    ``orjson.dumps`` with sorted keys writes exactly what ``json.dumps`` writes here (same
    escapes for every code point, same key order, no whitespace) except for floats (``1e-05``
    is ``0.00001``) and for what ``json`` refuses or converts (NaN, non-string keys; integers
    beyond 64 bits ``orjson`` refuses). A record's body is plain JSON with finite numbers
    (:func:`_jsonable`), so: any float token in the text, or any refusal, and ``json`` writes
    the text instead. ``tests/engine/audit/test_audit_record.py`` checks the two against each
    other, every code point included.
    """
    if not _ORJSON_AGREES:
        return canonical_json(body)
    try:
        text = orjson.dumps(body, None, orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError: a big integer, a key that is not a string
        return canonical_json(body)
    if _FLOAT_TOKEN.search(text):  # json and orjson write some floats differently
        return canonical_json(body)
    return text


def _orjson_agrees() -> bool:
    """Whether the installed orjson writes what json writes on the characters and key orders
    that could differ (checked once, at import: a future orjson that escaped differently
    would otherwise change record hashes; the fast path is then simply not taken)."""
    tricky = "".join(map(chr, range(0x100))) + "\u2028\u2029\ufeff\uffff\U0001f600\\\""
    sample = {tricky: [tricky, 0, -1, 2**63 - 1, True, None], "\U0001f600": {"\uffff": ""}}
    try:
        return orjson.dumps(sample, None, orjson.OPT_SORT_KEYS).decode() == canonical_json(sample)
    except (TypeError, ValueError, AuditError):
        return False


_ORJSON_AGREES = _orjson_agrees()


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO-8601 UTC timestamp with microseconds and a ``Z`` suffix.

    Args:
        moment: an aware datetime (naive ones are taken as UTC); ``None`` means now.
    """
    moment = datetime.now(UTC) if moment is None else moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat is ~3x faster than strftime; it yields "...+00:00" for UTC
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class _Json(dict[str, Any]):
    """A JSON object already normalised by :func:`_jsonable` (not walked again)."""

    __slots__ = ()


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise AuditError(f"audit value in `{where}` is not a finite number")
    if isinstance(value, Decimal):  # JSON read with parse_float=Decimal (the CLI does)
        if not value.is_finite():
            raise AuditError(f"audit value in `{where}` is not a finite number")
        if value == value.to_integral_value():
            return int(value)
        return float(value)  # INVARIANT: recorded as the nearest double, then hashed as such
    if isinstance(value, datetime):
        return utc_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return _text(str(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    raise AuditError(f"audit value in `{where}` has unsupported type `{type(value).__name__}`")


def _text(value: str) -> str:
    """``value`` with lone surrogates (not encodable as UTF-8) replaced by U+FFFD."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def _jsonable(value: Any, where: str) -> Any:
    """A plain-JSON copy of ``value`` (dicts with string keys, lists, scalars)."""
    t = type(value)
    if t is str:
        return _text(value)
    if t is _Json or t is int or t is bool or value is None:
        return value
    if isinstance(value, Mapping):
        return _Json({_text(str(k)): _jsonable(v, where) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_jsonable(v, where) for v in value]
    return _scalar(value, where)


@dataclass(frozen=True)  # no slots: _clone copies __dict__ in one call (hot path)
class AuditRecordV1:
    """One audit record, version 1 of the format (habit H12).

    A record is built *unsealed* (``seq``, ``prev_hash`` and ``hash`` are ``None``); the sink
    that appends it to a chain seals it with :meth:`sealed`. Its hash is
    ``sha256(bytes.fromhex(prev_hash) + canonical_json(record without "hash").encode())``.

    Attributes:
        id: a UUID (string) naming the record.
        time: ISO-8601 UTC time the record was made (``2026-11-26T10:15:00.000000Z``).
        chain: the chain the record belongs to (``"decisions"``, ``"events"``); one store may
            keep several chains, each with its own gapless ``seq``.
        kind: ``"decision"``, ``"event"`` or any other string naming the record type.
        policy_version: version (content hash) of the policy set that decided, if any.
        request: the decision request, with sensitive attributes masked (see :class:`Masker`).
        decision: ``"ALLOW"`` or ``"DENY"`` for decision records.
        allow: names of the allow rules that matched.
        deny: names of the deny rules that matched.
        errors: rules whose evaluation failed, as ``{"rule", "message"}`` objects.
        reason: the decision's reason text.
        data: free JSON object for non-decision events.
        seq: position in the chain, from 1, gapless.
        prev_hash: hash of the previous record of the chain (:data:`GENESIS_HASH` for seq 1).
        hash: this record's hash.
        schema_version: always 1 for this class.
    """

    id: str
    time: str
    chain: str
    kind: str
    policy_version: str | None = None
    request: Mapping[str, Any] | None = None
    decision: str | None = None
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    errors: tuple[Mapping[str, str], ...] = ()
    reason: str | None = None
    data: Mapping[str, Any] | None = None
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None
    schema_version: int = SCHEMA_VERSION
    _body: str | None = field(default=None, init=False, repr=False, compare=False)
    _parts: tuple[str, str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # INVARIANT: request and data hold plain JSON (normalised once, here).
        if self.request is not None and type(self.request) is not _Json:
            object.__setattr__(self, "request", _jsonable(self.request, "request"))
        if self.data is not None and type(self.data) is not _Json:
            object.__setattr__(self, "data", _jsonable(self.data, "data"))
        for name in ("allow", "deny", "errors"):
            value = getattr(self, name)
            if type(value) is not tuple:
                object.__setattr__(self, name, tuple(value))

    def _clone(self, **changes: Any) -> AuditRecordV1:
        new = object.__new__(AuditRecordV1)
        state = new.__dict__
        state.update(self.__dict__)
        state.update(changes)
        state["_body"] = None
        state["_parts"] = None
        return new

    def prepare(self) -> AuditRecordV1:
        """Pre-serialise everything but ``seq`` and ``prev_hash``; returns ``self``.

        Sinks call it in the caller's thread so that the writer, which holds the chain lock,
        only splices the two chain fields in. Optional: sealing works without it.
        """
        if self._parts is None:
            body = self.to_dict()
            del body["hash"]
            body["prev_hash"], body["seq"] = _PREV_MARK, _SEQ_MARK
            text = _record_json(body)
            head, found_prev, rest = text.partition(f'"{_PREV_MARK}"')
            middle, found_seq, tail = rest.partition(f'"{_SEQ_MARK}"')
            if found_prev and found_seq and _PREV_MARK not in tail and _PREV_MARK not in head:
                parts = (head, middle, tail)
            else:  # pragma: no cover - only if the content holds this process's random mark
                parts = self._parts_by_field()
            object.__setattr__(self, "_parts", parts)
        return self

    def _parts_by_field(self) -> tuple[str, str, str]:
        body = self.to_dict()
        del body["hash"]
        items = {k: f"{canonical_json(k)}:{canonical_json(v)}" for k, v in body.items()}
        keys = sorted(items)
        i_prev, i_seq = keys.index("prev_hash"), keys.index("seq")
        # INVARIANT: canonical JSON of an object is "{" + ",".join("key:value") + "}" in key
        # order, so the body is prefix + prev_hash + middle + seq + suffix.
        prefix = "{" + "".join(items[k] + "," for k in keys[:i_prev]) + '"prev_hash":'
        middle = "".join("," + items[k] for k in keys[i_prev + 1 : i_seq]) + ',"seq":'
        suffix = "".join("," + items[k] for k in keys[i_seq + 1 :]) + "}"
        return prefix, middle, suffix

    @property
    def is_sealed(self) -> bool:
        """Whether ``seq``, ``prev_hash`` and ``hash`` are set."""
        return self.seq is not None and self.prev_hash is not None and self.hash is not None

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain JSON object (every field, ``null`` included)."""
        return {
            "schema_version": self.schema_version,
            "seq": self.seq,
            "id": self.id,
            "time": self.time,
            "chain": self.chain,
            "kind": self.kind,
            "policy_version": self.policy_version,
            "request": self.request,
            "decision": self.decision,
            "allow": list(self.allow),
            "deny": list(self.deny),
            "errors": [dict(e) for e in self.errors],
            "reason": self.reason,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def body_json(self) -> str:
        """Canonical JSON of the record without its ``hash`` field (the hashed text)."""
        if self._body is not None:
            return self._body
        body = self.to_dict()
        del body["hash"]
        return canonical_json(body)

    def to_json(self) -> str:
        """Canonical JSON of the whole record (one JSON-lines line, without newline)."""
        return canonical_json(self.to_dict())

    def compute_hash(self) -> str:
        """Recompute this record's hash from its content and ``prev_hash``.

        Raises:
            AuditError: ``prev_hash`` is missing or not 64 hex characters.
        """
        prev = self.prev_hash
        if prev is None or len(prev) != 64:
            raise AuditError("audit record has no valid `prev_hash`")
        try:
            prev_bytes = bytes.fromhex(prev)
        except ValueError as exc:
            raise AuditError("audit record has no valid `prev_hash`") from exc
        return hashlib.sha256(prev_bytes + self.body_json().encode("utf-8")).hexdigest()

    def sealed(self, seq: int, prev_hash: str) -> AuditRecordV1:
        """A copy placed at ``seq`` after a record hashing to ``prev_hash``, with its hash."""
        prefix, middle, suffix = self.prepare()._parts  # type: ignore[misc]
        body = f'{prefix}"{prev_hash}"{middle}{seq}{suffix}'
        digest = hashlib.sha256(bytes.fromhex(prev_hash) + body.encode("utf-8")).hexdigest()
        placed = self._clone(seq=seq, prev_hash=prev_hash, hash=digest)
        placed.__dict__["_body"] = body
        return placed

    def unsealed(self) -> AuditRecordV1:
        """A copy without ``seq``, ``prev_hash`` and ``hash`` (as built, before appending)."""
        return self._clone(seq=None, prev_hash=None, hash=None)

    def with_hash(self, digest: str | None) -> AuditRecordV1:
        """A copy carrying ``digest`` as its stored hash (readers use it)."""
        return self._clone(hash=digest)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AuditRecordV1:
        """Parse a record from its JSON object; strict about keys and types.

        Raises:
            AuditError: unknown or missing keys, a wrong type, or another schema version.
        """
        if not isinstance(raw, Mapping):
            raise AuditError("audit record is not a JSON object")
        unknown = sorted(set(raw) - set(_FIELDS))
        if unknown:
            raise AuditError(f"audit record has unknown field `{unknown[0]}`")
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise AuditError(
                f"audit record has schema version `{raw.get('schema_version')}`, expected 1"
            )
        for name in ("id", "time", "chain", "kind"):
            if not isinstance(raw.get(name), str):
                raise AuditError(f"audit record field `{name}` must be a string")
        for name in ("policy_version", "decision", "reason", "prev_hash", "hash"):
            if raw.get(name) is not None and not isinstance(raw.get(name), str):
                raise AuditError(f"audit record field `{name}` must be a string or null")
        for name in ("request", "data"):
            if raw.get(name) is not None and not isinstance(raw.get(name), Mapping):
                raise AuditError(f"audit record field `{name}` must be an object or null")
        seq = raw.get("seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise AuditError("audit record field `seq` must be an integer or null")
        lists: dict[str, tuple[Any, ...]] = {}
        for name in ("allow", "deny", "errors"):
            value = raw.get(name, [])
            if not isinstance(value, list):
                raise AuditError(f"audit record field `{name}` must be a list")
            lists[name] = tuple(value)
        if not all(isinstance(x, str) for x in lists["allow"] + lists["deny"]):
            raise AuditError("audit record rule names must be strings")
        if not all(isinstance(x, Mapping) for x in lists["errors"]):
            raise AuditError("audit record field `errors` must hold objects")
        return cls(
            id=raw["id"],
            time=raw["time"],
            chain=raw["chain"],
            kind=raw["kind"],
            policy_version=raw.get("policy_version"),
            request=raw.get("request"),
            decision=raw.get("decision"),
            allow=lists["allow"],
            deny=lists["deny"],
            errors=tuple(dict(e) for e in lists["errors"]),
            reason=raw.get("reason"),
            data=raw.get("data"),
            seq=seq,
            prev_hash=raw.get("prev_hash"),
            hash=raw.get("hash"),
        )

    @classmethod
    def from_json(cls, text: str) -> AuditRecordV1:
        """Parse a record from JSON text.

        Raises:
            AuditError: the text is not JSON or not a valid record.
        """
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise AuditError(f"audit record is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)


class Masker:
    """Replaces sensitive request attributes before a record is written (AUD-4, LOG-1).

    A value is masked when its dotted path is configured (``"principal.email"``, ``"context.*"``
    with ``*`` matching one key) or when its key name is in ``sensitive_keys`` (at any depth,
    case-insensitive). With a ``key`` the replacement is a keyed fingerprint,
    ``"hmac-sha256:<32 hex>"`` of the value's canonical JSON, so equal values stay correlatable
    without being readable; without a key it is ``"***"``. The key never enters a record.

    Args:
        paths: dotted paths to mask.
        key: HMAC-SHA256 key for fingerprints; ``None`` replaces values with ``"***"``.
        sensitive_keys: key names always masked; pass ``()`` to mask only ``paths``.

    Usage::

        masker = Masker(["principal.email", "context.token"], key=secret_bytes)
        masked = masker.mask(request)
    """

    __slots__ = ("_exact", "_key", "_sensitive", "_wild")

    def __init__(
        self,
        paths: Iterable[str] = (),
        *,
        key: bytes | None = None,
        sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
    ) -> None:
        patterns = [tuple(p.split(".")) for p in paths if p]
        self._exact = frozenset(p for p in patterns if "*" not in p)
        self._wild = tuple(p for p in patterns if "*" in p)
        if key is not None and len(key) < 16:
            raise AuditError("audit masking key must be at least 16 bytes")
        self._key = key
        self._sensitive = frozenset(k.lower() for k in sensitive_keys)

    def replacement(self, value: Any) -> str:
        """What a masked ``value`` becomes."""
        if self._key is None:
            return "***"
        digest = hmac.new(
            self._key, canonical_json(_jsonable(value, "value")).encode(), hashlib.sha256
        ).hexdigest()
        return f"hmac-sha256:{digest[:32]}"

    def mask(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A masked, plain-JSON copy of ``value`` (the input is not modified)."""
        if not self._exact and not self._wild:  # only key names decide: no paths to build
            return _Json(self._mask_by_name(value))
        return _Json({_text(str(k)): self._mask(v, (_text(str(k)),)) for k, v in value.items()})

    def _mask_by_name(self, value: Mapping[Any, Any]) -> dict[str, Any]:
        """:meth:`_mask` of a mapping's items when no path is configured (the hot case)."""
        sensitive = self._sensitive
        out: dict[str, Any] = {}
        for key, child in value.items():
            name = key if type(key) is str and key.isascii() else _text(str(key))
            out[name] = (
                self.replacement(child) if name.lower() in sensitive else self._plain(child)
            )
        return out

    def _plain(self, value: Any) -> Any:
        """A plain-JSON copy of a value under a key that is not sensitive."""
        t = type(value)
        if t is str:
            return value if value.isascii() else _text(value)
        if t is int or t is bool or value is None:
            return value
        if isinstance(value, Mapping):
            return self._mask_by_name(value)
        if isinstance(value, list | tuple):
            return [self._plain(v) for v in value]
        return _scalar(value, "request")

    def _matches(self, path: tuple[str, ...]) -> bool:
        if path in self._exact:
            return True
        for pattern in self._wild:
            if len(pattern) == len(path) and all(
                p in ("*", s) for p, s in zip(pattern, path, strict=True)
            ):
                return True
        return False

    def _mask(self, value: Any, path: tuple[str, ...]) -> Any:
        if path[-1].lower() in self._sensitive or self._matches(path):
            return self.replacement(value)
        t = type(value)
        if t is str:
            return _text(value)
        if t is int or t is bool or value is None:
            return value
        if isinstance(value, Mapping):
            return {_text(str(k)): self._mask(v, (*path, _text(str(k)))) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._mask(v, path) for v in value]
        return _scalar(value, "request")


_DEFAULT_MASKER = Masker()


def _decision_mapping(decision: Any) -> Mapping[str, Any]:
    if isinstance(decision, Mapping):
        return decision
    to_dict = getattr(decision, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        if isinstance(result, Mapping):
            return result
    raise AuditError("audit decision must be a mapping or have a `to_dict()` method")


def _as_request_document(request: Mapping[str, Any]) -> Mapping[str, Any]:
    document = as_document(request)
    return document if isinstance(document, Mapping) else request


def decision_record(
    decision: Any,
    request: Mapping[str, Any],
    *,
    masker: Masker | None = None,
    chain: str = "decisions",
    time: datetime | None = None,
    record_id: str | None = None,
) -> AuditRecordV1:
    """Build the (unsealed) audit record of one decision.

    Args:
        decision: a ``Decision`` or its ``to_dict()`` mapping (``decision``, ``reason``,
            ``allow``, ``deny``, ``errors``, ``version``).
        request: the request that was decided; it is masked before it enters the record.
        masker: masking configuration; default masks :data:`DEFAULT_SENSITIVE_KEYS`.
        chain: chain name.
        time: when the decision was made (default now).
        record_id: record id (default a fresh UUID4).

    Returns:
        The record, ready for ``AuditSink.append``.

    Raises:
        AuditError: the decision or the request cannot be represented.
    """
    d = _decision_mapping(decision)
    errors: list[dict[str, str]] = []
    for err in d.get("errors", ()):
        get = err.get if isinstance(err, Mapping) else lambda key, e=err: getattr(e, key, "")
        errors.append({"rule": _text(str(get("rule"))), "message": _text(str(get("message")))})
    version = d.get("version")
    return AuditRecordV1(
        id=record_id or str(uuid.uuid4()),
        time=utc_timestamp(time),
        chain=chain,
        kind="decision",
        policy_version=None if version is None else str(version),
        # the request as the engine read it: its JSON document (see as_document)
        request=(masker or _DEFAULT_MASKER).mask(_as_request_document(request)),
        decision=str(d.get("decision")),
        allow=tuple(_text(str(x)) for x in d.get("allow", ())),
        deny=tuple(_text(str(x)) for x in d.get("deny", ())),
        errors=tuple(errors),
        reason=None if d.get("reason") is None else _text(str(d.get("reason"))),
    )


def event_record(
    kind: str,
    data: Mapping[str, Any],
    *,
    masker: Masker | None = None,
    chain: str = "events",
    time: datetime | None = None,
    policy_version: str | None = None,
    record_id: str | None = None,
) -> AuditRecordV1:
    """Build the (unsealed) audit record of a non-decision event (login, action intent, ...).

    ``data`` is masked with ``masker`` (default: :data:`DEFAULT_SENSITIVE_KEYS`).

    Raises:
        AuditError: ``data`` cannot be represented as JSON.
    """
    return AuditRecordV1(
        id=record_id or str(uuid.uuid4()),
        time=utc_timestamp(time),
        chain=chain,
        kind=kind,
        policy_version=policy_version,
        data=(masker or _DEFAULT_MASKER).mask(data),
    )


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced, for messages (LOG-1)."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def check_chain_name(chain: str) -> str:
    """Validate a chain name (1-128 printable characters).

    Raises:
        AuditError: the name is empty, too long or has control characters.
    """
    if not chain or len(chain) > 128 or not chain.isprintable():
        raise AuditError(f"invalid audit chain name `{chain!r}`")
    return chain


def group_by_chain(records: Sequence[AuditRecordV1]) -> dict[str, list[int]]:
    """Indexes of ``records`` per chain, chains in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(rec.chain, []).append(i)
    return groups
