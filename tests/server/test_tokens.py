"""Access-token handling (RFC 8725): JWT-1 .. JWT-6."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from server_helpers import Env, bearer

from aegis.server.auth.tokens import ALGORITHMS

ME = "/api/v1/users/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


def _claims(env: Env, pair: dict[str, Any]) -> dict[str, Any]:
    return dict(jwt.decode(pair["access_token"], options={"verify_signature": False}))


def _sign(env: Env, claims: dict[str, Any], **header: Any) -> str:
    """HS256 with the server's key over any header (PyJWT refuses to write odd ones)."""
    key = env.settings.jwt_secret.get_secret_value().encode()
    headers = {"alg": "HS256", "typ": "at+jwt", "kid": env.settings.jwt_key_id, **header}
    signing_input = f"{_b64(json.dumps(headers).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _status(env: Env, token: str) -> int:
    return env.client.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code


def test_JWT4_header_and_claims_of_issued_tokens(env: Env) -> None:
    pair = env.user("claims@example.com")
    header = jwt.get_unverified_header(pair["access_token"])
    assert header["alg"] == "HS256"
    assert header["typ"] == "at+jwt"
    assert header["kid"] == env.settings.jwt_key_id
    claims = _claims(env, pair)
    assert set(claims) >= {"iss", "aud", "sub", "exp", "iat", "jti"}
    assert claims["exp"] - claims["iat"] == 900


def test_JWT1_algorithm_list_is_a_constant() -> None:
    assert ALGORITHMS == ("HS256",)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_JWT1_alg_none_in_any_casing_is_refused(env: Env, alg: str) -> None:
    pair = env.user("none@example.com")
    token = _forge({"alg": alg, "typ": "at+jwt"}, _claims(env, pair))
    assert _status(env, token) == 401


@pytest.mark.parametrize("alg", ["HS512", "HS384"])
def test_JWT1_other_algorithms_are_refused(env: Env, alg: str) -> None:
    pair = env.user("alg@example.com")
    key = env.settings.jwt_secret.get_secret_value().encode() * 2  # long enough for HS512
    token = jwt.encode(_claims(env, pair), key, algorithm=alg, headers={"typ": "at+jwt"})
    assert _status(env, token) == 401
    key = env.settings.jwt_secret.get_secret_value().encode()
    token = _forge({"alg": alg, "typ": "at+jwt"}, _claims(env, pair), key)
    assert _status(env, token) == 401


def test_JWT1_rs256_header_is_refused(env: Env) -> None:
    pair = env.user("rs@example.com")
    token = _forge({"alg": "RS256", "typ": "at+jwt"}, _claims(env, pair), b"x" * 256)
    assert _status(env, token) == 401


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "http://127.0.0.1:1/jwks"},
        {"x5u": "http://127.0.0.1:1/cert"},
        {"jwk": {"kty": "oct", "k": "AAAA"}},
        {"x5c": ["MIIB"]},
        {"kid": "../../dev/null"},
        {"kid": "x' OR 1=1--"},
        {"kid": 7},
    ],
)
def test_JWT2_key_sources_other_than_the_keyring_are_refused(
    env: Env, extra: dict[str, Any]
) -> None:
    pair = env.user("kid@example.com")
    assert _status(env, _sign(env, _claims(env, pair), **extra)) == 401


def test_JWT2_previous_key_accepted_during_rotation(make_env: Any) -> None:
    old_secret = "o" * 40
    old = make_env(jwt_secret=old_secret, jwt_key_id="k1")
    pair = old.user("rotate@example.com")
    claims = _claims(old, pair)
    new = make_env(
        database_url=old.settings.database_url,
        jwt_key_id="k2",
        jwt_previous_keys=(f"k1:{old_secret}",),
    )
    new.clock.now = old.clock.now
    assert _status(new, pair["access_token"]) == 200
    retired = make_env(database_url=old.settings.database_url, jwt_key_id="k2")
    retired.clock.now = old.clock.now
    assert _status(retired, pair["access_token"]) == 401
    assert claims["sub"]


@pytest.mark.parametrize("missing", ["iss", "aud", "sub", "exp", "iat", "jti"])
def test_JWT3_every_claim_is_required(env: Env, missing: str) -> None:
    pair = env.user("req@example.com")
    claims = _claims(env, pair)
    assert _status(env, _sign(env, claims)) == 200
    del claims[missing]
    assert _status(env, _sign(env, claims)) == 401


@pytest.mark.parametrize(("claim", "value"), [("iss", "someone-else"), ("aud", "other-api")])
def test_JWT3_wrong_issuer_or_audience(env: Env, claim: str, value: str) -> None:
    pair = env.user("aud@example.com")
    claims = _claims(env, pair)
    claims[claim] = value
    assert _status(env, _sign(env, claims)) == 401


def test_JWT3_expiry_with_leeway(env: Env) -> None:
    pair = env.user("exp@example.com")
    claims = _claims(env, pair)
    env.clock.advance(900 + 30 - 1)  # within the 30 s leeway
    assert _status(env, pair["access_token"]) == 200
    env.clock.advance(2)
    assert _status(env, pair["access_token"]) == 401
    now = int(env.clock().timestamp())
    assert _status(env, _sign(env, {**claims, "iat": now, "exp": now - 61})) == 401
    assert _status(env, _sign(env, {**claims, "iat": now - 60, "exp": now - 20})) == 200


def test_JWT3_future_iat_and_nbf_are_refused(env: Env) -> None:
    pair = env.user("nbf@example.com")
    claims = _claims(env, pair)
    now = int(env.clock().timestamp())
    assert _status(env, _sign(env, {**claims, "nbf": now + 120})) == 401
    assert _status(env, _sign(env, {**claims, "iat": now + 120, "exp": now + 900})) == 401


def test_JWT4_refresh_and_reset_tokens_are_not_bearer_tokens(env: Env) -> None:
    pair = env.user("typ@example.com")
    assert _status(env, pair["refresh_token"]) == 401
    claims = _claims(env, pair)
    key = env.settings.jwt_secret.get_secret_value().encode()
    other_type = jwt.encode(claims, key, algorithm="HS256", headers={"typ": "JWT"})
    assert _status(env, other_type) == 401


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        _b64(b"{}") + "." + _b64(b"{}") + ".",
        _b64(b'{"alg":"none","alg":"HS256","typ":"at+jwt"}') + ".e30.",
        _b64(b"x" * (1 << 20)) + ".e30.",
    ],
)
def test_JWT6_malformed_tokens_are_one_generic_401(env: Env, token: str) -> None:
    started = time.perf_counter()
    response = env.client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert time.perf_counter() - started < 5  # generous bound against hangs
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "auth.invalid_token"
    assert response.json()["error"]["details"] == []


def test_JWT6_forged_signature_is_refused(env: Env) -> None:
    pair = env.user("sig@example.com")
    head, body, _ = pair["access_token"].split(".")
    forged = f"{head}.{body}.{_b64(b'0' * 32)}"
    assert _status(env, forged) == 401
    assert env.client.get(ME, headers=bearer(pair)).status_code == 200
