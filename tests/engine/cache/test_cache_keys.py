"""Cache keys and projections (CACHE-1): same key exactly when evaluation sees the same values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine.cache import (
    DecisionDecoder,
    KeyBuilder,
    cache_key,
    canonical_json,
    decode_decision,
    encode_decision,
    project,
    projector,
)
from aegis.engine.errors import CacheUnavailableError, InvalidRequestError

V1 = "a" * 64
V2 = "b" * 64

PATHS = {("action",), ("principal", "roles"), ("resource", "namespace"), ("time", "UTC", "hour")}


def _parts(**over: Any) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "principal": {"id": "alice", "roles": ["sre"]},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "prod", "name": "api-1"},
        "context": {"source": "detector"},
        "time": {"UTC": {"hour": 10, "minute": 15, "weekday": "thu"}},
    }
    parts.update(over)
    return parts


def _key(parts: Mapping[str, Any], paths: Any = PATHS, version: str = V1) -> str:
    return cache_key(version, project(parts, paths))


def test_unread_attributes_share_an_entry() -> None:
    a = _parts()
    b = _parts(
        principal={"id": "bob", "roles": ["sre"]},
        resource={"kind": "pod", "namespace": "prod", "name": "other"},
        context={"source": "human"},
        time={"UTC": {"hour": 10, "minute": 59, "weekday": "fri"}},
    )
    assert _key(a) == _key(b)


def test_read_attributes_separate_entries() -> None:
    base = _key(_parts())
    assert _key(_parts(action="scale_deployment")) != base
    assert _key(_parts(principal={"id": "alice", "roles": ["dev"]})) != base
    assert _key(_parts(time={"UTC": {"hour": 11}})) != base


def test_CACHE1_new_version_never_reaches_old_entries() -> None:
    assert _key(_parts(), version=V1) != _key(_parts(), version=V2)
    assert _key(_parts(), version=V1).startswith(V1 + ":")


def test_CACHE1_no_delimiter_confusion() -> None:
    # "alice|admin" split differently across attributes must give different keys.
    paths = {("principal", "id"), ("principal", "role")}
    a = _parts(principal={"id": "alice|admin", "role": ""})
    b = _parts(principal={"id": "alice", "role": "|admin"})
    c = _parts(principal={"id": "alice", "role": "admin"})
    assert len({_key(a, paths), _key(b, paths), _key(c, paths)}) == 3
    # a version that "absorbs" part of the projection
    assert cache_key("v:x", {"a": "b"}) != cache_key("v", {"x:a": "b"})


def test_missing_differs_from_null() -> None:
    paths = {("resource", "owner")}
    absent = _parts(resource={"kind": "pod"})
    null = _parts(resource={"kind": "pod", "owner": None})
    assert _key(absent, paths) != _key(null, paths)


def test_path_through_a_non_object_is_missing_whatever_the_value() -> None:
    paths = {("resource", "labels", "app")}
    keys = {
        _key(_parts(resource={"labels": value}), paths)
        for value in (None, 3, "x", ["app"], True)
    }
    keys.add(_key(_parts(resource={"labels": {}}), paths))
    keys.add(_key(_parts(resource={}), paths))
    keys.add(_key(_parts(resource={"labels": {"other": 1}}), paths))
    assert len(keys) == 1
    assert _key(_parts(resource={"labels": {"app": None}}), paths) not in keys


def test_numbers_by_value_and_booleans_apart() -> None:
    paths = {("resource", "replicas")}

    def key(value: Any) -> str:
        return _key(_parts(resource={"replicas": value}), paths)

    assert key(1) == key(1.0) == key(Decimal("1.000")) == key(Decimal("1E+0"))
    assert key(100) == key(Decimal("1E+2")) == key(100.0)
    assert key(0.1) == key(Decimal("0.1"))
    assert key(0) == key(-0.0) == key(Decimal("-0.00"))
    assert key(True) != key(1)
    assert key(False) != key(0)
    assert key("1") != key(1)
    assert key(2**80) != key(2**80 + 1)
    assert key(10**30) == key(Decimal("1e30"))


def test_whole_root_absorbs_its_sub_paths() -> None:
    parts = _parts()
    assert project(parts, {("principal",), ("principal", "roles")}) == {
        "principal": parts["principal"]
    }
    assert project(parts, {("principal", "roles"), ("principal",)}) == {
        "principal": parts["principal"]
    }


def test_projector_is_project_with_the_tree_built_once() -> None:
    apply = projector(PATHS)
    for parts in (_parts(), _parts(action="x"), _parts(resource={})):
        assert apply(parts) == project(parts, PATHS)


def test_lists_keep_order_and_objects_do_not() -> None:
    assert canonical_json({"b": 1, "a": [2, 1]}) == '{"a":[2,1],"b":1}'
    assert canonical_json((1, "é")) == '[1,"\\u00e9"]'


def test_canonical_numbers() -> None:
    assert canonical_json([1.5, -0.001, 1e21, 1e-7, 12000, Decimal("1.2300")]) == (
        "[1.5,-0.001,1000000000000000000000,0.0000001,12000,1.23]"
    )
    # an exponent a request could abuse is not expanded
    assert canonical_json(Decimal("1e999999")) == "1e999999"
    assert canonical_json(Decimal("-2.5e-999999")) == "-25e-1000000"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), {1: "x"}, {1, 2}])
def test_non_json_values_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidRequestError):
        canonical_json({"x": bad})


# ---------------------------------------------------------------- property: key == observation

_MISSING = object()


def _observe(parts: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = parts
    for step in path:
        if not isinstance(value, Mapping) or step not in value:
            return _MISSING
        value = value[step]
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality of spec §5 (numbers by value, booleans not numbers), MISSING aside."""
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(repr(a) if isinstance(a, float) else a) == Decimal(
            repr(b) if isinstance(b, float) else b
        )
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


_keys = st.sampled_from(["a", "b"])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 1.0, 2, Decimal("2.0"), 0.5]),
    st.sampled_from(["x", "1"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(_keys, inner, max_size=2)
    ),
    max_leaves=4,
)
_parts_strategy = st.fixed_dictionaries({"resource": st.dictionaries(_keys, _values, max_size=2)})
_paths = st.sets(
    st.lists(_keys, min_size=0, max_size=2).map(lambda p: ("resource", *p)), min_size=1, max_size=3
)


@settings(max_examples=400, deadline=None)
@given(_parts_strategy, _parts_strategy, _paths)
def test_same_key_iff_every_read_path_observes_the_same(
    a: dict[str, Any], b: dict[str, Any], paths: set[tuple[str, ...]]
) -> None:
    observed_same = all(_same(_observe(a, p), _observe(b, p)) for p in paths)
    assert (_key(a, paths) == _key(b, paths)) == observed_same



@settings(max_examples=400, deadline=None)
@given(_parts_strategy, _parts_strategy, _paths)
def test_key_builder_same_key_iff_every_read_path_observes_the_same(
    a: dict[str, Any], b: dict[str, Any], paths: set[tuple[str, ...]]
) -> None:
    observed_same = all(_same(_observe(a, p), _observe(b, p)) for p in paths)
    builder = KeyBuilder(paths)
    assert (builder.key(V1, a) == builder.key(V1, b)) == observed_same
    assert builder.key(V1, a) != builder.key(V2, a)


@settings(max_examples=400, deadline=None)
@given(_parts_strategy, _parts_strategy, _paths)
def test_observation_equal_iff_every_read_path_observes_the_same(
    a: dict[str, Any], b: dict[str, Any], paths: set[tuple[str, ...]]
) -> None:
    observed_same = all(_same(_observe(a, p), _observe(b, p)) for p in paths)
    builder = KeyBuilder(paths)
    first, second = builder.observation(a), builder.observation(b)
    assert (first == second) == observed_same
    if observed_same:
        assert hash(first) == hash(second)


def test_observation_keeps_booleans_apart_from_numbers() -> None:
    builder = KeyBuilder({("resource", "x")})
    values = [True, 1, False, 0, None, [True], [1], {"a": True}, {"a": 1}, "1"]
    observed = [builder.observation({"resource": {"x": v}}) for v in values]
    assert len(set(observed)) == len(values)
    assert builder.observation({"resource": {"x": 1.0}}) == observed[1]
    with pytest.raises(InvalidRequestError):
        builder.observation({"resource": {"x": float("nan")}})


def test_key_builder_drops_covered_paths_and_separates_path_sets() -> None:
    builder = KeyBuilder({("principal", "roles"), ("principal",), ("action",), ()})
    assert builder.paths == (("action",), ("principal",))
    parts = _parts()
    assert KeyBuilder({("action",)}).key(V1, parts) != KeyBuilder({("resource",)}).key(
        V1, {"resource": "restart_pod"}
    )
    assert KeyBuilder(set()).key(V1, parts) == KeyBuilder(set()).key(V1, {})


def test_key_builder_reads_time_through_the_view_only_for_zones_read() -> None:
    asked: list[str] = []

    def view(zone: str) -> dict[str, Any]:
        asked.append(zone)
        return {"hour": 10, "minute": asked.count(zone)}

    paths = {("action",), ("time", "Europe/Berlin", "hour")}
    builder = KeyBuilder(paths)
    parts = {k: v for k, v in _parts().items() if k != "time"}
    first = builder.key(V1, parts, time_view=view)
    assert asked == ["Europe/Berlin"]
    assert builder.key(V1, parts, time_view=view) == first  # minute is not read
    assert first == builder.key(V1, {**parts, "time": {"Europe/Berlin": {"hour": 10}}})
    assert first != builder.key(V1, {**parts, "time": {"Europe/Berlin": {"hour": 11}}})


# ---------------------------------------------------------------- decision codec

DECISION = {
    "decision": "DENY",
    "allowed": False,
    "reason": "denied by rule \"freeze\"",
    "allow": ["a"],
    "deny": ["freeze"],
    "errors": [{"rule": "x", "message": "`principal.mfa` is missing"}],
    "version": V1,
}


def test_decision_round_trip() -> None:
    assert decode_decision(encode_decision(DECISION)) == DECISION


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xfe",
        b"not json",
        b"[]",
        b"{}",
        json.dumps({**DECISION, "allowed": True}).encode(),
        json.dumps({**DECISION, "decision": "MAYBE"}).encode(),
        json.dumps({**DECISION, "allow": "a"}).encode(),
        json.dumps({**DECISION, "errors": [{"rule": "x"}]}).encode(),
        json.dumps({**DECISION, "extra": 1}).encode(),
    ],
)
def test_CACHE2_garbage_is_unavailable_not_a_decision(garbage: bytes) -> None:
    with pytest.raises(CacheUnavailableError):
        decode_decision(garbage)


def test_encoding_a_non_decision_fails() -> None:
    with pytest.raises(CacheUnavailableError):
        encode_decision({"decision": "ALLOW"})


def test_decoder_returns_the_decision_and_remembers_it() -> None:
    from aegis.engine import Decision

    decode = DecisionDecoder(maxsize=2)
    raw = encode_decision(DECISION)
    first = decode(raw)
    assert isinstance(first, Decision)
    assert first.to_dict() == DECISION
    assert decode(bytes(raw)) is first  # memoised by value
    with pytest.raises(CacheUnavailableError):
        decode(b"garbage")
    with pytest.raises(CacheUnavailableError):  # garbage is never remembered
        decode(b"garbage")
