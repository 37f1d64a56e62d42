"""Server settings, read from ``AEGIS_*`` environment variables.

The full table (name, default, meaning) is in ``docs/server.md``; this module is its source.
Secrets are :class:`pydantic.SecretStr` so they never appear in a ``repr`` or a log line, and
every validation error names the variable, never its value (FLT-20).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from aegis.errors import ConfigurationError

__all__ = ["DEFAULT_POLICY_DIR", "Settings"]

DEFAULT_POLICY_DIR = Path(__file__).parent / "policies"
_MIN_SECRET_BYTES = 32
_PREFIX = "AEGIS_"
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_LIST_FIELDS = frozenset({"trusted_proxies", "policy_paths", "jwt_previous_keys"})


class Settings(BaseModel):
    """Everything the server can be configured with.

    Build it from the environment with :meth:`from_env`, or directly in tests
    (``Settings(jwt_secret="x" * 32, database_url="sqlite:///...")``).

    Raises:
        ConfigurationError: from :meth:`from_env` when a variable is missing or invalid; the
            message names the variable (``AEGIS_JWT_SECRET``), never its value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # secrets and tokens
    jwt_secret: SecretStr
    jwt_key_id: str = Field(default="k1", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    jwt_previous_keys: tuple[SecretStr, ...] = ()  # "kid:secret" entries still accepted
    jwt_issuer: str = "aegis"
    jwt_audience: str = "aegis-api"
    access_token_ttl: int = Field(default=900, ge=60, le=900)
    jwt_leeway: int = Field(default=30, ge=0, le=60)
    refresh_idle_ttl: int = Field(default=7 * 86400, ge=60, le=7 * 86400)
    refresh_absolute_ttl: int = Field(default=30 * 86400, ge=60, le=30 * 86400)
    reset_token_ttl: int = Field(default=900, ge=60, le=1800)
    # storage
    database_url: str = "sqlite:///var/aegis.db"
    redis_url: SecretStr | None = None
    redis_prefix: str = "aegis:"
    audit_backend: Literal["table", "engine"] = "table"
    # behaviour
    signup_mode: Literal["open", "invite", "closed"] = "open"
    public_base_url: str | None = None
    password_hash_profile: Literal["production", "fast"] = "production"  # noqa: S105
    hash_workers: int = Field(default=4, ge=1, le=64)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=64)
    trusted_proxies: tuple[str, ...] = ()
    metrics_protected: bool = False
    policy_paths: tuple[str, ...] = (str(DEFAULT_POLICY_DIR),)
    common_passwords_file: str | None = None
    # rate limits (``limits`` notation: "N/period", several separated by ";")
    rate_limit_anonymous: str = "120/minute"
    rate_limit_authenticated: str = "600/minute"
    rate_limit_auth: str = "60/minute;600/hour"
    login_failures_per_pair: int = Field(default=10, ge=1, le=99)
    login_failures_per_address: int = Field(default=100, ge=1)
    login_failures_per_account: int = Field(default=50, ge=1, le=99)
    login_failure_window: int = Field(default=3600, ge=1)
    # mail
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "aegis@localhost"
    smtp_starttls: bool = True

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < _MIN_SECRET_BYTES:
            raise ValueError("must be at least 32 bytes of random data")
        return value

    @field_validator("jwt_previous_keys")
    @classmethod
    def _previous_long_enough(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for item in value:
            kid, sep, key = item.get_secret_value().partition(":")
            if not sep or not _KID.fullmatch(kid):
                raise ValueError("every entry must be `kid:secret`")
            if len(key.encode()) < _MIN_SECRET_BYTES:
                raise ValueError("every key must be at least 32 bytes of random data")
        return value

    @model_validator(mode="after")
    def _ceiling_below_100_per_hour(self) -> Settings:
        # BF-1 / ASVS 2.2.1: fewer than 100 failed logins per hour per account, whatever the window.
        per_hour = self.login_failures_per_account * max(1.0, 3600 / self.login_failure_window)
        if per_hour >= 100:
            raise ValueError(
                "login_failures_per_account over login_failure_window allows 100 or more "
                "failures per hour"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError("must be a SQLAlchemy database URL") from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError("must name a SQLite or PostgreSQL database")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http or https URL")
        return value.rstrip("/") if value else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the settings from ``AEGIS_*`` variables.

        Lists (``AEGIS_TRUSTED_PROXIES``, ``AEGIS_POLICY_PATHS``, ``AEGIS_JWT_PREVIOUS_KEYS``)
        are comma-separated. Unknown ``AEGIS_*`` variables are ignored (other components
        read their own).

        Args:
            environ: the environment (``os.environ`` by default).
            **overrides: values that win over the environment.

        Returns:
            The validated settings.

        Raises:
            ConfigurationError: a variable is missing or invalid; names the variable only.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            if name in _LIST_FIELDS:
                values[name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            else:
                values[name] = raw
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_input=False, include_url=False):
                field = str(error["loc"][0]) if error["loc"] else "?"
                kind = "is required" if error["type"] == "missing" else "is invalid"
                reason = error["msg"].removeprefix("Value error, ")
                problems.append(f"`{_PREFIX}{field.upper()}` {kind} ({reason})")
            raise ConfigurationError("; ".join(problems)) from None

    def all_jwt_keys(self) -> dict[str, bytes]:
        """The verification keyring: the current key and every previous one, by ``kid``."""
        keys: dict[str, bytes] = {}
        for item in self.jwt_previous_keys:
            kid, _, key = item.get_secret_value().partition(":")
            keys[kid] = key.encode()
        keys[self.jwt_key_id] = self.jwt_secret.get_secret_value().encode()
        return keys
