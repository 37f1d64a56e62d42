"""Request signing for the executor: a fixed wire format any language can produce.

Wire format (SIG-1; see ``docs/actuators.md`` for a worked example)::

    string_to_sign = "AEGIS-HMAC-SHA256-V1" "\\n" METHOD "\\n" PATH "\\n" CANONICAL_QUERY "\\n"
                     TIMESTAMP "\\n" NONCE "\\n" KEY_ID "\\n" hex(sha256(raw body bytes))
    signature      = lowercase hex of HMAC-SHA256(key = secret's UTF-8 bytes, string_to_sign)

Headers: ``Aegis-Key-Id``, ``Aegis-Timestamp`` (Unix seconds), ``Aegis-Nonce`` (16–64 of
``[A-Za-z0-9_-]``), ``Aegis-Signature: v1=<64 lowercase hex>``.

Verification (:class:`RequestVerifier`) parses the headers strictly (a duplicate, a malformed
value or uppercase hex is refused), looks the key up in a :class:`Keyring`, checks the
timestamp is within ±300 s, compares MACs in constant time, and only then records the
(key id, nonce) pair in a :class:`ReplayStore` (Redis ``SET … NX EX 600`` or memory). Every
failure raises the same :class:`~aegis.actuators.errors.SignatureError` (one generic message;
the cause is in ``.detail`` for the audit log), except a replay of a correctly signed request
(:class:`~aegis.actuators.errors.ReplayError`) and an unreachable store
(:class:`~aegis.actuators.errors.ReplayStoreUnavailableError`, fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, unquote_to_bytes

from aegis.actuators.errors import (
    ReplayError,
    ReplayStoreUnavailableError,
    SignatureError,
)
from aegis.errors import ConfigurationError, require

__all__ = [
    "ALGORITHM",
    "HEADER_KEY_ID",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MIN_SECRET_BYTES",
    "NONCE_TTL_SECONDS",
    "TOLERANCE_SECONDS",
    "Keyring",
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "RequestVerifier",
    "SigningClient",
    "VerifiedRequest",
    "canonical_query",
    "new_nonce",
    "sign_request",
    "string_to_sign",
]

ALGORITHM = "AEGIS-HMAC-SHA256-V1"
HEADER_KEY_ID = "Aegis-Key-Id"
HEADER_TIMESTAMP = "Aegis-Timestamp"
HEADER_NONCE = "Aegis-Nonce"
HEADER_SIGNATURE = "Aegis-Signature"
TOLERANCE_SECONDS = 300
NONCE_TTL_SECONDS = 600  # ≥ 2 × the window (SIG-3)
MIN_SECRET_BYTES = 32

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,11}")
_SIGNATURE = re.compile(r"v1=([0-9a-f]{64})")
_METHOD = re.compile(r"[A-Z]{1,16}")
_UNRESERVED = "-._~"  # RFC 3986 unreserved, besides ASCII letters and digits


# --- the canonical string ----------------------------------------------------------------


def canonical_query(query: str | Sequence[tuple[str, str]] | Mapping[str, str] | None) -> str:
    """The canonical form of a query (SIG-1).

    A raw query string (without ``?``) is split on ``&`` and then at the first ``=``; empty
    segments are dropped; a name without ``=`` has an empty value; names and values are
    percent-*decoded* (``+`` stays a literal plus) and re-encoded over their bytes with RFC 3986
    (every byte but ``A-Z a-z 0-9 - . _ ~`` as ``%XX``, uppercase hex). Pairs are sorted by
    encoded name, then encoded value, and joined as ``name=value`` with ``&``. No query → ``""``.

    Pairs or a mapping are taken as decoded text (encoded as UTF-8).
    """
    pairs: list[tuple[bytes, bytes]] = []
    if query is None:
        return ""
    if isinstance(query, str):
        for segment in query.split("&"):
            if not segment:
                continue
            name, _, value = segment.partition("=")
            pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    else:
        items = query.items() if isinstance(query, Mapping) else query
        pairs = [(str(k).encode(), str(v).encode()) for k, v in items]
    encoded = sorted((quote(k, safe=_UNRESERVED), quote(v, safe=_UNRESERVED)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def string_to_sign(
    method: str, path: str, *, query: str, timestamp: str, nonce: str, key_id: str, body: bytes
) -> str:
    """The exact string that is MACed (``query`` is already canonical)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((ALGORITHM, method, path, query, timestamp, nonce, key_id, digest))


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode("utf-8"), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh random nonce (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def sign_request(
    method: str,
    path: str,
    *,
    query: str | Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    body: bytes = b"",
    key_id: str,
    secret: str,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four ``Aegis-*`` headers for a request.

    Args:
        method: HTTP method (sent upper-case).
        path: the request path exactly as it will be sent (before ``?``).
        query: the raw query string, or decoded pairs.
        body: the exact body bytes that will be sent.
        key_id: the key id.
        secret: the shared secret; its UTF-8 bytes are the HMAC key.
        timestamp: Unix seconds (now by default).
        nonce: a fresh nonce by default.

    Returns:
        A header mapping to merge into the request.

    Example:
        >>> h = sign_request("POST", "/v1/actions", body=b"{}", key_id="k1",
        ...                  secret="s" * 32, timestamp=1700000000, nonce="n" * 16)
        >>> sorted(h)
        ['Aegis-Key-Id', 'Aegis-Nonce', 'Aegis-Signature', 'Aegis-Timestamp']
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError("key id must be 1-64 characters of [A-Za-z0-9._-]")
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 16-64 characters of [A-Za-z0-9_-]")
    message = string_to_sign(
        method.upper(),
        path,
        query=canonical_query(query),
        timestamp=ts,
        nonce=nonce,
        key_id=key_id,
        body=body,
    )
    return {
        HEADER_KEY_ID: key_id,
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: f"v1={_mac(secret.encode('utf-8'), message)}",
    }


# --- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    secret: bytes
    retired: bool = False


class Keyring:
    """Per-caller HMAC keys, selected by key id, with rotation (SIG-4).

    Several keys may be active at once (the overlap of a rotation); a retired key is refused
    exactly like an unknown one. Secrets must be at least 32 bytes and distinct, and may not
    equal any secret passed as ``reject_secrets`` (the JWT secret).

    Args:
        keys: ``{key_id: secret}``.
        reject_secrets: secrets that must never be used as executor keys.

    Raises:
        ConfigurationError: a bad key id, a short or reused secret.
    """

    def __init__(
        self, keys: Mapping[str, str] | None = None, *, reject_secrets: Iterable[str] = ()
    ) -> None:
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()
        self._reject = {s.encode("utf-8") for s in reject_secrets if s}
        for kid, secret in (keys or {}).items():
            self.add(kid, secret)

    @classmethod
    def from_env(cls, value: str, *, reject_secrets: Iterable[str] = ()) -> Keyring:
        """Parse ``kid:secret,kid:secret`` (the ``AEGIS_EXECUTOR_KEYS`` format).

        Raises:
            ConfigurationError: empty, malformed, duplicate ids, or a secret under 32 bytes.
        """
        keys: dict[str, str] = {}
        for item in (value or "").split(","):
            if not item.strip():
                continue
            kid, sep, secret = item.partition(":")
            if not sep:
                raise ConfigurationError(
                    "executor keys must be `kid:secret` pairs separated by commas"
                )
            kid = kid.strip()
            if kid in keys:
                raise ConfigurationError(f"executor key id `{kid}` is given twice")
            keys[kid] = secret
        if not keys:
            raise ConfigurationError("no executor keys configured")
        return cls(keys, reject_secrets=reject_secrets)

    def add(self, key_id: str, secret: str) -> None:
        """Add an active key (e.g. the new key of a rotation).

        Raises:
            ConfigurationError: see the class.
        """
        if not _KEY_ID.fullmatch(key_id):
            raise ConfigurationError(
                f"executor key id `{key_id}` must be 1-64 characters of [A-Za-z0-9._-]"
            )
        raw = secret.encode("utf-8")
        if len(raw) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"executor key `{key_id}` is shorter than {MIN_SECRET_BYTES} bytes"
            )
        if raw in self._reject:
            raise ConfigurationError(
                f"executor key `{key_id}` reuses a secret that must stay separate"
            )
        with self._lock:
            if key_id in self._keys:
                raise ConfigurationError(f"executor key id `{key_id}` already exists")
            if any(hmac.compare_digest(k.secret, raw) for k in self._keys.values()):
                raise ConfigurationError(f"executor key `{key_id}` reuses another key's secret")
            self._keys[key_id] = _Key(raw)

    def retire(self, key_id: str) -> None:
        """Stop accepting ``key_id`` (it stays known so that it cannot be re-added)."""
        with self._lock:
            key = self._keys.get(key_id)
            if key is not None:
                self._keys[key_id] = _Key(key.secret, retired=True)

    def secret(self, key_id: str) -> bytes | None:
        """The active secret of ``key_id``, or ``None`` when unknown or retired."""
        with self._lock:
            key = self._keys.get(key_id)
        return None if key is None or key.retired else key.secret

    @property
    def active_ids(self) -> list[str]:
        """The ids of the active keys, sorted."""
        with self._lock:
            return sorted(k for k, v in self._keys.items() if not v.retired)


# --- replay stores ---------------------------------------------------------------------------


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers (key id, nonce) pairs, atomically, for a TTL.

    ``remember`` returns ``True`` the first time a pair is seen and ``False`` afterwards
    (within the TTL); it must be atomic across threads and processes sharing the store, and
    raise :class:`~aegis.actuators.errors.ReplayStoreUnavailableError` when it cannot answer
    (the caller then refuses the request: fail closed).
    """

    def remember(self, key_id: str, nonce: str, ttl_seconds: int) -> bool:
        """Record the pair; ``True`` if it was new."""
        ...


class MemoryReplayStore:
    """A single-process :class:`ReplayStore` (thread-safe, expired pairs purged lazily)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def remember(self, key_id: str, nonce: str, ttl_seconds: int) -> bool:
        """Record the pair; ``True`` if it was new."""
        now = self._clock()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            expiry = self._seen.get((key_id, nonce))
            if expiry is not None and expiry > now:
                return False
            self._seen[(key_id, nonce)] = now + ttl_seconds
            return True


class RedisReplayStore:
    """A shared :class:`ReplayStore`: ``SET aegis:nonce:{key_id}:{nonce} 1 NX EX ttl`` (SIG-3).

    Args:
        client: a ``redis.Redis`` client, or use :meth:`from_url`.
        prefix: key prefix (``aegis:nonce:``).
    """

    def __init__(self, client: Any, prefix: str = "aegis:nonce:") -> None:
        self._redis = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "aegis:nonce:") -> RedisReplayStore:
        """Connect to Redis at ``url`` (needs the ``redis`` extra)."""
        redis = require("redis", "redis")
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)  # type: ignore[attr-defined]
        return cls(client, prefix)

    def remember(self, key_id: str, nonce: str, ttl_seconds: int) -> bool:
        """Record the pair; ``True`` if it was new.

        Raises:
            ReplayStoreUnavailableError: Redis failed.
        """
        redis = require("redis", "redis")
        try:
            created = self._redis.set(f"{self.prefix}{key_id}:{nonce}", 1, nx=True, ex=ttl_seconds)
        except redis.RedisError as exc:  # type: ignore[attr-defined]
            raise ReplayStoreUnavailableError("the nonce store is unavailable") from exc
        return bool(created)


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedRequest:
    """What a successful verification established.

    Attributes:
        key_id: the caller's key id (its identity).
        timestamp: the signed Unix timestamp.
        nonce: the signed nonce (already recorded in the replay store).
    """

    key_id: str
    timestamp: int
    nonce: str


Headers = Mapping[str, str] | Iterable[tuple[str, str]]
_DUMMY_SECRET = secrets.token_bytes(32)


def _headers(headers: Headers) -> dict[str, str]:
    wanted = {
        h.lower(): h for h in (HEADER_KEY_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
    }
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in items:
        lname = name.lower()
        if lname in wanted:
            if lname in found:
                raise SignatureError(f"duplicate header {wanted[lname]}")
            found[lname] = value
    missing = [wanted[h] for h in wanted if h not in found]
    if missing:
        raise SignatureError(f"missing header {missing[0]}")
    return {wanted[k]: v for k, v in found.items()}


class RequestVerifier:
    """Verifies signed requests (SIG-1..SIG-6); use one per service.

    Args:
        keyring: the callers' keys.
        replay_store: where (key id, nonce) pairs are recorded.
        tolerance_seconds: accepted clock skew either way (300).
        nonce_ttl_seconds: how long nonces are remembered (600, ≥ 2 × tolerance).
        clock: returns Unix seconds.
    """

    def __init__(
        self,
        keyring: Keyring,
        replay_store: ReplayStore,
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        nonce_ttl_seconds: int = NONCE_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if nonce_ttl_seconds < 2 * tolerance_seconds:
            raise ConfigurationError("the nonce ttl must be at least twice the timestamp tolerance")
        self.keyring = keyring
        self.replay_store = replay_store
        self.tolerance = tolerance_seconds
        self.nonce_ttl = nonce_ttl_seconds
        self._clock = clock

    def authenticate(
        self, *, method: str, path: str, query: str, headers: Headers, body: bytes
    ) -> VerifiedRequest:
        """Check everything but the nonce (no side effect); see :meth:`verify`."""
        h = _headers(headers)
        key_id, ts, nonce, sig = (
            h[HEADER_KEY_ID],
            h[HEADER_TIMESTAMP],
            h[HEADER_NONCE],
            h[HEADER_SIGNATURE],
        )
        if not _METHOD.fullmatch(method):
            raise SignatureError("malformed method")
        if not _KEY_ID.fullmatch(key_id):
            raise SignatureError("malformed key id")
        if not _TIMESTAMP.fullmatch(ts):
            raise SignatureError("malformed timestamp")
        if not _NONCE.fullmatch(nonce):
            raise SignatureError("malformed nonce")
        match = _SIGNATURE.fullmatch(sig)
        if match is None:
            raise SignatureError("malformed signature")
        secret = self.keyring.secret(key_id)
        message = string_to_sign(
            method,
            path,
            query=canonical_query(query),
            timestamp=ts,
            nonce=nonce,
            key_id=key_id,
            body=body,
        )
        expected = _mac(secret if secret is not None else _DUMMY_SECRET, message)
        good = hmac.compare_digest(expected.encode("ascii"), match.group(1).encode("ascii"))
        if secret is None:
            raise SignatureError("unknown or retired key id")
        if not good:
            raise SignatureError("signature mismatch")
        if abs(self._clock() - int(ts)) > self.tolerance:
            raise SignatureError("timestamp outside the window")
        return VerifiedRequest(key_id, int(ts), nonce)

    def verify(
        self, *, method: str, path: str, query: str, headers: Headers, body: bytes
    ) -> VerifiedRequest:
        """Verify a request and record its nonce.

        Args:
            method: the request method as received.
            path: the raw request path (before ``?``), not decoded or normalised.
            query: the raw query string (without ``?``), ``""`` when none.
            headers: the request headers (a list of pairs lets duplicates be detected).
            body: the raw body bytes, before any JSON parsing.

        Returns:
            The caller's key id, timestamp and nonce.

        Raises:
            SignatureError: any problem with the signature (generic message).
            ReplayError: the request verified but its (key id, nonce) was seen before.
            ReplayStoreUnavailableError: the nonce store cannot be reached (fail closed).
        """
        verified = self.authenticate(
            method=method, path=path, query=query, headers=headers, body=body
        )
        if not self.replay_store.remember(verified.key_id, verified.nonce, self.nonce_ttl):
            raise ReplayError(f"nonce replayed for key id {verified.key_id}")
        return verified


# --- the client ----------------------------------------------------------------------------------


class SigningClient:
    """A small HTTP client that signs every request (needs ``httpx``, the ``server`` extra).

    Args:
        base_url: the executor's URL (``http://executor:8081``).
        key_id: this caller's key id.
        secret: this caller's secret.
        transport: an optional ``httpx`` transport (tests: ``httpx.ASGITransport`` …).
        timeout: request timeout in seconds.

    Example:
        >>> client = SigningClient("http://executor:8081", "ops", "s" * 32)  # doctest: +SKIP
        >>> client.post_json("/v1/actions", {"request_id": "r-1", ...})     # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        transport: Any = None,
        timeout: float = 15.0,
    ) -> None:
        httpx = require("httpx", "server")
        self.key_id = key_id
        self._secret = secret
        self._client = httpx.Client(base_url=base_url, transport=transport, timeout=timeout)  # type: ignore[attr-defined]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        query: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a signed request; ``path`` and ``query`` are sent verbatim. Returns the response."""
        signed = sign_request(
            method, path, query=query, body=body, key_id=self.key_id, secret=self._secret
        )
        url = f"{path}?{query}" if query else path
        all_headers = {**(headers or {}), **signed}
        if body:
            all_headers.setdefault("Content-Type", "application/json")
        return self._client.request(method.upper(), url, content=body, headers=all_headers)

    def post_json(self, path: str, payload: Any) -> Any:
        """POST ``payload`` as compact JSON, signed over the exact bytes sent."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return self.request("POST", path, body=body)

    def get(self, path: str, query: str = "") -> Any:
        """A signed GET."""
        return self.request("GET", path, query=query)

    def close(self) -> None:
        """Close the underlying HTTP client."""
        self._client.close()
