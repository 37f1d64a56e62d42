"""Projections are sound for the real evaluator: requests with one key get one decision.

The set below reads every kind of path the spec allows (``has``, bare booleans, numbers
compared by value, ``like`` on a map entry, membership, ``time``), and its read paths are
written out by hand (and checked equal to what the compiler derives). Requests are drawn from
small alphabets so that many share a key while differing in ways the evaluator could notice
(missing vs null, ``1`` vs ``1.0`` vs ``true``, non-objects on the way to a path, unread
attributes). Whenever two requests share a key, the reference ``PolicyEngine`` must give them
the same whole decision (spec §8: a cached decision equals the fresh one).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine import PolicyEngine, parse_request
from aegis.engine.cache import KeyBuilder, cache_key, projector

POLICY = """
allow "sre-restarts" {
    action in ["restart_pod", "read_logs"]
    "sre" in principal.roles
    time.hour in 8..17
}
allow "owned-and-small" {
    has resource.owner
    resource.replicas <= 1
    principal.mfa
}
allow "labelled-api" {
    resource.labels["app"] like "api*"
    context.flag == true
}
deny "too-many" {
    resource.replicas > 2.5
    reason "too many replicas"
}
deny "no-mfa-for-exec" {
    action == "exec_pod"
    not principal.mfa
}
"""

READ_PATHS = {
    ("action",),
    ("principal", "roles"),
    ("principal", "mfa"),
    ("resource", "owner"),
    ("resource", "replicas"),
    ("resource", "labels", "app"),
    ("context", "flag"),
    ("time", "UTC", "hour"),
}

ENGINE = PolicyEngine.from_texts({"p.aegis": POLICY})
PROJECT = projector(READ_PATHS)
KEYS = KeyBuilder(READ_PATHS)
_ABSENT = object()


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_ABSENT), strategy)


_numbers = st.sampled_from([1, 1.0, 2, 3, 0.5, True, "1", None])
_requests = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["restart_pod", "exec_pod", "read_logs"]),
        "id": st.sampled_from(["alice", "bob"]),
        "roles": _maybe(st.sampled_from([["sre"], ["dev"], ["dev", "sre"], [], "sre", None])),
        "mfa": _maybe(st.sampled_from([True, False, None, 1])),
        "owner": _maybe(st.sampled_from(["team-a", None, ""])),
        "replicas": _maybe(_numbers),
        "labels": _maybe(
            st.sampled_from([{}, {"app": "api-1"}, {"app": "web"}, {"app": 3}, None, "x"])
        ),
        "flag": _maybe(st.sampled_from([True, 1, "true", None])),
        "hour": st.sampled_from([7, 8, 17, 18]),
        "minute": st.integers(0, 59),
        "source": st.sampled_from(["a", "b"]),
    }
)


def _build(draw: dict[str, Any]) -> dict[str, Any]:
    principal: dict[str, Any] = {"id": draw["id"]}
    resource: dict[str, Any] = {"kind": "pod", "name": draw["id"] + "-pod"}
    context: dict[str, Any] = {
        "time": 1_795_651_200 + draw["hour"] * 3600 + draw["minute"] * 60,
        "source": draw["source"],
    }
    for target, key in (
        (principal, "roles"),
        (principal, "mfa"),
        (resource, "owner"),
        (resource, "replicas"),
        (resource, "labels"),
        (context, "flag"),
    ):
        if draw[key] is not _ABSENT:
            target[key] = draw[key]
    return {"principal": principal, "action": draw["action"], "resource": resource,
            "context": context}  # fmt: skip


def _key(request: dict[str, Any]) -> str:
    parsed = parse_request(request)
    parts = {
        "principal": parsed.principal,
        "action": parsed.action,
        "resource": parsed.resource,
        "context": parsed.context,
        "time": {"UTC": parsed.time_view("UTC")},
    }
    return cache_key(ENGINE.version, PROJECT(parts))


def _builder_key(request: dict[str, Any]) -> str:
    parsed = parse_request(request)
    parts = {
        "principal": parsed.principal,
        "action": parsed.action,
        "resource": parsed.resource,
        "context": parsed.context,
    }
    return KEYS.key(ENGINE.version, parts, time_view=parsed.time_view)


@st.composite
def _families(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A request and variants of it, each with one or two fields drawn again.

    Most variants then differ from the base only in unread attributes or in equivalent
    values (``1``/``1.0``, ``labels`` absent/``{}``/``null``), so keys are often shared.
    """
    base = draw(_requests)
    family = [base]
    for _ in range(draw(st.integers(1, 5))):
        fields = draw(st.sets(st.sampled_from(sorted(base)), min_size=1, max_size=2))
        other = draw(_requests)
        family.append({**base, **{f: other[f] for f in fields}})
    return family


@settings(max_examples=300, deadline=None)
@given(_families())
def test_same_key_same_decision(draws: list[dict[str, Any]]) -> None:
    by_key: dict[str, dict[str, Any]] = {}
    by_builder_key: dict[str, dict[str, Any]] = {}
    for draw in draws:
        request = _build(draw)
        decision = ENGINE.evaluate(request).to_dict()
        assert by_key.setdefault(_key(request), decision) == decision, request
        assert by_builder_key.setdefault(_builder_key(request), decision) == decision, request


def test_keys_from_raw_json_equal_keys_from_normalised_values() -> None:
    request = _build(
        {"action": "exec_pod", "id": "a", "roles": ["sre"], "mfa": True, "owner": None,
         "replicas": 1.0, "labels": {"app": "api"}, "flag": True, "hour": 9, "minute": 3,
         "source": "x"}
    )  # fmt: skip
    raw_parts = {**request, "time": {"UTC": parse_request(request).time_view("UTC")}}
    assert cache_key(ENGINE.version, PROJECT(raw_parts)) == _key(request)


def test_unread_attributes_do_not_split_entries_but_read_ones_do() -> None:
    base = {"action": "restart_pod", "id": "alice", "roles": ["sre"], "mfa": _ABSENT,
            "owner": _ABSENT, "replicas": 1, "labels": _ABSENT, "flag": _ABSENT, "hour": 9,
            "minute": 0, "source": "a"}  # fmt: skip
    same = {**base, "id": "bob", "minute": 59, "source": "b", "replicas": 1.0}
    assert _key(_build(base)) == _key(_build(same))
    assert _key(_build(base)) != _key(_build({**base, "mfa": None}))
    assert _key(_build(base)) != _key(_build({**base, "replicas": True}))


def test_the_read_paths_here_are_the_compilers() -> None:
    assert ENGINE.reads == READ_PATHS
