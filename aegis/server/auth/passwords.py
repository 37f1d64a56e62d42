"""Password hashing with Argon2id through passlib (the ``libpass`` distribution) and the policy.

PW-1: PHC strings ``$argon2id$v=19$m=…,t=…,p=…`` with m ≥ 19 456 KiB, t ≥ 2, p ≥ 1 and a
16-byte random salt. PW-2: passwords are verified exactly as received (no trim, no case-fold,
no normalisation). PW-3: a hash weaker than the policy is replaced on the next successful login.
PW-5: hashing runs on a bounded thread pool, so the event loop keeps serving while logins hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from anyio import CapacityLimiter

from aegis.server.auth._common import common_passwords
from aegis.server.errors import ApiError

__all__ = [
    "ADMIN_MIN_PASSWORD_LENGTH",
    "FAST_PARAMETERS",
    "MAX_PASSWORD_BYTES",
    "MIN_PASSWORD_LENGTH",
    "PRODUCTION_PARAMETERS",
    "HashParameters",
    "PasswordHasher",
    "check_password_policy",
]

MIN_PASSWORD_LENGTH = 8
#: PW-4: administrators need at least 15 characters.
ADMIN_MIN_PASSWORD_LENGTH = 15
MAX_PASSWORD_BYTES = 1024
_PHC = re.compile(
    r"^\$argon2(?P<type>id|i|d)\$v=(?P<v>\d+)\$m=(?P<m>\d+),t=(?P<t>\d+),p=(?P<p>\d+)\$"
)


@dataclass(frozen=True)
class HashParameters:
    """Argon2id cost parameters.

    Attributes:
        memory_kib: memory cost in KiB.
        iterations: time cost.
        parallelism: lanes.
    """

    memory_kib: int
    iterations: int
    parallelism: int


#: OWASP's current guidance (19 MiB, 2 iterations, 1 lane) — the production floor (PW-1).
PRODUCTION_PARAMETERS = HashParameters(memory_kib=19456, iterations=2, parallelism=1)
#: A cheap profile for test suites only (``AEGIS_PASSWORD_HASH_PROFILE=fast``).
FAST_PARAMETERS = HashParameters(memory_kib=1024, iterations=1, parallelism=1)


def check_password_policy(
    password: str, *, extra_common: frozenset[str] = frozenset(), min_length: int = 8
) -> None:
    """Check a new password against the policy (PW-4) without hashing it.

    Length 8 to 1 024 bytes (UTF-8), at least ``min_length`` characters, no composition rules,
    not a common password (compared case-insensitively).

    Args:
        password: the candidate, exactly as received.
        extra_common: a deployment's own list of refused passwords (lower-case).
        min_length: the minimum number of characters (15 for administrators).

    Raises:
        ApiError: ``password.rejected`` (422) naming the rule that failed.
    """
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise ApiError("password.rejected", "the password is longer than 1024 bytes")
    if len(password) < min_length:
        raise ApiError(
            "password.rejected", f"the password must have at least {min_length} characters"
        )
    lowered = password.lower()
    if lowered in common_passwords() or lowered in extra_common:
        raise ApiError("password.rejected", "the password is too common")


def load_common_file(path: str | None) -> frozenset[str]:
    """Read a deployment's list of refused passwords (one per line), lower-cased."""
    if not path:
        return frozenset()
    text = Path(path).read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


class PasswordHasher:
    """Hash and verify passwords on a bounded thread pool.

    Args:
        profile: ``"production"`` (PW-1 parameters) or ``"fast"`` (test suites only).
        workers: how many hashes may run at once (PW-5).

    Usage::

        hasher = PasswordHasher("production")
        stored = await hasher.hash("correct horse battery staple")
        ok, new_hash = await hasher.verify("correct horse battery staple", stored)
    """

    def __init__(self, profile: Literal["production", "fast"] = "production", workers: int = 4):
        from passlib.hash import argon2

        self.parameters = PRODUCTION_PARAMETERS if profile == "production" else FAST_PARAMETERS
        self._handler: Any = argon2.using(
            type="ID",
            memory_cost=self.parameters.memory_kib,
            time_cost=self.parameters.iterations,
            parallelism=self.parameters.parallelism,
            salt_size=16,
        )
        self._limiter = CapacityLimiter(workers)
        self._dummy: str | None = None

    def hash_sync(self, password: str) -> str:
        """Hash on the calling thread (CLI use); returns a PHC string."""
        result: str = self._handler.hash(password)
        return result

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` is weaker than the current parameters (PW-3); stronger is kept."""
        match = _PHC.match(stored)
        if match is None or match["type"] != "id":
            return True
        return (
            int(match["m"]) < self.parameters.memory_kib
            or int(match["t"]) < self.parameters.iterations
            or int(match["p"]) < self.parameters.parallelism
        )

    def _verify_sync(self, password: str, stored: str) -> bool:
        try:
            return bool(self._handler.verify(password, stored))
        except (ValueError, TypeError):
            return False

    async def hash(self, password: str) -> str:
        """Hash ``password`` on the worker pool."""
        return await anyio.to_thread.run_sync(self.hash_sync, password, limiter=self._limiter)

    async def verify(self, password: str, stored: str) -> tuple[bool, str | None]:
        """Verify ``password`` against ``stored``.

        Returns:
            ``(matches, new_hash)`` where ``new_hash`` is a fresh hash to store when the old
            one is below the current parameters (PW-3), else ``None``.
        """
        ok = await anyio.to_thread.run_sync(
            self._verify_sync, password, stored, limiter=self._limiter
        )
        if ok and self.needs_rehash(stored):
            return True, await self.hash(password)
        return ok, None

    async def dummy_verify(self, password: str) -> None:
        """Spend the time of one verification against a throw-away hash (REC-1: unknown users)."""
        if self._dummy is None:
            self._dummy = await self.hash("aegis-dummy-password-for-timing")
        await anyio.to_thread.run_sync(
            self._verify_sync, password, self._dummy, limiter=self._limiter
        )
