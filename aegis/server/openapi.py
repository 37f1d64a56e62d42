"""The OpenAPI 3.1 document, generated from the same route table that serves requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aegis._version import __version__
from aegis.server.errors import STATUS_BY_CODE
from aegis.server.middleware.auth import anonymous_request
from aegis.server.permissions import Authorizer, Endpoint
from aegis.server.schemas import ErrorV1
from aegis.server.settings import Settings

__all__ = ["build_openapi"]


def _models(endpoints: Sequence[Endpoint]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for endpoint in endpoints:
        if endpoint.request_model is not None:
            found[endpoint.request_model.__name__] = endpoint.request_model
        for _, model in endpoint.responses.values():
            if model is not None:
                found[model.__name__] = model
    return [found[name] for name in sorted(found)]


def _common_errors(endpoint: Endpoint, public: bool) -> dict[int, str]:
    """The errors every operation of this shape can answer (middleware, not the handler)."""
    out = {
        429: "rate limited (`Retry-After` says when to retry)",
        503: "a dependency (the database) is unavailable",
    }
    if endpoint.request_model is not None:
        out |= {
            400: "the body is not valid or bounded JSON",
            413: "the body is too large",
            415: "the body is not `application/json`",
            422: "the body does not match the schema",
        }
    if not public:
        out |= {401: "no valid access token", 403: "the policy does not allow it"}
    if "{" in endpoint.path:
        out[404] = "no such resource"
    if endpoint.method == "GET" and (endpoint.path in _PAGED or endpoint.path in _QUERY):
        out[422] = "a query parameter is invalid"
    return out


_PAGED = frozenset(
    {
        "/api/v1/users",
        "/api/v1/audit/events",
        "/api/v1/policies",
        "/api/v1/policies/{id}/versions",
        "/api/v1/audit/decisions",
    }
)
_TIME = {"type": "string", "format": "date-time"}
#: Other query parameters (all optional) of part 2's routes: name -> JSON schema.
_QUERY: dict[str, dict[str, dict[str, Any]]] = {
    "/api/v1/audit/decisions": {
        "decision": {"type": "string", "enum": ["ALLOW", "DENY"]},
        "action": {"type": "string", "maxLength": 256},
        "principal": {"type": "string", "maxLength": 256},
        "rule": {"type": "string", "maxLength": 256},
        "since": _TIME,
        "until": _TIME,
    },
    "/api/v1/metrics/historical": {
        "from": _TIME,
        "to": _TIME,
        "step": {"type": "integer", "minimum": 1},
    },
    "/api/v1/metrics/policy-evaluation-counts": {"from": _TIME, "to": _TIME},
}


def build_openapi(
    endpoints: Sequence[Endpoint], authorizer: Authorizer, settings: Settings
) -> dict[str, Any]:
    """Build the document.

    Args:
        endpoints: the route table.
        authorizer: used to mark which operations need a bearer token (anonymous denied).
        settings: for the metrics protection flag.

    Returns:
        The OpenAPI document as a JSON-ready dict.
    """
    models = _models(endpoints)
    _, schemas = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    components = dict(schemas.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        public = authorizer.is_allowed(
            anonymous_request(
                endpoint.action, endpoint.path, endpoint.method, settings.metrics_protected
            )
        )
        declared = dict(endpoint.responses)
        for status, description in _common_errors(endpoint, public).items():
            declared.setdefault(status, (description, ErrorV1))
        responses: dict[str, Any] = {}
        for status, (description, model) in sorted(declared.items()):
            entry: dict[str, Any] = {"description": description}
            if model is not None:
                entry["content"] = {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                }
            responses[str(status)] = entry
        operation: dict[str, Any] = {
            "operationId": endpoint.handler.__name__,
            "summary": endpoint.summary,
            "tags": list(endpoint.tags),
            "x-aegis-action": endpoint.action,
            "responses": responses,
            "security": [] if public else [{"bearerAuth": []}],
        }
        if endpoint.request_model is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "$ref": f"#/components/schemas/{endpoint.request_model.__name__}"
                        }
                    }
                },
            }
        params = [name.strip("{}") for name in endpoint.path.split("/") if name.startswith("{")]
        parameters: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
        if endpoint.method == "GET" and endpoint.path in _PAGED:
            parameters += [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "page size, 1..500 (larger values are clamped to 500)",
                    "schema": {"type": "integer", "minimum": 1},
                },
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
            ]
        if endpoint.path == "/api/v1/audit/events":
            parameters += [
                {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                for n in ("action", "actor_id", "target_id", "outcome")
            ] + [
                {
                    "name": n,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "format": "date-time"},
                }
                for n in ("since", "until")
            ]
        if endpoint.method == "GET":
            parameters += [
                {"name": n, "in": "query", "required": False, "schema": schema}
                for n, schema in _QUERY.get(endpoint.path, {}).items()
            ]
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Aegis control plane",
            "version": __version__,
            "description": 'Errors are `{"error": {"code", "message", "details"}}`; codes: '
            + ", ".join(f"`{c}` ({s})" for c, s in sorted(STATUS_BY_CODE.items())),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
