"""Queries behind small functions; each takes an open SQLAlchemy session (one transaction)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aegis.server.auth.tokens import hash_token, new_opaque_token
from aegis.server.db.models import (
    LoginSource,
    RefreshToken,
    ResetToken,
    RevokedAccessToken,
    User,
)
from aegis.server.db.models import Session as SessionRow

__all__ = [
    "Rotation",
    "authenticate",
    "consume_reset_token",
    "create_reset_token",
    "create_session",
    "create_user",
    "denylist_access_token",
    "email_key",
    "is_known_source",
    "record_login_source",
    "revoke_family",
    "revoke_user_sessions",
    "rotate_refresh_token",
    "user_to_dict",
    "void_reset_tokens",
]


def email_key(email: str) -> str:
    """The case-insensitive lookup key of an e-mail address."""
    return email.lower()


def new_id() -> str:
    """A fresh random identifier (UUID 4, text)."""
    return str(uuid.uuid4())


def user_to_dict(user: User) -> dict[str, Any]:
    """The API form of a user (``UserV1``); never includes the password hash."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "roles": list(user.roles),
        "is_active": user.is_active,
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": user.updated_at.isoformat().replace("+00:00", "Z"),
    }


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    password_hash: str,
    roles: list[str],
    now: datetime,
    is_active: bool = True,
) -> User | None:
    """Insert a user; ``None`` if the address is taken (also under a concurrent insert)."""
    user = User(
        id=new_id(),
        email=email,
        email_key=email_key(email),
        name=name,
        password_hash=password_hash,
        roles=roles,
        is_active=is_active,
        created_at=now,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        return None
    return user


def create_session(session: Session, user_id: str, now: datetime) -> tuple[str, str]:
    """Start a refresh-token family for a login; returns ``(session_id, refresh_token)``."""
    family = SessionRow(id=new_id(), user_id=user_id, created_at=now, last_used_at=now)
    session.add(family)
    session.flush()  # the family row must exist before its first token (foreign key)
    token = new_opaque_token()
    session.add(
        RefreshToken(
            id=new_id(),
            family_id=family.id,
            parent_id=None,
            token_hash=hash_token(token),
            created_at=now,
        )
    )
    session.flush()
    return family.id, token


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token.

    Attributes:
        outcome: ``rotated``; ``unknown`` (never issued); ``reused`` (already used:
            family revoked, SES-3); ``revoked`` (unused, but its family was ended);
            ``expired`` (idle or absolute lifetime passed); ``inactive`` (user disabled).
        user_id: the token's user, when known.
        session_id: the token's family, when known.
        refresh_token: the new refresh token (``rotated`` only).
    """

    outcome: Literal["rotated", "unknown", "reused", "revoked", "expired", "inactive"]
    user_id: str | None = None
    session_id: str | None = None
    refresh_token: str | None = None


def revoke_family(session: Session, family_id: str, now: datetime, reason: str) -> None:
    """Revoke a session and every refresh token in it."""
    session.execute(
        sa.update(SessionRow)
        .where(SessionRow.id == family_id, SessionRow.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def revoke_user_sessions(
    session: Session, user_id: str, now: datetime, reason: str, *, keep: str | None = None
) -> int:
    """Revoke every session of a user (except ``keep``); returns how many were active."""
    query = sa.select(SessionRow.id).where(
        SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None)
    )
    if keep is not None:
        query = query.where(SessionRow.id != keep)
    ids = list(session.scalars(query.order_by(SessionRow.id)))  # one lock order for all
    for family_id in ids:
        revoke_family(session, family_id, now, reason)
    return len(ids)


def rotate_refresh_token(
    session: Session, token: str, now: datetime, *, idle: int, absolute: int
) -> Rotation:
    """Consume a refresh token and issue its successor (SES-2), atomically (SES-4).

    The consume is one ``UPDATE … WHERE used_at IS NULL … RETURNING``: of any number of
    concurrent presentations exactly one wins. A token that was already used revokes its whole
    family (SES-3, decision D1 strict); the caller must commit that even though it answers 401.
    """
    digest = hash_token(token)
    family_of = session.execute(
        sa.select(RefreshToken.family_id).where(RefreshToken.token_hash == digest)
    ).scalar_one_or_none()
    if family_of is None:
        return Rotation("unknown")
    # INVARIANT: every writer of a family locks its session row first, then token rows, so
    # concurrent rotations and revocations queue instead of deadlocking (PostgreSQL).
    session.execute(sa.select(SessionRow.id).where(SessionRow.id == family_of).with_for_update())
    won = session.execute(
        sa.update(RefreshToken)
        .where(
            RefreshToken.token_hash == digest,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
        .returning(RefreshToken.id, RefreshToken.family_id)
    ).first()
    if won is None:
        row = session.execute(
            sa.select(RefreshToken.family_id, SessionRow.user_id, RefreshToken.used_at)
            .join(SessionRow, SessionRow.id == RefreshToken.family_id)
            .where(RefreshToken.token_hash == digest)
        ).first()
        if row is None:
            return Rotation("unknown")
        if row.used_at is None:  # never used, but its family was revoked (logout, reset …)
            return Rotation("revoked", user_id=row.user_id, session_id=row.family_id)
        revoke_family(session, row.family_id, now, "refresh_reuse")
        return Rotation("reused", user_id=row.user_id, session_id=row.family_id)
    token_id, family_id = won
    family = session.get(SessionRow, family_id)
    assert family is not None
    user = session.get(User, family.user_id)
    if (
        family.revoked_at is not None
        or now - family.last_used_at > timedelta(seconds=idle)
        or now - family.created_at > timedelta(seconds=absolute)
    ):
        revoke_family(session, family_id, now, "expired")
        return Rotation("expired", user_id=family.user_id, session_id=family_id)
    if user is None or not user.is_active:
        revoke_family(session, family_id, now, "user_inactive")
        return Rotation("inactive", user_id=family.user_id, session_id=family_id)
    new_token = new_opaque_token()
    session.add(
        RefreshToken(
            id=new_id(),
            family_id=family_id,
            parent_id=token_id,
            token_hash=hash_token(new_token),
            created_at=now,
        )
    )
    family.last_used_at = now
    session.flush()
    return Rotation("rotated", user_id=user.id, session_id=family_id, refresh_token=new_token)


def find_family(session: Session, token: str) -> tuple[str, str] | None:
    """``(session_id, user_id)`` of a refresh token, used or not; ``None`` if unknown."""
    row = session.execute(
        sa.select(RefreshToken.family_id, SessionRow.user_id)
        .join(SessionRow, SessionRow.id == RefreshToken.family_id)
        .where(RefreshToken.token_hash == hash_token(token))
    ).first()
    return (row[0], row[1]) if row else None


def denylist_access_token(session: Session, jti: str, expires_at: datetime, now: datetime) -> None:
    """Refuse an access token until it expires (SES-5); also drops expired entries."""
    session.execute(sa.delete(RevokedAccessToken).where(RevokedAccessToken.expires_at < now))
    if session.get(RevokedAccessToken, jti) is None:
        session.add(RevokedAccessToken(jti=jti, expires_at=expires_at))


def authenticate(session: Session, user_id: str, session_id: str, jti: str) -> User | None:
    """The active user behind an access token whose session is live and jti not denylisted."""
    row = session.execute(
        sa.select(User)
        .join(SessionRow, SessionRow.user_id == User.id)
        .where(
            User.id == user_id,
            User.is_active.is_(True),
            SessionRow.id == session_id,
            SessionRow.revoked_at.is_(None),
        )
    ).scalar_one_or_none()
    if row is None or session.get(RevokedAccessToken, jti) is not None:
        return None
    return row


def create_reset_token(
    session: Session, user_id: str, purpose: str, now: datetime, ttl: int
) -> str:
    """Issue a single-use token for ``user_id``; older unused ones of the user are voided."""
    void_reset_tokens(session, user_id, now)
    token = new_opaque_token()
    session.add(
        ResetToken(
            id=new_id(),
            user_id=user_id,
            purpose=purpose,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    session.flush()
    return token


def void_reset_tokens(session: Session, user_id: str, now: datetime) -> None:
    """Make every unused reset token of a user unusable."""
    session.execute(
        sa.update(ResetToken)
        .where(ResetToken.user_id == user_id, ResetToken.used_at.is_(None))
        .values(used_at=now)
    )


def consume_reset_token(
    session: Session, token: str, now: datetime, *, purpose: str | None = None
) -> str | None:
    """Use a reset token once (atomic); returns its user id, or ``None`` if not usable.

    Args:
        session: the open transaction.
        token: the token as the user sent it.
        now: the current time.
        purpose: when given, only a token issued for this purpose (``invite``) is accepted.
    """
    query = sa.update(ResetToken).where(
        ResetToken.token_hash == hash_token(token),
        ResetToken.used_at.is_(None),
        ResetToken.expires_at > now,
    )
    if purpose is not None:
        query = query.where(ResetToken.purpose == purpose)
    row = session.execute(query.values(used_at=now).returning(ResetToken.user_id)).first()
    return row[0] if row else None


def record_login_source(session: Session, key: str, address_hash: str, now: datetime) -> None:
    """Remember that ``key`` logged in successfully from this (hashed) address."""
    row = session.get(LoginSource, (key, address_hash))
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    LoginSource(email_key=key, address_hash=address_hash, last_success_at=now)
                )
                session.flush()
        except IntegrityError:
            pass
    else:
        row.last_success_at = now


def is_known_source(
    session: Session, key: str, address_hash: str, now: datetime, max_age: int
) -> bool:
    """Whether ``key`` logged in successfully from this address within ``max_age`` seconds."""
    row = session.get(LoginSource, (key, address_hash))
    return row is not None and now - row.last_success_at <= timedelta(seconds=max_age)
