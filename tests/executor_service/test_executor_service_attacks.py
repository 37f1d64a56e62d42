"""``aegis executor`` as a subprocess (simulated actuator, SQLite audit), attacked from outside.

One server for the module; every test uses fresh request ids and nonces. "The cluster did not
change" is observed through the next real action on the same deployment: its result reports
``replicas_before``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from executor_service_support import (
    GUARDRAILS,
    KEY_ID,
    OTHER_KEY_ID,
    OTHER_SECRET,
    SECRET,
    Server,
    action,
    encode,
    independent_signature,
    post,
    signed_headers,
    start_server,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aegis.actuators.signing import new_nonce

GENERIC_401 = {"error": {"code": "actuator.signature", "message": "request signature is invalid"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("executor")
    (tmp / "guardrails.yaml").write_text(GUARDRAILS, encoding="utf-8")
    srv = start_server(
        tmp, "--allow-namespaces", "prod,staging", "--guardrails", str(tmp / "guardrails.yaml")
    )
    yield srv
    srv.stop()


def replicas_now(server: Server, name: str = "api") -> int:
    """Scale by +0 is refused as already applied, so scale to a probe value and read 'before'."""
    body = encode(action(name=name, params={"replicas": 7}))
    first = post(server, body, signed_headers("POST", "/v1/actions", body)).json()
    before = int(first["result"]["details"]["replicas_before"])
    restore = encode(action(name=name, params={"replicas": before}))
    done = post(server, restore, signed_headers("POST", "/v1/actions", restore))
    assert done.status_code == 200, done.text
    return before


def rows(server: Server, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = server.database.removeprefix("sqlite:///")
    with sqlite3.connect(db, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def intents_for(server: Server, request_id: str) -> int:
    return len(
        rows(server, "SELECT id FROM aegis_executor_actions WHERE request_id = ?", request_id)
    )


# -- the happy path --------------------------------------------------------------------------


def test_a_signed_action_changes_the_simulated_cluster(server: Server) -> None:
    before = replicas_now(server)
    payload = action(params={"replicas": before + 1})
    with server.client() as client:
        response = client.post_json("/v1/actions", payload)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"id", "status", "result"}
    assert data["status"] == "succeeded"
    assert data["result"]["details"]["replicas_after"] == before + 1
    assert replicas_now(server) == before + 1
    with server.client() as client:
        record = client.get(f"/v1/actions/{data['id']}")
        assert record.status_code == 200
        assert record.json()["request_id"] == payload["request_id"]
        assert record.json()["status"] == "succeeded"
        listed = client.get("/v1/actions", "limit=5&status=succeeded")
        assert listed.status_code == 200
        assert all(a["status"] == "succeeded" for a in listed.json()["actions"])
        report = client.get("/v1/report")
        assert report.status_code == 200
        assert report.json()["actions"]["scale_deployment"]["succeeded"] >= 1


def test_SIG1_independent_hmac_implementation_is_accepted(server: Server) -> None:
    """The wire format checked from outside: plain hmac/hashlib, a hand-built request."""
    body = encode(action(type="restart_deployment", params={}))
    headers = independent_signature(
        "POST",
        "/v1/actions",
        "",
        body,
        key_id=KEY_ID,
        secret=SECRET,
        timestamp=int(time.time()),
        nonce=new_nonce(),
    )
    response = post(server, body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["reason"] == "restarted"
    # a signed GET with a query, canonicalised by hand: pairs sorted by name
    headers = independent_signature(
        "GET",
        "/v1/actions",
        "limit=2&status=succeeded",
        b"",
        key_id=OTHER_KEY_ID,
        secret=OTHER_SECRET,
        timestamp=int(time.time()),
        nonce=new_nonce(),
    )
    with server.http() as http:
        listed = http.get("/v1/actions?status=succeeded&limit=2", headers=headers)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["actions"]) <= 2


def test_dry_run_answers_dry_run_and_changes_nothing(server: Server) -> None:
    before = replicas_now(server)
    body = encode(action(params={"replicas": before + 2}, dry_run=True))
    response = post(server, body, signed_headers("POST", "/v1/actions", body))
    assert response.status_code == 200 and response.json()["status"] == "dry_run"
    assert replicas_now(server) == before


def test_K8S4_same_request_id_twice_acts_once(server: Server) -> None:
    before = replicas_now(server)
    payload = action(params={"replicas": before + 1})
    body = encode(payload)
    first = post(server, body, signed_headers("POST", "/v1/actions", body))
    again = post(server, body, signed_headers("POST", "/v1/actions", body))  # fresh nonce
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert intents_for(server, payload["request_id"]) == 1
    assert replicas_now(server) == before + 1


# -- signature attacks: 401 (or 409), audited, nothing done ----------------------------------


def _attack_cases() -> dict[str, Any]:
    """name -> function(body) returning (method, path, body_sent, headers)."""
    now = int(time.time())

    def sign(body: bytes, **kw: Any) -> dict[str, str]:
        return signed_headers("POST", "/v1/actions", body, **kw)

    return {
        "stale": lambda b: ("POST", "/v1/actions", b, sign(b, timestamp=now - 301)),
        "future": lambda b: ("POST", "/v1/actions", b, sign(b, timestamp=now + 301)),
        "tampered_body": lambda b: (
            "POST",
            "/v1/actions",
            b.replace(b'"replicas":4', b'"replicas":9'),
            sign(b),
        ),
        "reserialised_json": lambda b: (
            "POST",
            "/v1/actions",
            json.dumps(json.loads(b), indent=1).encode(),
            sign(b),
        ),
        "wrong_key": lambda b: ("POST", "/v1/actions", b, sign(b, secret=OTHER_SECRET)),
        "unknown_key_id": lambda b: (
            "POST",
            "/v1/actions",
            b,
            sign(b, key_id="nobody", secret=SECRET),
        ),
        "wrong_path": lambda b: ("POST", "/v1/actions/", b, sign(b)),
        "other_route": lambda b: ("POST", "/v1/report", b, sign(b)),
        "encoded_path": lambda b: ("POST", "/v1/%61ctions", b, sign(b)),
        "wrong_method": lambda b: ("PUT", "/v1/actions", b, sign(b)),
        "query_added": lambda b: ("POST", "/v1/actions?dry_run=true", b, sign(b)),
        "unsigned": lambda b: ("POST", "/v1/actions", b, {}),
        "uppercase_hex": lambda b: (
            "POST",
            "/v1/actions",
            b,
            {**sign(b), "Aegis-Signature": sign(b)["Aegis-Signature"].upper()},
        ),
    }


@pytest.mark.parametrize("case", sorted(_attack_cases()))
def test_SIG6_signature_attacks_get_one_generic_401_and_do_nothing(
    server: Server, case: str
) -> None:
    before = replicas_now(server)
    payload = action(params={"replicas": 4 if before != 4 else 5})
    body = encode(payload)
    if case == "tampered_body":
        body = encode({**payload, "params": {"replicas": 4}})
    method, path, sent, headers = _attack_cases()[case](body)
    failures_before = rows(
        server, "SELECT count(*) FROM aegis_executor_events WHERE reason = 'signature'"
    )[0][0]
    with server.http() as http:
        response = http.request(method, path, content=sent, headers=headers)
    assert response.status_code == 401, (case, response.text)
    assert response.json() == GENERIC_401
    assert "traceback" not in response.text.lower()
    assert intents_for(server, payload["request_id"]) == 0
    assert replicas_now(server) == before
    failures_after = rows(
        server, "SELECT count(*) FROM aegis_executor_events WHERE reason = 'signature'"
    )[0][0]
    assert failures_after == failures_before + 1  # audited


def test_SIG5_duplicate_signature_headers_are_401(server: Server) -> None:
    body = encode(action())
    good = signed_headers("POST", "/v1/actions", body)
    other = signed_headers("POST", "/v1/actions", body)
    headers = [*good.items(), ("Aegis-Signature", other["Aegis-Signature"])]
    response = post(server, body, headers)
    assert response.status_code == 401 and response.json() == GENERIC_401
    headers = [*good.items(), ("aegis-nonce", other["Aegis-Nonce"])]
    assert post(server, body, headers).status_code == 401


def test_SIG3_replayed_request_is_409_and_does_nothing_twice(server: Server) -> None:
    before = replicas_now(server)
    body = encode(action(params={"replicas": before + 1}))
    headers = signed_headers("POST", "/v1/actions", body)
    assert post(server, body, headers).status_code == 200
    replay = post(server, body, headers)
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "actuator.replay"
    assert replicas_now(server) == before + 1


def test_SIG2_timestamps_inside_the_window_are_accepted(server: Server) -> None:
    body = encode(action(type="restart_deployment", params={}, name="web"))
    headers = signed_headers("POST", "/v1/actions", body, timestamp=int(time.time()) - 290)
    assert post(server, body, headers).status_code == 200


# -- scope, validation, size -------------------------------------------------------------------


@pytest.mark.parametrize(
    "namespace", ["ｐｒｏｄ", "prod\n", "PROD", " prod", "prod ", "pr\u200bod", "kube-system", ""]
)
def test_K8S1_look_alike_namespaces_are_403(server: Server, namespace: str) -> None:
    before = replicas_now(server)
    payload = action(namespace=namespace)
    body = json.dumps(payload, ensure_ascii=False).encode()
    response = post(server, body, signed_headers("POST", "/v1/actions", body))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["reason"] == "namespace_denied"
    assert intents_for(server, payload["request_id"]) == 0
    assert replicas_now(server) == before


@pytest.mark.parametrize("raw", [b"-1", b"1e9", b'"3"', b"true", b"3.0", b"null", b"100000"])
def test_K8S2_invalid_replicas_are_422(server: Server, raw: bytes) -> None:
    template = encode(action(params={"replicas": 12345}))
    body = template.replace(b"12345", raw)
    response = post(server, body, signed_headers("POST", "/v1/actions", body))
    assert response.status_code == 422, (raw, response.text)
    assert response.json()["error"]["code"] == "actuator.invalid_action"


def test_K8S2_unknown_action_type_and_unknown_fields_are_refused(server: Server) -> None:
    body = encode(action(type="exec_in_pod"))
    assert post(server, body, signed_headers("POST", "/v1/actions", body)).status_code in (
        403,
        422,
    )
    body = encode({**action(), "manifest": {"kind": "Pod"}})
    assert post(server, body, signed_headers("POST", "/v1/actions", body)).status_code == 422


def test_duplicate_json_keys_are_422_not_a_second_reading(server: Server) -> None:
    body = encode(action()).replace(b'"namespace":"prod"', b'"namespace":"prod","namespace":"x"')
    response = post(server, body, signed_headers("POST", "/v1/actions", body))
    assert response.status_code == 422


def test_deeply_nested_json_is_422_without_a_traceback(server: Server) -> None:
    body = b"[" * 20000 + b"]" * 20000
    response = post(server, body, signed_headers("POST", "/v1/actions", body))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "actuator.invalid_action"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_INP1_bodies_over_64_KiB_are_413(server: Server, chunked: bool) -> None:
    body = encode({**action(), "reason": "x" * (64 * 1024)})
    headers = signed_headers("POST", "/v1/actions", body)
    with server.http() as http:
        if chunked:

            def stream() -> Iterator[bytes]:
                for i in range(0, 2 * 1024 * 1024, 8192):
                    yield (body + b" " * (2 * 1024 * 1024))[i : i + 8192]

            response = http.post("/v1/actions", content=stream(), headers=headers)
        else:
            response = http.post("/v1/actions", content=body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request.too_large"


def test_a_body_just_under_the_limit_is_read(server: Server) -> None:
    payload = action()
    payload["reason"] = "x" * (64 * 1024 - len(encode(payload)) - 10)
    body = encode(payload)
    assert len(body) < 64 * 1024
    response = post(server, body, signed_headers("POST", "/v1/actions", body))
    assert response.status_code == 422  # reason is at most 2048 characters: read, then refused


# -- the read routes, health and metrics ------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/actions", "/v1/report", "/v1/actions/abc", "/v1/other"])
def test_GET_routes_need_a_signature(server: Server, path: str) -> None:
    with server.http() as http:
        response = http.get(path)
    assert response.status_code == 401 and response.json() == GENERIC_401


def test_signed_GETs_to_unknown_ids_and_routes_are_404_and_bad_queries_422(
    server: Server,
) -> None:
    with server.client() as client:
        assert client.get("/v1/actions/0123456789abcdef").status_code == 404
        assert client.get("/v1/other").status_code == 404
        assert client.get("/v1/actions", "limit=0").status_code == 422
        assert client.get("/v1/actions", "status=everything").status_code == 422
        assert client.get("/v1/actions", "limit=1&limit=2").status_code == 422
        assert client.get("/v1/actions", "order=id").status_code == 422
        response = client.request("DELETE", "/v1/actions")
        assert response.status_code == 405


def test_a_replayed_signed_GET_is_409(server: Server) -> None:
    headers = signed_headers("GET", "/v1/report")
    with server.http() as http:
        assert http.get("/v1/report", headers=headers).status_code == 200
        assert http.get("/v1/report", headers=headers).status_code == 409


def test_health_and_metrics_are_open(server: Server) -> None:
    with server.http() as http:
        health = http.get("/health")
        metrics = http.get("/metrics")
        missing = http.get("/does-not-exist")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.status_code == 200
    text = metrics.text
    assert 'aegis_executor_actions_total{status="succeeded",type="scale_deployment"}' in text
    assert "aegis_executor_signature_failures_total" in text
    assert 'aegis_executor_refusals_total{reason="namespace_denied"}' in text
    assert "executor_refused_audit_down_total" in text
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "request.not_found"


def test_refusals_are_in_the_report(server: Server) -> None:
    with server.client() as client:
        report = client.get("/v1/report").json()
    assert report["refusals"].get("signature", 0) >= 1
    assert report["refusals"].get("namespace_denied", 0) >= 1


def test_no_answer_carries_a_traceback(server: Server) -> None:
    bodies = [b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"type": 1}', b"1e999999"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for body in bodies:
            response = http.post(
                "/v1/actions", content=body, headers=signed_headers("POST", "/v1/actions", body)
            )
            assert response.status_code in (401, 403, 422), (body, response.text)
            assert "Traceback" not in response.text
            assert response.headers["content-type"] == "application/json"


_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@settings(max_examples=40, deadline=None)
@given(
    part=st.sampled_from(["body", "path", "query", "timestamp", "nonce", "key_id", "signature"]),
    position=st.integers(min_value=0, max_value=10_000),
    replacement=st.sampled_from(_SAFE),
)
def test_SIG1_any_single_changed_character_of_a_signed_request_is_401(
    server: Server, part: str, position: int, replacement: str
) -> None:
    payload = action(params={"replicas": 4})
    body = encode(payload)
    parts = {
        "body": body.decode(),
        "path": "/v1/actions",
        "query": "limit=5",
        **signed_headers("POST", "/v1/actions", body, query="limit=5"),
    }
    names = {
        "timestamp": "Aegis-Timestamp",
        "nonce": "Aegis-Nonce",
        "key_id": "Aegis-Key-Id",
        "signature": "Aegis-Signature",
    }
    name = names.get(part, part)
    value = parts[name]
    first = 1 if part == "path" else 0  # keep the leading "/" (else httpx resolves it back)
    index = first + position % (len(value) - first)
    assume(value[index] != replacement)
    parts[name] = value[:index] + replacement + value[index + 1 :]
    headers = {k: v for k, v in parts.items() if k.startswith("Aegis-")}
    with server.http() as http:
        response = http.post(
            f"{parts['path']}?{parts['query']}", content=parts["body"].encode(), headers=headers
        )
    assert response.status_code == 401, (part, parts[name], response.text)
    assert response.json() == GENERIC_401
    assert intents_for(server, payload["request_id"]) == 0
