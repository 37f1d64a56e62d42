"""``/api/v1/users``: one's own account, and user administration (administrators).

Object level (AC-2): ``/users/me`` only ever reaches the caller's own row; ``/users/{id}`` is
an administrator action in the system policy. Field level: the request models hold only the
fields the caller may set, and unknown fields are refused (422).
Roles ``admin``, ``user`` and ``auditor`` are built in; any other well-formed role name is a
custom role that policies may refer to. The last active administrator cannot be disabled,
demoted or deleted (409). Disabling a user, changing their roles or deleting them ends every
session at once (SES-5).
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.audit import append_event
from aegis.server.auth.passwords import ADMIN_MIN_PASSWORD_LENGTH, check_password_policy
from aegis.server.db import repositories as repo
from aegis.server.db.models import User
from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.routes._common import (
    address,
    body,
    context,
    json_response,
    page_limit,
    principal,
    query_params,
    request_id,
)
from aegis.server.routes.auth import reset_mail_text
from aegis.server.schemas import (
    ErrorV1,
    PasswordChangeRequestV1,
    UserAdminUpdateV1,
    UserCreateV1,
    UserListV1,
    UserSelfUpdateV1,
    UserV1,
)

__all__ = ["BUILTIN_ROLES", "endpoints"]

BUILTIN_ROLES = ("admin", "auditor", "user")


def _not_found() -> ApiError:
    return ApiError("resource.not_found", "no such user")


async def get_me(request: Request) -> Response:
    """The caller's own account."""
    ctx, me = context(request), principal(request)
    user = await ctx.db.run(lambda s: s.get(User, me.id))
    if user is None:
        raise _not_found()
    return json_response(repo.user_to_dict(user))


async def patch_me(request: Request) -> Response:
    """Change one's display name."""
    ctx, me = context(request), principal(request)
    data = body(request, UserSelfUpdateV1)
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def update(session: Any) -> dict[str, Any] | None:
        user = session.get(User, me.id)
        if user is None:
            return None
        if data.name is not None and data.name != user.name:
            user.name = data.name
            user.updated_at = now
            append_event(
                session,
                at=now,
                action="profile_updated",
                actor_id=me.id,
                target_id=me.id,
                address=where,
                request_id=rid,
                details={"fields": ["name"]},
            )
        return repo.user_to_dict(user)

    result = await ctx.db.run(update)
    if result is None:
        raise _not_found()
    return json_response(result)


async def change_password(request: Request) -> Response:
    """Change one's password (needs the current one); every other session ends (PW-4)."""
    ctx, me = context(request), principal(request)
    data = body(request, PasswordChangeRequestV1)
    where, rid = address(request), request_id(request)
    await ctx.throttle.check(repo.email_key(me.email), where)
    user = await ctx.db.run(lambda s: s.get(User, me.id))
    if user is None:
        raise _not_found()
    ok, _ = await ctx.hasher.verify(data.current_password, user.password_hash)
    if not ok:
        await ctx.throttle.failed(repo.email_key(me.email), where)
        raise ApiError("password.rejected", "the current password is incorrect")
    check_password_policy(
        data.new_password,
        extra_common=ctx.extra_common,
        min_length=ADMIN_MIN_PASSWORD_LENGTH if "admin" in me.roles else 8,
    )
    new_hash = await ctx.hasher.hash(data.new_password)
    now = ctx.clock()

    def apply(session: Any) -> None:
        row = session.get(User, me.id)
        row.password_hash = new_hash
        row.updated_at = now
        ended = repo.revoke_user_sessions(
            session, me.id, now, "password_changed", keep=me.session_id
        )
        append_event(
            session,
            at=now,
            action="password_changed",
            actor_id=me.id,
            target_id=me.id,
            address=where,
            request_id=rid,
            details={"other_sessions_ended": ended},
        )

    await ctx.db.run(apply)
    return Response(
        status_code=204,
        background=BackgroundTask(
            ctx.mailer.send,
            me.email,
            "Your Aegis password was changed",
            "The password of your Aegis account was changed and your other sessions were "
            "signed out. If this was not you, reset your password and tell your administrator.",
        ),
    )


async def list_users(request: Request) -> Response:
    """A page of users ordered by id; ``next_cursor`` continues it."""
    ctx = context(request)
    params = query_params(request, {"limit", "cursor"})
    limit = page_limit(params.get("limit"))
    cursor = params.get("cursor") or None

    def page(session: Any) -> list[dict[str, Any]]:
        query = sa.select(User).order_by(User.id).limit(limit + 1)
        if cursor:
            query = query.where(User.id > cursor)
        return [repo.user_to_dict(u) for u in session.scalars(query)]

    rows = await ctx.db.run(page)
    more = len(rows) > limit
    items = rows[:limit]
    return json_response({"items": items, "next_cursor": items[-1]["id"] if more else None})


def _active_admins(session: Any, excluding: str) -> int:
    users = session.scalars(sa.select(User).where(User.is_active.is_(True), User.id != excluding))
    return sum(1 for u in users if "admin" in u.roles)


async def create_user(request: Request) -> Response:
    """Create a user; they receive a set-password link (administrators never set passwords)."""
    ctx, me = context(request), principal(request)
    data = body(request, UserCreateV1)
    now, where, rid = ctx.clock(), address(request), request_id(request)
    unusable = "!" + secrets.token_hex(16)  # not a PHC string: no password can match it

    def create(session: Any) -> tuple[dict[str, Any], str | None] | None:
        user = repo.create_user(
            session,
            email=data.email,
            name=data.name,
            password_hash=unusable,
            roles=sorted(set(data.roles)),
            now=now,
            is_active=data.is_active,
        )
        if user is None:
            return None
        token = repo.create_reset_token(
            session, user.id, "invite", now, ctx.settings.reset_token_ttl
        )
        append_event(
            session,
            at=now,
            action="user_created",
            actor_id=me.id,
            target_id=user.id,
            address=where,
            request_id=rid,
            details={"roles": list(user.roles)},
        )
        return repo.user_to_dict(user), token

    result = await ctx.db.run(create)
    if result is None:
        raise ApiError("resource.conflict", "a user with this email already exists")
    created, token = result
    text = (
        "An administrator created an Aegis account for you. Set your password with "
        f"POST /api/v1/auth/reset-password and this token (valid "
        f"{ctx.settings.reset_token_ttl // 60} minutes; ask for a new one with "
        f"'forgot password' after that):\n\n{token}\n"
    )
    if ctx.settings.public_base_url:
        text = (
            "An administrator created an Aegis account for you. Choose your password here: "
            f"{ctx.settings.public_base_url}/reset-password?token={token}\n"
        )
    return Response(
        json_response(created, 201).body,
        status_code=201,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Location": f"/api/v1/users/{created['id']}"},
        background=BackgroundTask(ctx.mailer.send, data.email, "Your Aegis account", text),
    )


async def get_user(request: Request) -> Response:
    """One user."""
    ctx = context(request)
    user_id = request.path_params["id"]
    user = await ctx.db.run(lambda s: s.get(User, user_id))
    if user is None:
        raise _not_found()
    return json_response(repo.user_to_dict(user))


async def patch_user(request: Request) -> Response:
    """Change a user's name, roles or state; roles or state changes end their sessions."""
    ctx, me = context(request), principal(request)
    data = body(request, UserAdminUpdateV1)
    user_id = request.path_params["id"]
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def update(session: Any) -> dict[str, Any] | str:
        user = session.get(User, user_id)
        if user is None:
            return "missing"
        changed: list[str] = []
        end_sessions = False
        new_roles = sorted(set(data.roles)) if data.roles is not None else list(user.roles)
        new_active = data.is_active if data.is_active is not None else user.is_active
        was_admin = "admin" in user.roles and user.is_active
        demoted = "admin" not in new_roles or not new_active
        if was_admin and demoted and _active_admins(session, user.id) == 0:
            return "last-admin"
        if data.name is not None and data.name != user.name:
            user.name = data.name
            changed.append("name")
        if new_roles != sorted(user.roles):
            user.roles = new_roles
            changed.append("roles")
            end_sessions = True
        if new_active != user.is_active:
            user.is_active = new_active
            changed.append("is_active")
            end_sessions = end_sessions or not new_active
        if changed:
            user.updated_at = now
            ended = (
                repo.revoke_user_sessions(session, user.id, now, "admin_change")
                if end_sessions
                else 0
            )
            append_event(
                session,
                at=now,
                action="user_updated",
                actor_id=me.id,
                target_id=user.id,
                address=where,
                request_id=rid,
                details={
                    "fields": changed,
                    "roles": list(user.roles),
                    "is_active": user.is_active,
                    "sessions_ended": ended,
                },
            )
        return repo.user_to_dict(user)

    result = await ctx.db.run(update)
    if result == "missing":
        raise _not_found()
    if result == "last-admin":
        raise ApiError("resource.conflict", "the last active administrator cannot lose that role")
    assert isinstance(result, dict)
    return json_response(result)


async def delete_user(request: Request) -> Response:
    """Delete a user and every session of theirs; their audit events stay."""
    ctx, me = context(request), principal(request)
    user_id = request.path_params["id"]
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def remove(session: Any) -> str:
        user = session.get(User, user_id)
        if user is None:
            return "missing"
        if "admin" in user.roles and user.is_active and _active_admins(session, user.id) == 0:
            return "last-admin"
        repo.revoke_user_sessions(session, user.id, now, "user_deleted")
        append_event(
            session,
            at=now,
            action="user_deleted",
            actor_id=me.id,
            target_id=user.id,
            address=where,
            request_id=rid,
            details={"email": user.email_key},
        )
        session.delete(user)
        return "ok"

    outcome = await ctx.db.run(remove)
    if outcome == "missing":
        raise _not_found()
    if outcome == "last-admin":
        raise ApiError("resource.conflict", "the last active administrator cannot be deleted")
    return Response(status_code=204)


async def end_my_sessions(request: Request) -> Response:
    """Log out everywhere: every session of the caller ends, this one included (SES-5)."""
    ctx, me = context(request), principal(request)
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def end(session: Any) -> None:
        ended = repo.revoke_user_sessions(session, me.id, now, "logout_everywhere")
        repo.denylist_access_token(session, me.token_id, me.token_expires_at, now)
        append_event(
            session,
            at=now,
            action="logout_everywhere",
            actor_id=me.id,
            target_id=me.id,
            address=where,
            request_id=rid,
            details={"sessions_ended": ended},
        )

    await ctx.db.run(end)
    return Response(status_code=204)


async def end_user_sessions(request: Request) -> Response:
    """An administrator ends every session of a user."""
    ctx, me = context(request), principal(request)
    user_id = request.path_params["id"]
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def end(session: Any) -> bool:
        if session.get(User, user_id) is None:
            return False
        ended = repo.revoke_user_sessions(session, user_id, now, "admin_terminated")
        append_event(
            session,
            at=now,
            action="sessions_terminated",
            actor_id=me.id,
            target_id=user_id,
            address=where,
            request_id=rid,
            details={"sessions_ended": ended},
        )
        return True

    if not await ctx.db.run(end):
        raise _not_found()
    return Response(status_code=204)


async def trigger_reset(request: Request) -> Response:
    """An administrator sends a user a password-reset token (never sees or sets the password)."""
    ctx, me = context(request), principal(request)
    user_id = request.path_params["id"]
    now, where, rid = ctx.clock(), address(request), request_id(request)
    ttl = ctx.settings.reset_token_ttl

    def issue(session: Any) -> tuple[str, str] | None:
        user = session.get(User, user_id)
        if user is None:
            return None
        token = repo.create_reset_token(session, user.id, "reset", now, ttl)
        append_event(
            session,
            at=now,
            action="password_reset_requested",
            actor_id=me.id,
            target_id=user.id,
            address=where,
            request_id=rid,
            details={"by": "admin"},
        )
        return str(user.email), token

    issued = await ctx.db.run(issue)
    if issued is None:
        raise _not_found()
    email, token = issued
    return Response(
        status_code=202,
        background=BackgroundTask(
            ctx.mailer.send, email, "Reset your Aegis password", reset_mail_text(ctx, token)
        ),
    )


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/users`` endpoints."""
    err = ("error", ErrorV1)
    common = {401: err, 403: err, 429: err}
    return [
        Endpoint(
            "/api/v1/users/me",
            "GET",
            "api:me:read",
            get_me,
            "Your account",
            responses={200: ("you", UserV1), **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/me",
            "PATCH",
            "api:me:write",
            patch_me,
            "Change your display name",
            request_model=UserSelfUpdateV1,
            responses={200: ("you", UserV1), 422: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/me/password",
            "POST",
            "api:me:password",
            change_password,
            "Change your password (ends your other sessions)",
            request_model=PasswordChangeRequestV1,
            responses={204: ("changed", None), 422: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users",
            "GET",
            "api:users:read",
            list_users,
            "List users",
            responses={200: ("a page of users", UserListV1), 422: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users",
            "POST",
            "api:users:write",
            create_user,
            "Create a user (they get a set-password e-mail)",
            request_model=UserCreateV1,
            responses={201: ("the user", UserV1), 409: err, 422: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/{id}",
            "GET",
            "api:users:read",
            get_user,
            "One user",
            responses={200: ("the user", UserV1), 404: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/{id}",
            "PATCH",
            "api:users:write",
            patch_user,
            "Change a user's name, roles or state",
            request_model=UserAdminUpdateV1,
            responses={200: ("the user", UserV1), 404: err, 409: err, 422: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/me/sessions",
            "DELETE",
            "api:me:write",
            end_my_sessions,
            "Log out everywhere (every session of yours ends)",
            responses={204: ("every session ended", None), **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/{id}/sessions",
            "DELETE",
            "api:users:write",
            end_user_sessions,
            "End every session of a user",
            responses={204: ("every session ended", None), 404: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/{id}/reset-password",
            "POST",
            "api:users:write",
            trigger_reset,
            "Send a user a password-reset token",
            responses={202: ("the user was mailed a token", None), 404: err, **common},
            tags=("users",),
        ),
        Endpoint(
            "/api/v1/users/{id}",
            "DELETE",
            "api:users:delete",
            delete_user,
            "Delete a user",
            responses={204: ("deleted", None), 404: err, 409: err, **common},
            tags=("users",),
        ),
    ]
