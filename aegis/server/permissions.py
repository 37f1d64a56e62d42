"""Route authorization by policy: every route declares an action; the engine decides (AC-1).

A route is an :class:`Endpoint` carrying its action name (``api:users:write``); ``create_app``
refuses to build an app in which a route has no action. For each request the server asks the
policy engine with ``{principal: {id, roles, authenticated}, action, resource: {kind: "api",
route, method}, context: {metrics_protected}}`` against the system policy set shipped in
``aegis/server/policies`` (or ``AEGIS_POLICY_PATHS``). No matching allow rule, a matching or
failing deny rule, or any error while deciding, all mean "no" (AC-3).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from aegis.server.errors import ServerError

__all__ = ["ACTION_PATTERN", "Authorizer", "Endpoint", "EngineAuthorizer", "check_endpoints"]

ACTION_PATTERN = re.compile(r"api:[a-z]+(?:-[a-z]+)*:[a-z]+(?:-[a-z]+)*")

RateClass = Literal["auth", "default"]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route and method of the API, with everything the server needs to guard it.

    Attributes:
        path: the Starlette path template (``/api/v1/users/{id}``).
        method: the HTTP method.
        action: the action name the policy decides on; empty means undeclared (refused).
        handler: the endpoint coroutine.
        summary: one line for the OpenAPI document.
        rate_class: ``auth`` (anonymous-heavy, strict limits) or ``default``.
        rate_limit: a ``limits`` string overriding the class default for this route.
        request_model: the JSON body schema, if any.
        responses: status → (description, response model or ``None``) for the OpenAPI document.
        tags: OpenAPI tags.
    """

    path: str
    method: str
    action: str
    handler: Handler
    summary: str
    rate_class: RateClass = "default"
    rate_limit: str | None = None
    request_model: type[BaseModel] | None = None
    responses: Mapping[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


def check_endpoints(endpoints: Sequence[Endpoint]) -> None:
    """Refuse a route table with an undeclared or malformed action, or a duplicate route.

    Raises:
        ServerError: naming the offending route.
    """
    seen: set[tuple[str, str]] = set()
    for endpoint in endpoints:
        where = f"{endpoint.method} {endpoint.path}"
        if not endpoint.action:
            raise ServerError(f"route `{where}` declares no action, so it cannot be authorized")
        if not ACTION_PATTERN.fullmatch(endpoint.action):
            raise ServerError(f"route `{where}` has a malformed action `{endpoint.action}`")
        if (endpoint.method, endpoint.path) in seen:
            raise ServerError(f"route `{where}` is declared twice")
        seen.add((endpoint.method, endpoint.path))


class Authorizer(Protocol):
    """Decides whether a request may proceed.

    Contract: returns ``True`` only for an explicit allow; raises nothing the caller must
    handle specially (an error inside means deny, and implementations may simply raise).
    """

    def is_allowed(self, request: Mapping[str, Any]) -> bool:
        """Whether the policy allows ``request`` (spec §4 shape)."""


class EngineAuthorizer:
    """An :class:`Authorizer` backed by :class:`aegis.engine.PolicyEngine`.

    Args:
        paths: policy files or directories (``*.aegis``, read recursively).
    """

    def __init__(self, paths: Sequence[str]) -> None:
        from aegis.engine import PolicyEngine

        self.engine = PolicyEngine.from_paths(list(paths))

    @property
    def version(self) -> str:
        """The policy-set version (content hash)."""
        return str(self.engine.version)

    def is_allowed(self, request: Mapping[str, Any]) -> bool:
        """Evaluate with the engine; any exception means deny."""
        try:
            return bool(self.engine.evaluate(request).allowed)
        except Exception:
            return False
