"""Request and response bodies of the API, versioned (H12). Requests refuse unknown fields,
wrong types and out-of-range lengths (INP-3); fields such as ``roles``, ``is_active`` or ``id``
cannot be set where the caller may not set them, because the models do not have them (AC-2).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "AuditEventV1",
    "AuditListV1",
    "ErrorV1",
    "ForgotPasswordRequestV1",
    "HealthV1",
    "LoginRequestV1",
    "LogoutRequestV1",
    "MessageV1",
    "PasswordChangeRequestV1",
    "RefreshRequestV1",
    "ResetPasswordRequestV1",
    "SignupRequestV1",
    "TokenPairV1",
    "UserAdminUpdateV1",
    "UserCreateV1",
    "UserListV1",
    "UserSelfUpdateV1",
    "UserV1",
]

_STRICT = ConfigDict(extra="forbid", strict=True)

Email = Annotated[
    str,
    StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+$"),
]
#: Passwords are checked by the policy (1 024 bytes); this bound only stops absurd inputs early.
Password = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Name = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
Role = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Token = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class SignupRequestV1(BaseModel):
    """``POST /api/v1/auth/signup``."""

    model_config = _STRICT
    email: Email
    password: Password
    name: Name = ""
    invite_token: Token | None = None


class LoginRequestV1(BaseModel):
    """``POST /api/v1/auth/login``."""

    model_config = _STRICT
    email: Email
    password: Password


class RefreshRequestV1(BaseModel):
    """``POST /api/v1/auth/refresh``."""

    model_config = _STRICT
    refresh_token: Token


class LogoutRequestV1(BaseModel):
    """``POST /api/v1/auth/logout``."""

    model_config = _STRICT
    refresh_token: Token


class ForgotPasswordRequestV1(BaseModel):
    """``POST /api/v1/auth/forgot-password``."""

    model_config = _STRICT
    email: Email


class ResetPasswordRequestV1(BaseModel):
    """``POST /api/v1/auth/reset-password``."""

    model_config = _STRICT
    token: Token
    new_password: Password


class PasswordChangeRequestV1(BaseModel):
    """``POST /api/v1/users/me/password``."""

    model_config = _STRICT
    current_password: Password
    new_password: Password


class UserSelfUpdateV1(BaseModel):
    """``PATCH /api/v1/users/me``: only the display name (roles and state are not yours to set)."""

    model_config = _STRICT
    name: Name | None = None


class UserCreateV1(BaseModel):
    """``POST /api/v1/users`` (administrators). No password: the user gets a set-password link."""

    model_config = _STRICT
    email: Email
    name: Name = ""
    roles: Annotated[list[Role], Field(min_length=0, max_length=16)] = ["user"]
    is_active: bool = True


class UserAdminUpdateV1(BaseModel):
    """``PATCH /api/v1/users/{id}`` (administrators)."""

    model_config = _STRICT
    name: Name | None = None
    roles: Annotated[list[Role], Field(max_length=16)] | None = None
    is_active: bool | None = None


class TokenPairV1(BaseModel):
    """A login or refresh result."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int


class UserV1(BaseModel):
    """A user as the API shows it."""

    id: str
    email: str
    name: str
    roles: list[str]
    is_active: bool
    created_at: str
    updated_at: str


class UserListV1(BaseModel):
    """A page of users."""

    items: list[UserV1]
    next_cursor: str | None


class AuditEventV1(BaseModel):
    """One audit event (``AuditRecordV1`` plus its hash)."""

    schema_version: int
    seq: int
    at: str
    action: str
    outcome: str
    actor_id: str | None
    target_id: str | None
    address: str | None
    request_id: str | None
    details: dict[str, object]
    prev_hash: str
    hash: str


class AuditListV1(BaseModel):
    """A page of audit events, oldest first."""

    items: list[AuditEventV1]
    next_cursor: str | None


class MessageV1(BaseModel):
    """An acknowledgement."""

    status: str
    message: str


class HealthV1(BaseModel):
    """``GET /api/v1/health``."""

    status: Literal["ok", "degraded", "down"]
    checks: dict[str, dict[str, object]]


class _ErrorInner(BaseModel):
    code: str
    message: str
    details: list[object]


class ErrorV1(BaseModel):
    """Every error response."""

    error: _ErrorInner
