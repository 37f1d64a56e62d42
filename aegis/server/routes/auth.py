"""``/api/v1/auth``: signup, login, refresh, logout, forgot-password, reset-password.

Enumeration (REC-1): signup with a taken address answers exactly like a new signup (201 with a
user-shaped body whose ``id`` is random and never stored) after the same work (one Argon2
hash); the owner of the address gets an e-mail instead. Login with an unknown address runs a
dummy Argon2 verification and returns the same 401 as a wrong password. Forgot-password
always answers 202 with one fixed body, and does its work after the response is sent.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from aegis.server._context import AppContext
from aegis.server.audit import append_event
from aegis.server.auth.passwords import (
    ADMIN_MIN_PASSWORD_LENGTH,
    MAX_PASSWORD_BYTES,
    check_password_policy,
)
from aegis.server.auth.throttle import address_hash
from aegis.server.auth.tokens import fingerprint
from aegis.server.db import repositories as repo
from aegis.server.db.models import User
from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.routes._common import address, body, context, json_response, request_id
from aegis.server.schemas import (
    ErrorV1,
    ForgotPasswordRequestV1,
    LoginRequestV1,
    LogoutRequestV1,
    MessageV1,
    RefreshRequestV1,
    ResetPasswordRequestV1,
    SignupRequestV1,
    TokenPairV1,
    UserV1,
)

__all__ = ["endpoints"]

_FORGOT_BODY = {
    "status": "accepted",
    "message": "if the address belongs to an account, a reset link is on its way",
}


def _invalid_grant() -> ApiError:
    return ApiError("auth.invalid_grant", "the refresh token is invalid, expired or already used")


def _invalid_credentials() -> ApiError:
    return ApiError("auth.invalid_credentials", "the email or password is incorrect")


def _token_pair(ctx: AppContext, user_id: str, session_id: str, refresh: str) -> dict[str, Any]:
    access, _ = ctx.tokens.issue(user_id, session_id)
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": ctx.tokens.ttl,
    }


async def signup(request: Request) -> Response:
    """Create an account with role ``user`` (open mode) — see the module docstring."""
    ctx = context(request)
    mode = ctx.settings.signup_mode
    if mode == "closed":
        raise ApiError(
            "auth.signup_closed", "sign-up is closed: ask an administrator for an account"
        )
    data = body(request, SignupRequestV1)
    if data.invite_token is not None:
        return await _accept_invite(request, data)
    if mode == "invite":
        raise ApiError(
            "auth.signup_closed", "sign-up needs an invitation: ask an administrator for one"
        )
    check_password_policy(data.password, extra_common=ctx.extra_common)
    password_hash = await ctx.hasher.hash(data.password)
    now = ctx.clock()
    where, rid = address(request), request_id(request)

    def create(session: Any) -> dict[str, Any] | None:
        user = repo.create_user(
            session,
            email=data.email,
            name=data.name,
            password_hash=password_hash,
            roles=["user"],
            now=now,
        )
        if user is None:
            append_event(
                session,
                at=now,
                action="signup_rejected_existing",
                outcome="failure",
                address=where,
                request_id=rid,
                details={"email": repo.email_key(data.email)},
            )
            return None
        append_event(
            session,
            at=now,
            action="signup",
            actor_id=user.id,
            target_id=user.id,
            address=where,
            request_id=rid,
        )
        return repo.user_to_dict(user)

    created = await ctx.db.run(create)
    if created is None:
        stamp = now.isoformat().replace("+00:00", "Z")
        created = {
            "id": str(uuid.uuid4()),
            "email": data.email,
            "name": data.name,
            "roles": ["user"],
            "is_active": True,
            "created_at": stamp,
            "updated_at": stamp,
        }
        task = BackgroundTask(
            ctx.mailer.send,
            data.email,
            "Sign-up attempt for your Aegis account",
            "Someone tried to create an Aegis account with this address, which already has "
            "one. If it was you, log in or use 'forgot password'. Otherwise ignore this message.",
        )
    else:
        task = BackgroundTask(
            ctx.mailer.send,
            data.email,
            "Welcome to Aegis",
            "Your Aegis account was created. If you did not sign up, contact your administrator.",
        )
    return Response(
        json_response(created, 201).body,
        status_code=201,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
        background=task,
    )


async def _accept_invite(request: Request, data: SignupRequestV1) -> Response:
    """Invite mode: an administrator created the account; its invitation token sets the password.

    The token must have been issued for this address with purpose ``invite`` and be unused and
    unexpired; it is consumed atomically. The account keeps the roles the administrator gave.
    """
    ctx = context(request)
    assert data.invite_token is not None
    check_password_policy(data.password, extra_common=ctx.extra_common)
    password_hash = await ctx.hasher.hash(data.password)
    now, where, rid = ctx.clock(), address(request), request_id(request)
    token, key = data.invite_token, repo.email_key(data.email)

    def accept(session: Any) -> dict[str, Any]:
        user_id = repo.consume_reset_token(session, token, now, purpose="invite")
        user = session.get(User, user_id) if user_id else None
        if user is None or user.email_key != key:
            # raising rolls back: a token sent with another address stays usable by its owner
            raise ApiError("auth.invalid_invite", "the invitation is invalid, used or expired")
        user.password_hash = password_hash
        if data.name:
            user.name = data.name
        user.updated_at = now
        append_event(
            session,
            at=now,
            action="invitation_accepted",
            actor_id=user.id,
            target_id=user.id,
            address=where,
            request_id=rid,
        )
        return repo.user_to_dict(user)

    return json_response(await ctx.db.run(accept), 201)


async def login(request: Request) -> Response:
    """Exchange e-mail and password for an access and a refresh token."""
    ctx = context(request)
    data = body(request, LoginRequestV1)
    key, where, rid = repo.email_key(data.email), address(request), request_id(request)
    try:
        await ctx.throttle.check(key, where)
    except ApiError:
        ctx.metrics.login_failures.labels("throttled").inc()
        ctx.event("login_throttled", request_id=rid, client=where)
        raise
    user: User | None = await ctx.db.run(
        lambda s: s.query(User).filter(User.email_key == key).one_or_none()
    )
    ok, new_hash = False, None
    if len(data.password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        await ctx.hasher.dummy_verify("x")
    elif user is not None:
        ok, new_hash = await ctx.hasher.verify(data.password, user.password_hash)
    else:
        await ctx.hasher.dummy_verify(data.password)
    now = ctx.clock()
    if not ok or user is None or not user.is_active:
        await ctx.throttle.failed(key, where)
        ctx.metrics.login_failures.labels("credentials").inc()
        target = user.id if user else None

        def record_failure(session: Any) -> None:
            append_event(
                session,
                at=now,
                action="login_failed",
                outcome="failure",
                target_id=target,
                address=where,
                request_id=rid,
                details={"email": key},
            )

        await ctx.db.run(record_failure)
        raise _invalid_credentials()
    user_id = user.id

    def start(session: Any) -> tuple[str, str]:
        if new_hash is not None:
            row = session.get(User, user_id)
            row.password_hash = new_hash
        session_id, refresh = repo.create_session(session, user_id, now)
        repo.record_login_source(session, key, address_hash(where), now)
        append_event(
            session,
            at=now,
            action="login_succeeded",
            actor_id=user_id,
            target_id=user_id,
            address=where,
            request_id=rid,
            details={"session": session_id},
        )
        return session_id, refresh

    session_id, refresh = await ctx.db.run(start)
    return json_response(_token_pair(ctx, user_id, session_id, refresh))


async def refresh(request: Request) -> Response:
    """Rotate a refresh token; a reused one revokes its whole family (SES-2..4)."""
    ctx = context(request)
    data = body(request, RefreshRequestV1)
    now, where, rid = ctx.clock(), address(request), request_id(request)
    settings = ctx.settings

    def rotate(session: Any) -> repo.Rotation:
        result = repo.rotate_refresh_token(
            session,
            data.refresh_token,
            now,
            idle=settings.refresh_idle_ttl,
            absolute=settings.refresh_absolute_ttl,
        )
        if result.outcome == "reused":
            append_event(
                session,
                at=now,
                action="refresh_reuse_detected",
                outcome="failure",
                actor_id=None,
                target_id=result.user_id,
                address=where,
                request_id=rid,
                details={
                    "session": result.session_id,
                    "token_fingerprint": fingerprint(data.refresh_token),
                },
            )
        elif result.outcome == "rotated":
            append_event(
                session,
                at=now,
                action="token_refreshed",
                actor_id=result.user_id,
                target_id=result.user_id,
                address=where,
                request_id=rid,
                details={"session": result.session_id},
            )
        elif result.outcome in ("expired", "inactive", "revoked"):
            append_event(
                session,
                at=now,
                action="refresh_refused",
                outcome="failure",
                target_id=result.user_id,
                address=where,
                request_id=rid,
                details={"session": result.session_id, "why": result.outcome},
            )
        return result

    # INVARIANT: the transaction commits before we answer, so a family revoked for reuse
    # stays revoked although the response is a 401 (SES-3).
    result = await ctx.db.run(rotate)
    if result.outcome == "reused":
        ctx.metrics.refresh_reuse.inc()
        ctx.event(
            "refresh_reuse_detected",
            request_id=rid,
            client=where,
            session=result.session_id,
            user=result.user_id,
        )
    if result.outcome != "rotated":
        raise _invalid_grant()
    assert result.user_id is not None
    assert result.session_id is not None
    assert result.refresh_token is not None
    return json_response(_token_pair(ctx, result.user_id, result.session_id, result.refresh_token))


async def logout(request: Request) -> Response:
    """End a session: revoke its refresh-token family and denylist the access token (SES-5).

    Answers 204 whatever the token, so it reveals nothing. Access tokens of the session stop
    working at once (they carry the session id); the request's own access token, when it
    belongs to that session, is also denylisted by ``jti`` until it expires.
    """
    ctx = context(request)
    data = body(request, LogoutRequestV1)
    now, where, rid = ctx.clock(), address(request), request_id(request)
    caller = request.scope.get("aegis.principal")

    def end(session: Any) -> None:
        found = repo.find_family(session, data.refresh_token)
        if found is not None:
            family_id, user_id = found
            repo.revoke_family(session, family_id, now, "logout")
            append_event(
                session,
                at=now,
                action="logout",
                actor_id=user_id,
                target_id=user_id,
                address=where,
                request_id=rid,
                details={"session": family_id},
            )
            # The family's access tokens already fail (they carry its id); the caller's own
            # token is also denylisted by jti, as SES-5 asks.
            if caller is not None and caller.session_id == family_id:
                repo.denylist_access_token(session, caller.token_id, caller.token_expires_at, now)

    await ctx.db.run(end)
    return Response(status_code=204)


async def forgot_password(request: Request) -> Response:
    """Always 202 with one body; the reset mail is prepared after the response (REC-1, REC-2)."""
    ctx = context(request)
    data = body(request, ForgotPasswordRequestV1)
    key, where, rid = repo.email_key(data.email), address(request), request_id(request)

    async def work() -> None:
        now = ctx.clock()

        def issue(session: Any) -> tuple[str, str] | None:
            user = session.query(User).filter(User.email_key == key).one_or_none()
            append_event(
                session,
                at=now,
                action="password_reset_requested",
                outcome="success" if user is not None and user.is_active else "failure",
                target_id=user.id if user else None,
                address=where,
                request_id=rid,
                details={"email": key},
            )
            if user is None or not user.is_active:
                return None
            token = repo.create_reset_token(
                session, user.id, "reset", now, ctx.settings.reset_token_ttl
            )
            return user.email, token

        try:
            issued = await ctx.db.run(issue)
            if issued is not None:
                email, token = issued
                await ctx.mailer.send(
                    email, "Reset your Aegis password", reset_mail_text(ctx, token)
                )
        except Exception:  # never surfaces: the answer was already sent (FLT-19)
            ctx.log.exception("forgot-password background work failed")

    return Response(
        json_response(_FORGOT_BODY, 202).body,
        status_code=202,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(work),
    )


def reset_mail_text(ctx: AppContext, token: str) -> str:
    """The body of a password-reset mail carrying ``token``."""
    minutes = ctx.settings.reset_token_ttl // 60
    base = ctx.settings.public_base_url
    # INVARIANT: links come from AEGIS_PUBLIC_BASE_URL only, never from request headers (REC-4).
    if base:
        how = f"Open this link within {minutes} minutes:\n\n{base}/reset-password?token={token}\n"
    else:
        how = (
            f"Within {minutes} minutes, send this token to POST /api/v1/auth/reset-password "
            f"with your new password:\n\n{token}\n"
        )
    return f"A password reset was requested for your Aegis account.\n\n{how}\n" + (
        "If you did not ask for it, ignore this message: your password is unchanged."
    )


async def reset_password(request: Request) -> Response:
    """Set a new password with a reset token; every session ends, no tokens are returned."""
    ctx = context(request)
    data = body(request, ResetPasswordRequestV1)
    check_password_policy(data.new_password, extra_common=ctx.extra_common)
    new_hash = await ctx.hasher.hash(data.new_password)
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def apply(session: Any) -> str | None:
        user_id = repo.consume_reset_token(session, data.token, now)
        if user_id is None:
            return None
        user = session.get(User, user_id)
        if user is None or not user.is_active:
            return None
        if "admin" in user.roles and len(data.new_password) < ADMIN_MIN_PASSWORD_LENGTH:
            # raising rolls the transaction back: the token stays usable for a longer password
            raise ApiError(
                "password.rejected",
                f"the password must have at least {ADMIN_MIN_PASSWORD_LENGTH} characters",
            )
        user.password_hash = new_hash
        user.updated_at = now
        repo.revoke_user_sessions(session, user_id, now, "password_reset")
        repo.void_reset_tokens(session, user_id, now)
        append_event(
            session,
            at=now,
            action="password_reset_completed",
            actor_id=user_id,
            target_id=user_id,
            address=where,
            request_id=rid,
        )
        return str(user.email)

    email = await ctx.db.run(apply)
    if email is None:
        raise ApiError("auth.invalid_reset_token", "the reset token is invalid, used or expired")
    return Response(
        status_code=204,
        background=BackgroundTask(
            ctx.mailer.send,
            email,
            "Your Aegis password was changed",
            "The password of your Aegis account was reset and every session was signed out. "
            "If this was not you, contact your administrator at once.",
        ),
    )


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/auth`` endpoints."""
    prefix = "/api/v1/auth"
    err = ("error", ErrorV1)
    return [
        Endpoint(
            f"{prefix}/signup",
            "POST",
            "api:auth:signup",
            signup,
            "Create an account",
            rate_class="auth",
            request_model=SignupRequestV1,
            responses={
                201: ("the account (same shape if the address was taken)", UserV1),
                403: ("sign-up is closed", ErrorV1),
                422: err,
                429: err,
            },
            tags=("auth",),
        ),
        Endpoint(
            f"{prefix}/login",
            "POST",
            "api:auth:login",
            login,
            "Log in",
            rate_class="auth",
            request_model=LoginRequestV1,
            responses={200: ("a token pair", TokenPairV1), 401: err, 422: err, 429: err},
            tags=("auth",),
        ),
        Endpoint(
            f"{prefix}/refresh",
            "POST",
            "api:auth:refresh",
            refresh,
            "Rotate a refresh token",
            rate_class="auth",
            rate_limit="60/minute;600/hour",
            request_model=RefreshRequestV1,
            responses={200: ("a new token pair", TokenPairV1), 401: err, 422: err, 429: err},
            tags=("auth",),
        ),
        Endpoint(
            f"{prefix}/logout",
            "POST",
            "api:auth:logout",
            logout,
            "Log out",
            rate_class="auth",
            rate_limit="60/minute",
            request_model=LogoutRequestV1,
            responses={204: ("the session is over", None), 422: err, 429: err},
            tags=("auth",),
        ),
        Endpoint(
            f"{prefix}/forgot-password",
            "POST",
            "api:auth:forgot-password",
            forgot_password,
            "Ask for a password-reset e-mail",
            rate_class="auth",
            rate_limit="10/minute;50/hour",
            request_model=ForgotPasswordRequestV1,
            responses={202: ("accepted (always)", MessageV1), 422: err, 429: err},
            tags=("auth",),
        ),
        Endpoint(
            f"{prefix}/reset-password",
            "POST",
            "api:auth:reset-password",
            reset_password,
            "Set a new password with a reset token",
            rate_class="auth",
            request_model=ResetPasswordRequestV1,
            responses={
                204: ("password changed, every session ended", None),
                400: err,
                422: err,
                429: err,
            },
            tags=("auth",),
        ),
    ]
