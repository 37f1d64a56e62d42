"""Bootstrapping an installation: the first administrator (``aegis admin create``)."""

from __future__ import annotations

from datetime import UTC, datetime

from aegis.server.audit import append_event
from aegis.server.auth.passwords import (
    ADMIN_MIN_PASSWORD_LENGTH,
    PasswordHasher,
    check_password_policy,
    load_common_file,
)
from aegis.server.db import repositories as repo
from aegis.server.db.database import Database
from aegis.server.errors import ApiError, ServerError
from aegis.server.settings import Settings

__all__ = ["ADMIN_MIN_PASSWORD_LENGTH", "create_admin"]


def create_admin(
    settings: Settings, email: str, password: str, *, db: Database | None = None
) -> str:
    """Create an active administrator (roles ``admin``) and return its id.

    The password must meet the policy with at least 15 characters (PW-4 for administrators).
    The schema must be up to date (``aegis db upgrade``).

    Raises:
        ServerError: the address is taken, or the password or address is refused.
    """
    from aegis.server.schemas import UserCreateV1

    try:
        UserCreateV1.model_validate({"email": email})
        check_password_policy(
            password,
            extra_common=load_common_file(settings.common_passwords_file),
            min_length=ADMIN_MIN_PASSWORD_LENGTH,
        )
    except ApiError as exc:
        raise ServerError(exc.message) from None
    except ValueError:
        raise ServerError(f"`{email}` is not a valid email address") from None
    hasher = PasswordHasher(settings.password_hash_profile, 1)
    password_hash = hasher.hash_sync(password)
    database = db or Database(settings.database_url)
    now = datetime.now(UTC)

    def create(session: object) -> str | None:
        user = repo.create_user(
            session,  # type: ignore[arg-type]
            email=email,
            name="",
            password_hash=password_hash,
            roles=["admin"],
            now=now,
        )
        if user is None:
            return None
        append_event(
            session,  # type: ignore[arg-type]
            at=now,
            action="admin_bootstrapped",
            target_id=user.id,
            details={"via": "cli"},
        )
        return user.id

    try:
        user_id = database.run_sync(create)
    finally:
        if db is None:
            database.dispose()
    if user_id is None:
        raise ServerError(f"a user with the email `{email}` already exists")
    return user_id
