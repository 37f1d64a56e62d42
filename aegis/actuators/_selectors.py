"""Kubernetes label selectors: build the query string, parse it, match labels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aegis.actuators._status import ApiStatusError

__all__ = ["matches", "parse_selector", "selector_string"]

_Requirement = tuple[str, str, frozenset[str]]


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """Render a ``LabelSelector`` object (``matchLabels`` + ``matchExpressions``) as a query."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op = expr["key"], expr["operator"]
        values = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown selector operator `{op}`")
    return ",".join(parts)


_SET = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*$")


def _split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_selector(text: str) -> list[_Requirement]:
    """Parse a ``labelSelector`` query string.

    Raises:
        ApiStatusError: 400, as the API server answers an unparsable selector.
    """
    reqs: list[_Requirement] = []
    for part in _split(text or ""):
        if m := _SET.match(part):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append((m.group(1), m.group(2), values))
        elif m := _EQ.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append((m.group(1), op, frozenset({m.group(3)})))
        elif m := _EXISTS.match(part):
            reqs.append((m.group(2), "!" if m.group(1) else "exists", frozenset()))
        else:
            raise ApiStatusError(
                400, "BadRequest", f"unable to parse requirement: `{part.strip()}`"
            )
    return reqs


def matches(reqs: list[_Requirement], labels: Mapping[str, str] | None) -> bool:
    """Whether ``labels`` satisfy every requirement."""
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        ok = {
            "=": present and value in values,
            "!=": not present or value not in values,
            "in": present and value in values,
            "notin": not present or value not in values,
            "exists": present,
            "!": not present,
        }[op]
        if not ok:
            return False
    return True
