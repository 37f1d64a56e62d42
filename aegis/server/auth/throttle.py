"""Login throttling that slows guessing without handing attackers a lockout lever (BF-1, D3).

Failed logins are counted in three sliding windows of ``AEGIS_LOGIN_FAILURE_WINDOW`` seconds
(default one hour), shared through the rate-limit storage (Redis when configured):

1. per (account, address) — ``AEGIS_LOGIN_FAILURES_PER_PAIR`` (10): the first and tightest
   brake, it only ever blocks the source that is failing;
2. per address, across accounts — ``AEGIS_LOGIN_FAILURES_PER_ADDRESS`` (100): password
   spraying; an (account, address) pair that logged in successfully before is spared;
3. per account, across addresses — ``AEGIS_LOGIN_FAILURES_PER_ACCOUNT`` (50, always < 100): the
   hard ceiling of ASVS 2.2.1. When it is reached the account is *not* locked: addresses from
   which the account logged in successfully in the last 30 days still may try (each still
   under its own pair limit); only unknown addresses get 429 until the window frees up.

The same checks run for unknown addresses of unknown accounts, so the answers do not reveal
whether an account exists. Counters are keyed by the lower-cased e-mail, never the user id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from limits import RateLimitItemPerSecond

from aegis.server.db import repositories as repo
from aegis.server.db.database import Database
from aegis.server.errors import ApiError
from aegis.server.ratelimit import RateLimiter, Verdict
from aegis.server.settings import Settings

__all__ = ["KNOWN_SOURCE_MAX_AGE", "LoginThrottle", "address_hash"]

KNOWN_SOURCE_MAX_AGE = 30 * 86400


def address_hash(address: str) -> str:
    """The SHA-256 of a client address (addresses are not stored in clear for this purpose)."""
    return hashlib.sha256(address.encode("utf-8", "surrogatepass")).hexdigest()


def _account_key(email_key: str) -> str:
    return hashlib.sha256(email_key.encode("utf-8", "surrogatepass")).hexdigest()


class LoginThrottle:
    """Check before, count after, each login attempt.

    Args:
        limiter: the shared rate limiter.
        settings: thresholds and window.
        db: where known login sources are recorded.
        clock: returns the current aware UTC time.
    """

    def __init__(
        self, limiter: RateLimiter, settings: Settings, db: Database, clock: Callable[[], datetime]
    ) -> None:
        window = settings.login_failure_window
        self._limiter = limiter
        self._db = db
        self._clock = clock
        self._pair = (RateLimitItemPerSecond(settings.login_failures_per_pair, window),)
        self._address = (RateLimitItemPerSecond(settings.login_failures_per_address, window),)
        self._account = (RateLimitItemPerSecond(settings.login_failures_per_account, window),)

    def _keys(self, email_key: str, address: str) -> tuple[str, str, str]:
        account = _account_key(email_key)
        where = address_hash(address)
        return f"lf:pair:{account}:{where}", f"lf:addr:{where}", f"lf:acct:{account}"

    async def check(self, email_key: str, address: str) -> None:
        """Refuse the attempt with 429 if a threshold is reached.

        Raises:
            ApiError: ``rate.limited`` with ``Retry-After``.
        """
        pair, addr, account = self._keys(email_key, address)
        verdict = await self._limiter.test(self._pair, pair, strict_fallback=True)
        if not verdict.allowed:
            raise _throttled(verdict)
        # The address-wide and account-wide brakes spare a pair that has worked before, so
        # neither an attacker sharing your address nor one hammering your account locks you out.
        for items, key in ((self._address, addr), (self._account, account)):
            verdict = await self._limiter.test(items, key, strict_fallback=True)
            if not verdict.allowed and not await self._known(email_key, address):
                raise _throttled(verdict)

    async def _known(self, email_key: str, address: str) -> bool:
        now, where = self._clock(), address_hash(address)
        return await self._db.run(
            lambda s: repo.is_known_source(s, email_key, where, now, KNOWN_SOURCE_MAX_AGE)
        )

    async def failed(self, email_key: str, address: str) -> None:
        """Count one failed attempt in all three windows."""
        pair, addr, account = self._keys(email_key, address)
        await self._limiter.hit(self._pair, pair, strict_fallback=True)
        await self._limiter.hit(self._address, addr, strict_fallback=True)
        await self._limiter.hit(self._account, account, strict_fallback=True)


def _throttled(verdict: Verdict) -> ApiError:
    return ApiError(
        "rate.limited",
        "too many failed logins, retry later",
        headers={"Retry-After": str(max(verdict.reset_after, 1))},
    )
