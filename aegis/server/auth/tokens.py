"""Access tokens (JWT, RFC 8725) and opaque refresh / reset tokens.

Access tokens: HS256 only (the algorithm list is a constant, never read from the token,
JWT-1), header ``typ: at+jwt`` and ``kid`` from the local keyring only (JWT-2, JWT-4), claims
``iss aud sub exp iat jti`` plus ``sid`` (the session), all required, leeway ≤ 60 s (JWT-3).
Every failure is the same ``auth.invalid_token`` error with no detail (JWT-6).

Refresh and reset tokens are 256-bit random strings; only their SHA-256 is stored (SES-1, REC-2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from aegis.server.errors import ApiError

__all__ = [
    "ALGORITHMS",
    "AccessClaims",
    "TokenService",
    "fingerprint",
    "hash_token",
    "new_opaque_token",
]

#: The one accepted algorithm (JWT-1). INVARIANT: never derived from a token header.
ALGORITHMS: tuple[str, ...] = ("HS256",)
ACCESS_TYPE = "at+jwt"
_MAX_TOKEN_CHARS = 4096
_FORBIDDEN_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
_ALLOWED_HEADERS = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti", "sid"]


def new_opaque_token() -> str:
    """A fresh 256-bit random token, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which an opaque token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def fingerprint(token: str) -> str:
    """A short, non-reversible fingerprint of a token, safe for logs and audit (LOG-1)."""
    return hash_token(token)[:12]


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token.

    Attributes:
        subject: the user id (``sub``).
        session_id: the refresh-token family the token belongs to (``sid``).
        token_id: the ``jti``.
        expires_at: when the token expires.
    """

    subject: str
    session_id: str
    token_id: str
    expires_at: datetime


def _invalid() -> ApiError:
    return ApiError(
        "auth.invalid_token",
        "the access token is invalid or expired",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    raw = base64.urlsafe_b64decode(padded.encode("ascii"))

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    return json.loads(raw, object_pairs_hook=no_duplicates)


class TokenService:
    """Issue and verify access tokens.

    Args:
        keys: the keyring, ``kid`` → secret bytes (each ≥ 32 bytes); ``current_kid`` signs.
        current_kid: the key id used to sign new tokens.
        issuer: the ``iss`` this server writes and requires.
        audience: the ``aud`` this server writes and requires.
        ttl: access-token lifetime in seconds (≤ 900).
        leeway: clock-skew tolerance in seconds (≤ 60).
        clock: returns the current aware UTC time.
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        current_kid: str,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int,
        clock: Callable[[], datetime],
    ) -> None:
        if current_kid not in keys:
            raise ValueError("the current key id is not in the keyring")
        self._keys = dict(keys)
        self._kid = current_kid
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway
        self._clock = clock

    def issue(self, subject: str, session_id: str) -> tuple[str, AccessClaims]:
        """Sign a new access token for ``subject`` in session ``session_id``."""
        now = int(self._clock().timestamp())
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "sid": session_id,
            "iat": now,
            "exp": now + self.ttl,
            "jti": jti,
        }
        token = jwt.encode(
            claims,
            self._keys[self._kid],
            algorithm=ALGORITHMS[0],
            headers={"typ": ACCESS_TYPE, "kid": self._kid},
        )
        expires = datetime.fromtimestamp(now + self.ttl, tz=self._clock().tzinfo)
        return token, AccessClaims(subject, session_id, jti, expires)

    def verify(self, token: str) -> AccessClaims:
        """Verify an access token and return its claims.

        Raises:
            ApiError: ``auth.invalid_token`` for any defect, always with the same body.
        """
        if len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
            raise _invalid()
        try:
            header = _b64_json(token.split(".", 1)[0])
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            raise _invalid() from None
        if (
            not isinstance(header, dict)
            or set(header) & _FORBIDDEN_HEADERS
            or not set(header) <= _ALLOWED_HEADERS
            or header.get("alg") != ALGORITHMS[0]
            or header.get("typ") != ACCESS_TYPE
        ):
            raise _invalid()
        kid = header.get("kid", self._kid)
        # INVARIANT: kid only selects by exact match; it is never a path, query or URL.
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise _invalid()
        now = self._clock().timestamp()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise _invalid() from None
        times = [claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in times):
            raise _invalid()
        exp, iat, nbf = (int(v) for v in times)
        if now > exp + self.leeway or iat > now + self.leeway or nbf > now + self.leeway:
            raise _invalid()
        if not all(isinstance(claims[k], str) for k in ("sub", "sid", "jti")):
            raise _invalid()
        return AccessClaims(
            subject=claims["sub"],
            session_id=claims["sid"],
            token_id=claims["jti"],
            expires_at=datetime.fromtimestamp(exp, tz=self._clock().tzinfo),
        )
