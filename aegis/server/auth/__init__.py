"""Authentication of the server: password hashing, tokens, login throttling, principals."""

from __future__ import annotations

from aegis.server.auth.passwords import (
    PRODUCTION_PARAMETERS,
    HashParameters,
    PasswordHasher,
    check_password_policy,
)
from aegis.server.auth.tokens import AccessClaims, TokenService

__all__ = [
    "PRODUCTION_PARAMETERS",
    "AccessClaims",
    "HashParameters",
    "PasswordHasher",
    "TokenService",
    "check_password_policy",
]
