"""``/api/v1/evaluate``: decisions over the active policy set, cached and audited by the engine.

The body is a request of spec §4; the answer is ``Decision.to_dict()``, the JSON ``aegis
eval`` prints. An invalid request is a 400 ``decision.invalid_request`` naming the problem,
never a decision. Each decision's record is durable in the ``decisions`` chain before the
answer leaves (the engine's audit sink, ``sync`` mode); if it cannot be written the answer is
503 and no decision is given (AUD-5). The batch route decides up to the runtime setting
``evaluate_batch_max`` requests (default 100, at most 1000) and audits them in one append.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.errors import ApiError
from aegis.server.permissions import Endpoint
from aegis.server.routes._common import context, json_response
from aegis.server.routes.policies import service
from aegis.server.schemas import ErrorV1

if TYPE_CHECKING:
    from aegis.engine import Decision

__all__ = [
    "BATCH_LIMIT",
    "DecisionListV1",
    "DecisionV1",
    "EvaluationBatchV1",
    "EvaluationRequestV1",
    "endpoints",
]

#: The hard ceiling of a batch (the runtime setting may only lower it).
BATCH_LIMIT = 1000


class EvaluationRequestV1(BaseModel):
    """A request of spec §4 (checked by the engine: an invalid one answers 400)."""

    model_config = ConfigDict(extra="forbid")
    principal: dict[str, Any]
    action: str
    resource: dict[str, Any]
    context: dict[str, Any] = Field(default_factory=dict)


class EvaluationBatchV1(BaseModel):
    """``POST /api/v1/evaluate/batch``."""

    model_config = ConfigDict(extra="forbid")
    requests: Annotated[list[EvaluationRequestV1], Field(min_length=1, max_length=BATCH_LIMIT)]


class _RuleErrorV1(BaseModel):
    rule: str
    message: str


class DecisionV1(BaseModel):
    """``Decision.to_dict()``."""

    decision: Literal["ALLOW", "DENY"]
    allowed: bool
    reason: str
    allow: list[str]
    deny: list[str]
    errors: list[_RuleErrorV1]
    version: str


class DecisionListV1(BaseModel):
    """The decisions of a batch, in request order."""

    decisions: list[DecisionV1]


def _invalid(message: str) -> ApiError:
    return ApiError("decision.invalid_request", f"invalid request: {message}")


def _audit_down() -> ApiError:
    return ApiError(
        "service.unavailable",
        "the decision could not be audited, so none is given",
        headers={"Retry-After": "5"},
    )


async def _decide(request: Request, call: Awaitable[list[Decision]]) -> list[Decision]:
    """Await the engine; translate its errors (400 invalid request, 503 audit down)."""
    from aegis.engine import AuditError, InvalidRequestError

    svc = service(request)
    try:
        decisions = await call
    except InvalidRequestError as exc:
        raise _invalid(str(exc)) from None
    except AuditError as exc:
        svc.audit_failures += 1
        svc.audit_failed.inc()
        context(request).log.error("decision audit failed: %s", exc)
        raise _audit_down() from None
    svc.record(decisions)
    return decisions


async def _payload(request: Request) -> Any:
    """The body as ``aegis eval`` reads a request: numbers with a fraction as exact decimals.

    The body middleware has already refused anything malformed (size, depth, duplicate keys,
    ``NaN``); this second parse only keeps ``0.10000000000000000001`` from becoming ``0.1``.
    """
    return json.loads(await request.body(), parse_float=Decimal)


async def evaluate(request: Request) -> Response:
    """Decide one request."""
    payload = await _payload(request)
    engine = await service(request).engine()
    if not isinstance(payload, dict):
        raise _invalid("the request must be a JSON object")

    async def one() -> list[Decision]:
        return [await engine.aevaluate(payload)]

    (decision,) = await _decide(request, one())
    return json_response(decision.to_dict())


async def evaluate_batch(request: Request) -> Response:
    """Decide several requests; all or nothing (one invalid request refuses the batch)."""
    payload = await _payload(request)
    loaded = await service(request).loaded()
    if not isinstance(payload, dict) or set(payload) != {"requests"}:
        raise _invalid('the body must be `{"requests": [...]}`')
    requests = payload["requests"]
    if not isinstance(requests, list) or not requests:
        raise _invalid("`requests` must be a non-empty list")
    limit = loaded.settings.evaluate_batch_max
    if len(requests) > limit:
        raise ApiError(
            "request.invalid", f"a batch holds at most {limit} requests (got {len(requests)})"
        )
    for position, item in enumerate(requests):
        if not isinstance(item, dict):
            raise _invalid(f"request {position}: must be a JSON object")
    decisions = await _decide(request, asyncio.to_thread(loaded.engine.evaluate_many, requests))
    return json_response({"decisions": [d.to_dict() for d in decisions]})


def endpoints() -> list[Endpoint]:
    """The ``/api/v1/evaluate`` endpoints."""
    err = ("error", ErrorV1)
    common: dict[int, tuple[str, type[BaseModel] | None]] = {
        400: ("not a valid request (spec §4), or not valid JSON", ErrorV1),
        401: err,
        403: err,
        429: err,
        503: ("the decision could not be audited, or the database is down", ErrorV1),
    }
    return [
        Endpoint(
            "/api/v1/evaluate",
            "POST",
            "api:decisions:evaluate",
            evaluate,
            "Decide one request against the active policy set",
            request_model=EvaluationRequestV1,
            responses={200: ("the decision (as `aegis eval` prints it)", DecisionV1), **common},
            tags=("evaluation",),
        ),
        Endpoint(
            "/api/v1/evaluate/batch",
            "POST",
            "api:decisions:evaluate",
            evaluate_batch,
            "Decide several requests (at most `evaluate_batch_max`, default 100)",
            request_model=EvaluationBatchV1,
            responses={
                200: ("the decisions, in request order", DecisionListV1),
                422: ("more requests than `evaluate_batch_max`", ErrorV1),
                **common,
            },
            tags=("evaluation",),
        ),
    ]
