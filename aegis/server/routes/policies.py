"""``/api/v1/policies``: the policy documents whose enabled union is the active set.

A document is DSL text with a name (``^[a-z0-9][a-z0-9_.-]{0,63}$``, loaded as
``<name>.aegis``) of at most 64 KiB (INP-5). A create or update is refused with 422
``policy.invalid`` carrying every diagnostic (``line``/``column`` included) when the document
does not load together with the other enabled documents (a disabled one must load on its
own). Every change is kept in ``policy_versions`` (author, time, full text) and written to the
security-event chain; changes are serialised so two replicas cannot enable documents that only
conflict together.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.audit import append_event
from aegis.server.db import repositories as repo
from aegis.server.db.models import PolicyDocument, PolicyVersion
from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.policy_service import (
    POLICIES_KEY,
    PolicyService,
    document_file,
    enabled_texts,
)
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
from aegis.server.schemas import ErrorV1

__all__ = [
    "MAX_SOURCE_BYTES",
    "DiagnosticV1",
    "PolicyCreateV1",
    "PolicyListV1",
    "PolicyUpdateV1",
    "PolicyV1",
    "endpoints",
    "service",
]

#: Largest policy document accepted, in UTF-8 bytes (INP-5).
MAX_SOURCE_BYTES = 64 * 1024
_STRICT = ConfigDict(extra="forbid", strict=True)
_ID = re.compile(r"[0-9a-f-]{1,36}")  # document ids are UUIDs
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
DocName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=64)]
# NUL is refused: PostgreSQL text cannot hold it, and no policy needs it
Source = Annotated[str, StringConstraints(max_length=MAX_SOURCE_BYTES, pattern=r"^[^\x00]*$")]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")]


class PolicyCreateV1(BaseModel):
    """``POST /api/v1/policies``."""

    model_config = _STRICT
    name: DocName
    source: Source
    description: Description = ""
    enabled: bool = True


class PolicyUpdateV1(BaseModel):
    """``PUT /api/v1/policies/{id}``: the fields to change (at least one)."""

    model_config = _STRICT
    name: DocName | None = None
    source: Source | None = None
    description: Description | None = None
    enabled: bool | None = None


class SourceV1(BaseModel):
    """``POST /api/v1/policies/validate`` and ``/format``."""

    model_config = _STRICT
    source: Source
    name: DocName | None = None


class PolicyV1(BaseModel):
    """A policy document."""

    id: str
    name: str
    description: str
    source: str
    enabled: bool
    version: int
    created_at: str
    created_by: str | None
    updated_at: str
    updated_by: str | None


class PolicyListV1(BaseModel):
    """A page of policy documents, by name."""

    items: list[PolicyV1]
    next_cursor: str | None


class PolicyVersionV1(BaseModel):
    """One kept change of a document."""

    policy_id: str
    version: int
    change: Literal["created", "updated", "deleted"]
    name: str
    description: str
    source: str
    enabled: bool
    author_id: str | None
    at: str


class PolicyVersionListV1(BaseModel):
    """A page of a document's versions, oldest first."""

    items: list[PolicyVersionV1]
    next_cursor: str | None


class DiagnosticV1(BaseModel):
    """One problem of a policy text (``Diagnostic.to_dict()``)."""

    code: str
    message: str
    severity: str
    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    help: str | None


class ValidationV1(BaseModel):
    """The verdict of ``POST /api/v1/policies/validate``."""

    ok: bool
    diagnostics: list[DiagnosticV1]


class FormattedV1(BaseModel):
    """The canonical text of ``POST /api/v1/policies/format``."""

    source: str


def service(request: Request) -> PolicyService:
    """The app's policy service."""
    found = context(request).policies
    assert found is not None, "create_app builds the policy service"
    return found


def _stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _to_dict(doc: PolicyDocument) -> dict[str, Any]:
    return {
        "id": doc.id,
        "name": doc.name,
        "description": doc.description,
        "source": doc.source,
        "enabled": doc.enabled,
        "version": doc.version,
        "created_at": _stamp(doc.created_at),
        "created_by": doc.created_by,
        "updated_at": _stamp(doc.updated_at),
        "updated_by": doc.updated_by,
    }


def _version_to_dict(row: PolicyVersion) -> dict[str, Any]:
    return {
        "policy_id": row.policy_id,
        "version": row.version,
        "change": row.change,
        "name": row.name,
        "description": row.description,
        "source": row.source,
        "enabled": row.enabled,
        "author_id": row.author_id,
        "at": _stamp(row.at),
    }


def _check_size(source: str) -> None:
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise ApiError(
            "request.invalid", f"a policy document holds at most {MAX_SOURCE_BYTES} bytes"
        )


def diagnostics_of(texts: dict[str, str]) -> list[dict[str, Any]]:
    """Every diagnostic of loading ``texts`` together (empty when they load)."""
    from aegis.lang import PolicyLoadError, load_texts

    try:
        load_texts(texts)
    except PolicyLoadError as exc:
        return [d.to_dict() for d in exc.diagnostics]
    return []


def _refuse(diagnostics: list[dict[str, Any]]) -> ApiError:
    count = sum(1 for d in diagnostics if d["severity"] == "error")
    return ApiError(
        "policy.invalid",
        f"the policy does not load with the other enabled documents ({count} errors)",
        diagnostics,
    )


def _check_document(
    session: Session, doc_id: str | None, name: str, source: str, enabled: bool
) -> None:
    """Raise ``policy.invalid`` unless the document loads (with the enabled set if enabled)."""
    own = {document_file(name): source}
    problems = diagnostics_of(own)
    if not problems and enabled:
        problems = diagnostics_of({**enabled_texts(session, skip=doc_id), **own})
    if problems:
        raise _refuse(problems)


def _keep_version(
    session: Session, doc: PolicyDocument, change: str, at: datetime, author: str | None
) -> None:
    session.add(
        PolicyVersion(
            policy_id=doc.id,
            version=doc.version,
            change=change,
            name=doc.name,
            description=doc.description,
            source=doc.source,
            enabled=doc.enabled,
            author_id=author,
            at=at,
        )
    )


def _name_taken(session: Session, name: str, doc_id: str | None) -> bool:
    found = session.scalar(sa.select(PolicyDocument.id).where(PolicyDocument.name == name))
    return found is not None and found != doc_id


async def list_policies(request: Request) -> Response:
    """A page of documents ordered by name; ``next_cursor`` continues it."""
    ctx = context(request)
    params = query_params(request, {"limit", "cursor"})
    limit = page_limit(params.get("limit"))
    cursor = params.get("cursor") or None
    if cursor is not None and len(cursor) > 64:
        raise ApiError("request.invalid", "`cursor` is invalid")

    def page(session: Session) -> list[dict[str, Any]]:
        query = sa.select(PolicyDocument).order_by(PolicyDocument.name).limit(limit + 1)
        if cursor:
            query = query.where(PolicyDocument.name > cursor)
        return [_to_dict(d) for d in session.scalars(query)]

    rows = await ctx.db.run(page)
    more = len(rows) > limit
    items = rows[:limit]
    return json_response({"items": items, "next_cursor": items[-1]["name"] if more else None})


async def create_policy(request: Request) -> Response:
    """Create a document; refused with every diagnostic when the active set would not load."""
    ctx, me = context(request), principal(request)
    data = body(request, PolicyCreateV1)
    _check_size(data.source)
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def create(session: Session) -> dict[str, Any]:
        PolicyService.lock(session)
        if _name_taken(session, data.name, None):
            raise ApiError("resource.conflict", f"a policy named `{data.name}` exists")
        _check_document(session, None, data.name, data.source, data.enabled)
        doc = PolicyDocument(
            id=repo.new_id(),
            name=data.name,
            description=data.description,
            source=data.source,
            enabled=data.enabled,
            version=1,
            created_at=now,
            created_by=me.id,
            updated_at=now,
            updated_by=me.id,
        )
        session.add(doc)
        _keep_version(session, doc, "created", now, me.id)
        revision = PolicyService.bump(session, POLICIES_KEY, now, me.id)
        append_event(
            session,
            at=now,
            action="policy_created",
            actor_id=me.id,
            target_id=doc.id,
            address=where,
            request_id=rid,
            details={"name": doc.name, "version": 1, "enabled": doc.enabled, "revision": revision},
        )
        return _to_dict(doc)

    created = await ctx.db.run(create)
    await service(request).changed()
    return json_response(created, 201)


def _find(session: Session, doc_id: str) -> PolicyDocument:
    doc = session.get(PolicyDocument, doc_id) if _ID.fullmatch(doc_id) else None
    if doc is None:
        raise ApiError("resource.not_found", "no such policy")
    return doc


async def get_policy(request: Request) -> Response:
    """One document."""
    ctx = context(request)
    doc_id = request.path_params["id"]
    return json_response(await ctx.db.run(lambda s: _to_dict(_find(s, doc_id))))


async def update_policy(request: Request) -> Response:
    """Change a document's name, text, description or state (a new version)."""
    ctx, me = context(request), principal(request)
    data = body(request, PolicyUpdateV1)
    if data.source is not None:
        _check_size(data.source)
    doc_id = request.path_params["id"]
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def update(session: Session) -> tuple[dict[str, Any], bool]:
        PolicyService.lock(session)
        doc = _find(session, doc_id)
        name = doc.name if data.name is None else data.name
        source = doc.source if data.source is None else data.source
        description = doc.description if data.description is None else data.description
        enabled = doc.enabled if data.enabled is None else data.enabled
        if (name, source, description, enabled) == (
            doc.name,
            doc.source,
            doc.description,
            doc.enabled,
        ):
            return _to_dict(doc), False
        if _name_taken(session, name, doc.id):
            raise ApiError("resource.conflict", f"a policy named `{name}` exists")
        _check_document(session, doc.id, name, source, enabled)
        doc.name, doc.source, doc.description, doc.enabled = name, source, description, enabled
        doc.version += 1
        doc.updated_at, doc.updated_by = now, me.id
        _keep_version(session, doc, "updated", now, me.id)
        revision = PolicyService.bump(session, POLICIES_KEY, now, me.id)
        append_event(
            session,
            at=now,
            action="policy_updated",
            actor_id=me.id,
            target_id=doc.id,
            address=where,
            request_id=rid,
            details={
                "name": doc.name,
                "version": doc.version,
                "enabled": doc.enabled,
                "revision": revision,
            },
        )
        return _to_dict(doc), True

    updated, changed = await ctx.db.run(update)
    if changed:
        await service(request).changed()
    return json_response(updated)


async def delete_policy(request: Request) -> Response:
    """Delete a document; its versions stay (a last ``deleted`` one is added)."""
    ctx, me = context(request), principal(request)
    doc_id = request.path_params["id"]
    now, where, rid = ctx.clock(), address(request), request_id(request)

    def delete(session: Session) -> None:
        PolicyService.lock(session)
        doc = _find(session, doc_id)
        doc.version += 1
        _keep_version(session, doc, "deleted", now, me.id)
        revision = PolicyService.bump(session, POLICIES_KEY, now, me.id)
        append_event(
            session,
            at=now,
            action="policy_deleted",
            actor_id=me.id,
            target_id=doc.id,
            address=where,
            request_id=rid,
            details={"name": doc.name, "version": doc.version, "revision": revision},
        )
        session.delete(doc)

    await ctx.db.run(delete)
    await service(request).changed()
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def list_versions(request: Request) -> Response:
    """Every kept change of a document (also after its deletion), oldest first."""
    ctx = context(request)
    doc_id = request.path_params["id"]
    params = query_params(request, {"limit", "cursor"})
    limit = page_limit(params.get("limit"))
    raw = params.get("cursor") or None
    if raw is not None and (not raw.isdigit() or len(raw) > 9):
        raise ApiError("request.invalid", "`cursor` is invalid")
    after = int(raw) if raw else 0

    def page(session: Session) -> list[dict[str, Any]] | None:
        if not _ID.fullmatch(doc_id):
            return None
        query = (
            sa.select(PolicyVersion)
            .where(PolicyVersion.policy_id == doc_id, PolicyVersion.version > after)
            .order_by(PolicyVersion.version)
            .limit(limit + 1)
        )
        rows = [_version_to_dict(v) for v in session.scalars(query)]
        if not rows and after == 0:
            return None
        return rows

    rows = await ctx.db.run(page)
    if rows is None:
        raise ApiError("resource.not_found", "no such policy")
    more = len(rows) > limit
    items = rows[:limit]
    return json_response(
        {"items": items, "next_cursor": str(items[-1]["version"]) if more else None}
    )


async def validate_policy(request: Request) -> Response:
    """Diagnostics of a text alone, then with the enabled documents (``name`` replaces one)."""
    ctx = context(request)
    data = body(request, SourceV1)
    _check_size(data.source)
    name = data.name or "policy"
    own = {document_file(name): data.source}
    problems = diagnostics_of(own)
    if not problems:

        def together(session: Session) -> list[dict[str, Any]]:
            others = {
                file: text
                for file, text in enabled_texts(session).items()
                if file != document_file(name)
            }
            return diagnostics_of({**others, **own})

        problems = await ctx.db.run(together)
    ok = not any(d["severity"] == "error" for d in problems)
    return json_response({"ok": ok, "diagnostics": problems})


async def format_source(request: Request) -> Response:
    """The canonical formatting of a text (422 ``policy.invalid`` when it does not parse)."""
    from aegis.lang import PolicyLoadError, format_policy, parse_policy

    data = body(request, SourceV1)
    _check_size(data.source)
    try:
        text = format_policy(parse_policy(data.source, document_file(data.name or "policy")))
    except PolicyLoadError as exc:
        problems = [d.to_dict() for d in exc.diagnostics]
        raise ApiError("policy.invalid", "the policy does not parse", problems) from None
    return json_response({"source": text})


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/policies`` endpoints."""
    err = ("error", ErrorV1)
    common: dict[int, tuple[str, type[BaseModel] | None]] = {401: err, 403: err, 429: err}
    invalid = ("the document does not load (`details` lists every diagnostic)", ErrorV1)
    return [
        Endpoint(
            "/api/v1/policies",
            "GET",
            "api:policies:read",
            list_policies,
            "List policy documents",
            responses={200: ("a page of documents", PolicyListV1), 422: err, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies",
            "POST",
            "api:policies:write",
            create_policy,
            "Create a policy document",
            request_model=PolicyCreateV1,
            responses={201: ("the document", PolicyV1), 409: err, 422: invalid, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies/validate",
            "POST",
            "api:policies:check",
            validate_policy,
            "Diagnostics of a policy text (alone, then with the enabled documents)",
            request_model=SourceV1,
            responses={200: ("the diagnostics", ValidationV1), 422: err, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies/format",
            "POST",
            "api:policies:check",
            format_source,
            "The canonical formatting of a policy text",
            request_model=SourceV1,
            responses={200: ("the canonical text", FormattedV1), 422: invalid, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies/{id}",
            "GET",
            "api:policies:read",
            get_policy,
            "One policy document",
            responses={200: ("the document", PolicyV1), 404: err, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies/{id}",
            "PUT",
            "api:policies:write",
            update_policy,
            "Change a policy document (a new version)",
            request_model=PolicyUpdateV1,
            responses={200: ("the document", PolicyV1), 404: err, 409: err, 422: invalid, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies/{id}",
            "DELETE",
            "api:policies:write",
            delete_policy,
            "Delete a policy document (its versions are kept)",
            responses={204: ("deleted", None), 404: err, **common},
            tags=("policies",),
        ),
        Endpoint(
            "/api/v1/policies/{id}/versions",
            "GET",
            "api:policies:read",
            list_versions,
            "Every change of a policy document, with author and time",
            responses={
                200: ("a page of versions", PolicyVersionListV1),
                404: err,
                422: err,
                **common,
            },
            tags=("policies",),
        ),
    ]
