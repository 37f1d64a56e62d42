"""Executor request signing: known-answer vectors, strict parsing, window, replay, rotation."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis.actuators import ReplayError, ReplayStoreUnavailableError, SignatureError, signing
from aegis.actuators.signing import (
    Keyring,
    MemoryReplayStore,
    RedisReplayStore,
    RequestVerifier,
    SigningClient,
    canonical_query,
    sign_request,
    string_to_sign,
)
from aegis.errors import ConfigurationError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "signing.json").read_text(encoding="utf-8")
)["vectors"]
SECRET = "k" * 32
NOW = 1_700_000_000


# -- an independent implementation (hashlib/hmac only) -------------------------------------


def _enc(raw: bytes) -> str:
    return "".join(
        chr(x) if chr(x).isascii() and (chr(x).isalnum() or chr(x) in "-._~") else f"%{x:02X}"
        for x in raw
    )


def _dec(text: str) -> bytes:
    out, raw, i = bytearray(), text.encode(), 0
    while i < len(raw):
        hexpair = raw[i + 1 : i + 3]
        if (
            raw[i : i + 1] == b"%"
            and len(hexpair) == 2
            and all(c in b"0123456789abcdefABCDEF" for c in hexpair)
        ):
            out.append(int(hexpair, 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _independent(case: dict[str, str]) -> tuple[str, str, str]:
    pairs = sorted(
        (_enc(_dec(k)), _enc(_dec(v)))
        for k, _, v in (seg.partition("=") for seg in case["query"].split("&") if seg)
    )
    canon = "&".join(f"{k}={v}" for k, v in pairs)
    body = case["body"].encode()
    sts = "\n".join(
        [
            "AEGIS-HMAC-SHA256-V1",
            case["method"],
            case["path"],
            canon,
            case["timestamp"],
            case["nonce"],
            case["key_id"],
            hashlib.sha256(body).hexdigest(),
        ]
    )
    sig = hmac.new(case["secret"].encode(), sts.encode(), hashlib.sha256).hexdigest()
    return canon, sts, "v1=" + sig


def _verifier(keys: dict[str, str] | None = None, now: float = NOW) -> RequestVerifier:
    return RequestVerifier(Keyring(keys or {"k1": SECRET}), MemoryReplayStore(), clock=lambda: now)


def _signed(
    body: bytes = b'{"a":1}',
    *,
    path: str = "/v1/actions",
    query: str = "",
    method: str = "POST",
    key_id: str = "k1",
    secret: str = SECRET,
    ts: int = NOW,
    nonce: str = "n0123456789abcdef",
) -> dict[str, Any]:
    headers = sign_request(
        method,
        path,
        query=query,
        body=body,
        key_id=key_id,
        secret=secret,
        timestamp=ts,
        nonce=nonce,
    )
    return {"method": method, "path": path, "query": query, "headers": headers, "body": body}


# -- SIG-1 known answers ----------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS, ids=[v["name"] for v in VECTORS])
def test_SIG1_known_answer_vectors(case: dict[str, str]) -> None:
    canon, sts, sig = _independent(case)
    assert (canon, sts, sig) == (case["canonical_query"], case["string_to_sign"], case["signature"])
    assert canonical_query(case["query"]) == case["canonical_query"]
    assert (
        string_to_sign(
            case["method"],
            case["path"],
            query=canon,
            timestamp=case["timestamp"],
            nonce=case["nonce"],
            key_id=case["key_id"],
            body=case["body"].encode(),
        )
        == case["string_to_sign"]
    )
    headers = sign_request(
        case["method"],
        case["path"],
        query=case["query"],
        body=case["body"].encode(),
        key_id=case["key_id"],
        secret=case["secret"],
        timestamp=int(case["timestamp"]),
        nonce=case["nonce"],
    )
    assert headers["Aegis-Signature"] == case["signature"]
    verifier = _verifier({case["key_id"]: case["secret"]}, now=int(case["timestamp"]))
    verified = verifier.verify(
        method=case["method"],
        path=case["path"],
        query=case["query"],
        headers=headers,
        body=case["body"].encode(),
    )
    assert verified.key_id == case["key_id"]


def test_canonical_query_rules() -> None:
    assert canonical_query("") == "" and canonical_query(None) == ""
    assert canonical_query("b=2&a=1") == canonical_query([("a", "1"), ("b", "2")]) == "a=1&b=2"
    assert canonical_query("x=%4a") == canonical_query("x=%4A") == canonical_query("x=J")
    assert canonical_query("k=a+b") == "k=a%2Bb"  # `+` is a literal plus, not a space
    assert canonical_query({"q": "é"}) == "q=%C3%A9"


# -- SIG-1 tampering --------------------------------------------------------------------------

_COMPONENTS = [
    "method",
    "path",
    "query",
    "body",
    "Aegis-Key-Id",
    "Aegis-Timestamp",
    "Aegis-Nonce",
    "Aegis-Signature",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(min_size=0, max_size=64),
    query=st.lists(
        st.tuples(st.text("abcxyz0189", min_size=1, max_size=4), st.text("abcxyz0189", max_size=4)),
        max_size=3,
    ),
    component=st.sampled_from(_COMPONENTS),
    data=st.data(),
)
def test_SIG1_any_single_byte_mutation_is_refused(
    body: bytes, query: list[tuple[str, str]], component: str, data: st.DataObject
) -> None:
    raw_query = "&".join(f"{k}={v}" for k, v in query)
    request = _signed(body, query=raw_query, path="/v1/actions/abc")
    headers = dict(request["headers"])
    target = request[component] if component in request else headers[component]
    raw = target.encode() if isinstance(target, str) else target
    if not raw:
        raw_mut = bytes([data.draw(st.integers(0, 255))])
    else:
        pos = data.draw(st.integers(0, len(raw) - 1))
        new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
        raw_mut = raw[:pos] + bytes([new]) + raw[pos + 1 :]
    mutated: Any = raw_mut if isinstance(target, bytes) else raw_mut.decode("latin-1")
    if component == "query" and canonical_query(mutated) == canonical_query(raw_query):
        return  # an equivalent spelling of the same query (e.g. a dropped empty segment)
    if component in request:
        request[component] = mutated
    else:
        headers[component] = mutated
    request["headers"] = headers
    verifier = _verifier()
    with pytest.raises(SignatureError) as err:
        verifier.verify(**request)
    assert type(err.value) is SignatureError  # never a replay: nothing was recorded


def test_SIG1_reserialised_json_is_refused() -> None:
    body = b'{"type":"restart_deployment","name":"api"}'
    request = _signed(body)
    request["body"] = json.dumps(json.loads(body)).encode()  # same JSON, different bytes
    with pytest.raises(SignatureError):
        _verifier().verify(**request)


def test_SIG1_wrong_path_and_wrong_key_are_refused() -> None:
    request = _signed(path="/v1/actions")
    with pytest.raises(SignatureError):
        _verifier().verify(**{**request, "path": "/v1/actions/"})
    other = _signed(secret="z" * 32)
    with pytest.raises(SignatureError):
        _verifier().verify(**other)


# -- SIG-2 window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skew", "ok"), [(-301, False), (301, False), (-299, True), (299, True), (0, True)]
)
def test_SIG2_timestamp_window(skew: int, ok: bool) -> None:
    request = _signed(ts=NOW + skew)
    verifier = _verifier()
    if ok:
        assert verifier.verify(**request).timestamp == NOW + skew
    else:
        with pytest.raises(SignatureError):
            verifier.verify(**request)


# -- SIG-3 replay -----------------------------------------------------------------------------


def test_SIG3_same_request_twice_is_a_replay() -> None:
    verifier = _verifier()
    request = _signed()
    verifier.verify(**request)
    with pytest.raises(ReplayError):
        verifier.verify(**request)


def test_SIG3_a_forged_request_does_not_burn_the_nonce() -> None:
    verifier = _verifier()
    request = _signed()
    forged = {**request, "body": b'{"a":2}'}
    with pytest.raises(SignatureError):
        verifier.verify(**forged)
    assert verifier.verify(**request).nonce == "n0123456789abcdef"


@pytest.mark.redis
def test_SIG3_redis_store_uses_set_nx_ex(redis_url: str, redis_prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    store = RedisReplayStore(client, prefix=redis_prefix + "aegis:nonce:")
    assert store.remember("k1", "n0123456789abcdef", 600) is True
    assert store.remember("k1", "n0123456789abcdef", 600) is False
    key = f"{redis_prefix}aegis:nonce:k1:n0123456789abcdef"
    assert client.get(key) == b"1" and 590 <= client.ttl(key) <= 600
    verifier = RequestVerifier(Keyring({"k1": SECRET}), store, clock=lambda: NOW)
    with pytest.raises(ReplayError):
        verifier.verify(**_signed())
    client.delete(key)
    client.close()


def test_SIG3_redis_down_fails_closed() -> None:
    store = RedisReplayStore.from_url("redis://127.0.0.1:1/0")
    verifier = RequestVerifier(Keyring({"k1": SECRET}), store, clock=lambda: NOW)
    with pytest.raises(ReplayStoreUnavailableError):
        verifier.verify(**_signed())


def test_SIG3_memory_store_forgets_after_ttl() -> None:
    now = [0.0]
    store = MemoryReplayStore(clock=lambda: now[0])
    assert store.remember("k", "n", 600) and not store.remember("k", "n", 600)
    now[0] = 601
    assert store.remember("k", "n", 600)


# -- SIG-4 keys -------------------------------------------------------------------------------


def test_SIG4_rotation_overlap_then_retire() -> None:
    keyring = Keyring({"old": SECRET})
    keyring.add("new", "n" * 32)
    verifier = RequestVerifier(keyring, MemoryReplayStore(), clock=lambda: NOW)
    verifier.verify(**_signed(key_id="old", nonce="a" * 16))
    verifier.verify(**_signed(key_id="new", secret="n" * 32, nonce="b" * 16))
    keyring.retire("old")
    with pytest.raises(SignatureError) as retired:
        verifier.verify(**_signed(key_id="old", nonce="c" * 16))
    with pytest.raises(SignatureError) as bad_mac:
        verifier.verify(**_signed(key_id="new", secret="x" * 32, nonce="d" * 16))
    with pytest.raises(SignatureError) as unknown:
        verifier.verify(**_signed(key_id="ghost", nonce="e" * 16))
    assert (
        str(retired.value)
        == str(bad_mac.value)
        == str(unknown.value)
        == "request signature is invalid"
    )
    assert type(retired.value) is type(bad_mac.value) is type(unknown.value)
    with pytest.raises(ConfigurationError):
        keyring.add("old", "o" * 32)  # a retired id cannot come back


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("", "no executor keys"),
        ("k1:short", "shorter than 32 bytes"),
        ("k1" + ":" + "a" * 32 + ",k1:" + "b" * 32, "given twice"),
        ("k1" + "a" * 32, "kid:secret"),
        ("k1:" + "a" * 32 + ",k2:" + "a" * 32, "reuses another key"),
        ("bad id:" + "a" * 32, "must be 1-64"),
    ],
)
def test_SIG4_keyring_refuses_bad_keys(env: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Keyring.from_env(env)


def test_SIG4_executor_secret_must_differ_from_the_jwt_secret() -> None:
    with pytest.raises(ConfigurationError, match="must stay separate"):
        Keyring.from_env("k1:" + "j" * 40, reject_secrets=["j" * 40])
    assert Keyring.from_env("k1:" + "a" * 32 + ", k2:" + "b" * 32).active_ids == ["k1", "k2"]


# -- SIG-5 strict parsing ---------------------------------------------------------------------


def test_SIG5_compare_digest_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    _verifier().verify(**_signed())
    assert calls and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s.upper().replace("V1=", "v1="),  # uppercase hex
        lambda s: " " + s,
        lambda s: s + " ",
        lambda s: s + "\n",
        lambda s: s[:-1],
        lambda s: s + "0",
        lambda s: s.replace("v1=", "v2="),
        lambda s: s.replace("v1=", "V1="),
        lambda s: s + ",v1=" + "0" * 64,
        lambda s: s[3:],
        lambda s: "",
    ],
)
def test_SIG5_malformed_signatures_are_refused(mangle: Any) -> None:
    request = _signed()
    request["headers"] = {
        **request["headers"],
        "Aegis-Signature": mangle(request["headers"]["Aegis-Signature"]),
    }
    with pytest.raises(SignatureError):
        _verifier().verify(**request)


@pytest.mark.parametrize(
    "header", ["Aegis-Signature", "aegis-key-id", "AEGIS-NONCE", "Aegis-Timestamp"]
)
def test_SIG5_duplicate_headers_are_refused(header: str) -> None:
    request = _signed()
    pairs = list(request["headers"].items())
    canonical = {h.lower(): h for h in request["headers"]}[header.lower()]
    pairs.append((header, request["headers"][canonical]))
    with pytest.raises(SignatureError, match="request signature is invalid"):
        _verifier().verify(**{**request, "headers": pairs})


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Aegis-Timestamp", "+1700000000"),
        ("Aegis-Timestamp", "01700000000"),
        ("Aegis-Timestamp", "１７００００００００"),
        ("Aegis-Timestamp", "1700000000.0"),
        ("Aegis-Nonce", "short"),
        ("Aegis-Nonce", "n0123456789abcde!"),
        ("Aegis-Nonce", "x" * 65),
        ("Aegis-Key-Id", "k1\n"),
        ("Aegis-Key-Id", ""),
    ],
)
def test_SIG5_malformed_header_values_are_refused(header: str, value: str) -> None:
    request = _signed()
    request["headers"] = {**request["headers"], header: value}
    with pytest.raises(SignatureError):
        _verifier().verify(**request)


def test_missing_header_and_lowercase_method_are_refused() -> None:
    request = _signed()
    headers = dict(request["headers"])
    del headers["Aegis-Nonce"]
    with pytest.raises(SignatureError):
        _verifier().verify(**{**request, "headers": headers})
    with pytest.raises(SignatureError):
        _verifier().verify(**{**request, "method": "post"})
    lower = {k.lower(): v for k, v in request["headers"].items()}
    assert _verifier().verify(**{**request, "headers": lower}).key_id == "k1"


# -- the client -------------------------------------------------------------------------------


def test_signing_client_signs_the_exact_bytes_it_sends() -> None:
    import httpx

    verifier = RequestVerifier(Keyring({"ops": SECRET}), MemoryReplayStore())
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        verified = verifier.verify(
            method=request.method,
            path=request.url.raw_path.split(b"?")[0].decode(),
            query=request.url.query.decode(),
            headers=list(request.headers.multi_items()),
            body=request.content,
        )
        seen.append(verified.key_id)
        return httpx.Response(200, json={"ok": True})

    client = SigningClient("http://executor", "ops", SECRET, transport=httpx.MockTransport(handler))
    assert client.post_json("/v1/actions", {"name": "café", "n": 1}).status_code == 200
    assert client.get("/v1/actions", query="status=failed&limit=5").status_code == 200
    client.close()
    assert seen == ["ops", "ops"]
