"""AuditRecordV1: frozen format (H12), canonical JSON, masking (AUD-4, LOG-1)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aegis.engine.audit._record as record_module
from aegis.engine.audit import (
    GENESIS_HASH,
    AuditRecordV1,
    Masker,
    canonical_json,
    decision_record,
    event_record,
)
from aegis.engine.audit._record import _record_json
from aegis.engine.decision import Decision, RuleError
from aegis.engine.errors import AuditError

GOLDEN_BODY = (
    '{"allow":["sre-restart"],"chain":"decisions","data":null,"decision":"DENY",'
    '"deny":["freeze"],"errors":[{"message":"`resource.replicas` is missing","rule":"quota"}],'
    '"id":"6f1c1f0e-8d7b-4c5e-9a51-3f2b1f1e9c01","kind":"decision",'
    '"policy_version":"abababababababababababababababababababababababababababababababab",'
    '"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"reason":"prod is frozen: ünïcode ✓","request":{"action":"restart_pod",'
    '"context":{"time":"2026-11-26T10:15:00Z","token":"hmac-sha256:294951a5401c0ace19c549431ba71a25"},'
    '"principal":{"email":"hmac-sha256:e2c2c7bbf870c59a571ff1a33cb53a6a","id":"alice","roles":["sre"]},'
    '"resource":{"kind":"pod","name":"api-7d9","namespace":"prod","ratio":0.5,"replicas":3}},'
    '"schema_version":1,"seq":1,"time":"2026-11-26T10:15:00.123456Z"}'
)
GOLDEN_HASH = "2bfd6c3d916ed254d55fb79b11f41c5fd2f434338410329e6e6b426935c7d2fb"
GOLDEN_HASH_2 = "ecc8468992731e95771f06ca2bb793c72de3d48bb161b68297ac22239a3d647b"


def golden_record() -> AuditRecordV1:
    decision = Decision(
        decision="DENY",
        allowed=False,
        reason="prod is frozen: ünïcode ✓",
        allow=("sre-restart",),
        deny=("freeze",),
        errors=(RuleError("quota", "`resource.replicas` is missing"),),
        version="ab" * 32,
    )
    request = {
        "principal": {"id": "alice", "roles": ["sre"], "email": "alice@example.com"},
        "action": "restart_pod",
        "resource": {
            "kind": "pod",
            "namespace": "prod",
            "name": "api-7d9",
            "replicas": 3,
            "ratio": 0.5,
        },
        "context": {"time": "2026-11-26T10:15:00Z", "token": "s3cr3t"},
    }
    return decision_record(
        decision,
        request,
        masker=Masker(["principal.email"], key=b"k" * 32),
        time=datetime(2026, 11, 26, 10, 15, 0, 123456, tzinfo=UTC),
        record_id="6f1c1f0e-8d7b-4c5e-9a51-3f2b1f1e9c01",
    )


def test_H12_AUD2_golden_record_canonical_json_and_hash_are_frozen() -> None:
    sealed = golden_record().sealed(1, GENESIS_HASH)
    assert sealed.body_json() == GOLDEN_BODY
    # the formula of AUD-2, recomputed independently of the library
    assert hashlib.sha256(bytes(32) + GOLDEN_BODY.encode("utf-8")).hexdigest() == GOLDEN_HASH
    assert sealed.hash == GOLDEN_HASH
    assert golden_record().sealed(2, GOLDEN_HASH).hash == GOLDEN_HASH_2
    # the stored line is the body plus the hash, still canonical
    line = sealed.to_json()
    assert json.loads(line) == {**json.loads(GOLDEN_BODY), "hash": GOLDEN_HASH}
    assert line == canonical_json(json.loads(line))


def test_canonical_json_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", {"d": None, "c": True}]}) == (
        '{"a":["é",{"c":true,"d":null}],"b":1}'
    )
    with pytest.raises(AuditError):
        canonical_json({"x": float("nan")})


def test_record_round_trips_through_json() -> None:
    sealed = golden_record().sealed(1, GENESIS_HASH)
    again = AuditRecordV1.from_json(sealed.to_json())
    assert again == sealed
    assert again.compute_hash() == sealed.hash


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "not a JSON object"),
        ('{"schema_version": 2}', "schema version"),
        ("{", "not valid JSON"),
    ],
)
def test_from_json_rejects_bad_input(raw: str, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        AuditRecordV1.from_json(raw)


def test_from_dict_rejects_unknown_fields_and_bad_types() -> None:
    good = golden_record().sealed(1, GENESIS_HASH).to_dict()
    with pytest.raises(AuditError, match="unknown field `extra`"):
        AuditRecordV1.from_dict({**good, "extra": 1})
    with pytest.raises(AuditError, match="`seq`"):
        AuditRecordV1.from_dict({**good, "seq": "1"})
    with pytest.raises(AuditError, match="`request`"):
        AuditRecordV1.from_dict({**good, "request": []})


def test_decision_record_accepts_decision_or_its_dict() -> None:
    rec = golden_record()
    decision = Decision.from_dict(
        {
            "decision": "DENY",
            "allowed": False,
            "reason": rec.reason,
            "allow": ["sre-restart"],
            "deny": ["freeze"],
            "errors": [{"rule": "quota", "message": "`resource.replicas` is missing"}],
            "version": "ab" * 32,
        }
    )
    from_obj = decision_record(
        decision, {"a": 1}, time=datetime(2026, 1, 1, tzinfo=UTC), record_id="x"
    )
    from_map = decision_record(
        decision.to_dict(), {"a": 1}, time=datetime(2026, 1, 1, tzinfo=UTC), record_id="x"
    )
    assert from_obj == from_map
    assert from_obj.kind == "decision"
    assert from_obj.errors == ({"rule": "quota", "message": "`resource.replicas` is missing"},)
    with pytest.raises(AuditError):
        decision_record(object(), {})


def test_record_rejects_values_json_cannot_hold() -> None:
    with pytest.raises(AuditError, match="finite"):
        event_record("x", {"v": float("inf")})
    with pytest.raises(AuditError, match="unsupported type `set`"):
        event_record("x", {"v": {1, 2}})


def test_time_is_utc_iso8601_with_z() -> None:
    rec = event_record("x", {}, time=datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    assert rec.time == "2026-11-26T12:00:00.000000Z"
    assert datetime.fromisoformat(rec.time).utcoffset() is not None


# -- masking (AUD-4, LOG-1) -------------------------------------------------------------


def test_AUD4_masker_replaces_configured_paths_and_sensitive_keys() -> None:
    request = {
        "principal": {"id": "alice", "email": "alice@example.com"},
        "context": {"Authorization": "Bearer abc", "nested": {"password": "pw"}},
        "resource": {"labels": {"a": "1", "b": "2"}},
    }
    masked = Masker(["principal.email", "resource.labels.*"]).mask(request)
    assert masked == {
        "principal": {"id": "alice", "email": "***"},
        "context": {"Authorization": "***", "nested": {"password": "***"}},
        "resource": {"labels": {"a": "***", "b": "***"}},
    }
    assert request["principal"]["email"] == "alice@example.com"  # input untouched


def test_AUD4_hmac_fingerprint_is_keyed_and_deterministic() -> None:
    a = Masker(["principal.email"], key=b"a" * 32)
    b = Masker(["principal.email"], key=b"b" * 32)
    req = {"principal": {"email": "alice@example.com"}}
    fp = a.mask(req)["principal"]["email"]
    assert fp.startswith("hmac-sha256:")
    assert len(fp) == len("hmac-sha256:") + 32
    assert fp == a.mask(req)["principal"]["email"]
    assert fp != b.mask(req)["principal"]["email"]
    with pytest.raises(AuditError, match="16 bytes"):
        Masker(key=b"short")


def test_masker_without_default_keys_masks_only_paths() -> None:
    masked = Masker(["context.x"], sensitive_keys=()).mask({"context": {"x": 1, "token": "t"}})
    assert masked == {"context": {"x": "***", "token": "t"}}


def test_LOG1_AUD4_canary_secrets_never_reach_the_record() -> None:
    canary = "CANARY-7f3e9b1c-secret"
    request = {
        "principal": {"id": "bob", "password": canary, "api_key": canary},
        "action": "login",
        "resource": {"kind": "session"},
        "context": {"token": canary, "headers": {"cookie": canary, "Authorization": canary}},
    }
    key = b"m" * 32
    rec = decision_record(
        {"decision": "DENY", "reason": "r", "version": "v"}, request, masker=Masker(key=key)
    )
    line = rec.sealed(1, GENESIS_HASH).to_json()
    assert canary not in line
    assert key.decode() not in line
    ev = event_record("login", {"user": "bob", "refresh_token": canary})
    assert canary not in ev.sealed(1, GENESIS_HASH).to_json()


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(request=st.dictionaries(st.text(), json_values, max_size=5), seq=st.integers(1, 2**40))
def test_any_json_request_survives_storage_with_the_same_hash(
    request: dict[str, Any], seq: int
) -> None:
    rec = decision_record(
        {"decision": "ALLOW", "reason": "ok", "version": "v"},
        request,
        masker=Masker(sensitive_keys=()),
    )
    sealed = rec.sealed(seq, "11" * 32)
    again = AuditRecordV1.from_json(sealed.to_json())
    assert again.compute_hash() == sealed.hash
    assert again.to_json() == sealed.to_json()


@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.text(), json_values, max_size=5))
def test_prepared_serialisation_equals_the_field_by_field_one(data: dict[str, Any]) -> None:
    rec = event_record("e", data, masker=Masker(sensitive_keys=()))
    assert rec.prepare()._parts == rec._parts_by_field()
    sealed = rec.sealed(7, "22" * 32)
    assert sealed.body_json() == canonical_json(
        {k: v for k, v in sealed.to_dict().items() if k != "hash"}
    )


def test_decimal_numbers_from_json_parsing_are_recorded_as_numbers() -> None:
    from decimal import Decimal

    request = json.loads(
        '{"resource": {"replicas": 3, "cpu": 0.25, "big": 1e3}}', parse_float=Decimal
    )
    rec = decision_record({"decision": "ALLOW", "reason": "r", "version": "v"}, request)
    assert rec.request == {"resource": {"replicas": 3, "cpu": 0.25, "big": 1000}}
    with pytest.raises(AuditError, match="finite"):
        event_record("e", {"x": Decimal("NaN")})


_KEYS = st.sampled_from(["id", "Token", "password", "name", "é-key", "API_KEY", "labels", "x"])
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.tuples(children)
    | st.dictionaries(_KEYS | st.integers(0, 3), children, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(_KEYS, _VALUES, max_size=5), st.sampled_from([None, b"k" * 32]))
@settings(max_examples=300, deadline=None)
def test_AUD4_masking_by_key_name_alone_equals_the_general_path(
    request: dict[str, Any], key: bytes | None
) -> None:
    # a configured path that matches nothing sends mask() down the general, path-building
    # walk; without paths it takes the key-name walk: both must write the same record
    def outcome(masker: Masker) -> Any:
        try:
            return canonical_json(masker.mask(request))
        except AuditError as exc:  # an infinity: both must refuse it alike
            return ("refused", str(exc))

    assert outcome(Masker(key=key)) == outcome(Masker(["no.such.path"], key=key))


# --- the record's JSON through orjson must be json's, byte for byte (the hash depends on it)

_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses, json writes
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=16,
)


@given(st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=6))
@settings(max_examples=500, deadline=None)
def test_H12_a_records_json_through_orjson_is_jsons_byte_for_byte(body: dict[str, Any]) -> None:
    assert _record_json(body) == canonical_json(body)


@pytest.mark.parametrize(
    "value",
    [1e-05, -2.5e-310, 1e16, 123.0, [1, 2.5], {"a": [0, {"b": 1.5}]}, 2**64, {"k": 1}],
)
def test_H12_floats_and_big_integers_take_jsons_path(value: Any) -> None:
    assert _record_json({"v": value}) == canonical_json({"v": value})


def test_H12_every_code_point_is_escaped_alike() -> None:
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 65536):
        text = "".join(points[start : start + 65536])
        body = {text[:50]: text, "z": [text[::-1]]}
        assert _record_json(body) == canonical_json(body)
    for point in points[:0x3000]:  # one at a time too, where the escapes are
        assert _record_json({point: point}) == canonical_json({point: point})


def test_H12_the_orjson_path_is_taken_here_and_skipped_when_orjson_disagrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert record_module._orjson_agrees()  # so the tests above exercise the orjson path
    body = {"a": "x", "b": [1, None]}
    monkeypatch.setattr(record_module.orjson, "dumps", lambda *_: b'{"forged":1}')
    assert not record_module._orjson_agrees()
    monkeypatch.setattr(record_module, "_ORJSON_AGREES", False)
    assert _record_json(body) == canonical_json(body)
