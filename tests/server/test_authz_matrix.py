"""Route authorization walked exhaustively: every route x method x role vs a checked-in matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from server_helpers import Env, bearer

ROLES = ("anonymous", "user", "auditor", "admin")
MATRIX = yaml.safe_load((Path(__file__).parent / "expected_matrix.yaml").read_text())
POLICY_CODES = {"auth.required", "auth.invalid_token", "auth.forbidden"}

BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/auth/signup": {"email": "m-{n}@example.com", "password": "matrix pass phrase"},
    "POST /api/v1/auth/login": {"email": "nobody@example.com", "password": "matrix pass phrase"},
    "POST /api/v1/auth/refresh": {"refresh_token": "not-a-token"},
    "POST /api/v1/auth/logout": {"refresh_token": "not-a-token"},
    "POST /api/v1/auth/forgot-password": {"email": "nobody@example.com"},
    "POST /api/v1/auth/reset-password": {"token": "nope", "new_password": "matrix pass phrase"},
    "PATCH /api/v1/users/me": {"name": "matrix"},
    "POST /api/v1/users/me/password": {"current_password": "wrong", "new_password": "x" * 20},
    "POST /api/v1/users": {"email": "new-{n}@example.com"},
    "PATCH /api/v1/users/{id}": {"name": "renamed"},
    # part 2
    "POST /api/v1/policies": {"name": "m{n}", "source": 'allow "m{n}" {{ action == "x" }}'},
    "POST /api/v1/policies/validate": {"source": 'allow "v" {{ true }}'},
    "POST /api/v1/policies/format": {"source": 'allow "v" {{ true }}'},
    "PUT /api/v1/policies/{id}": {"description": "changed"},
    "POST /api/v1/evaluate": {"principal": {"id": "p"}, "action": "a", "resource": {}},
    "POST /api/v1/evaluate/batch": {
        "requests": [{"principal": {"id": "p"}, "action": "a", "resource": {}}]
    },
    "PUT /api/v1/settings": {},
}


def _tokens(env: Env) -> dict[str, dict[str, str]]:
    admin = env.admin()
    user = env.user("plain@example.com")
    created = env.client.post(
        "/api/v1/users",
        json={"email": "aud@example.com", "roles": ["auditor"]},
        headers=bearer(admin),
    )
    assert created.status_code == 201
    env.client.post(
        "/api/v1/auth/reset-password",
        json={"token": env.mailer.last_token("aud@example.com"), "new_password": "auditor phrase"},
    )
    auditor = env.login("aud@example.com", "auditor phrase").json()
    return {
        "anonymous": {},
        "user": bearer(user),
        "auditor": bearer(auditor),
        "admin": bearer(admin),
    }


def test_AC1_matrix_covers_every_route(env: Env) -> None:
    routes = {f"{e.method} {e.path}" for e in env.app.state.aegis.endpoints}
    assert routes == set(MATRIX)
    for row in MATRIX.values():
        assert set(row) == set(ROLES)


def test_AC1_every_route_method_and_role_matches_the_matrix(make_env: Any) -> None:
    env = make_env(rate_limit_auth="1000/minute")
    headers = _tokens(env)
    admin = headers["admin"]
    mismatches = []
    n = 0
    # logging out everywhere ends the caller's own sessions: walk it last
    ordered = sorted(MATRIX.items(), key=lambda kv: (kv[0].endswith("/me/sessions"), kv[0]))
    for route, row in ordered:
        method, path = route.split(" ", 1)
        for role in ROLES:
            n += 1
            url = path
            if "{id}" in path:
                victim = env.client.post(
                    "/api/v1/users", json={"email": f"victim-{n}@example.com"}, headers=admin
                ).json()["id"]
                url = path.replace("{id}", victim)
            body = BODIES.get(route)
            if body is not None:
                body = {k: v.format(n=n) if isinstance(v, str) else v for k, v in body.items()}
            response = env.client.request(method, url, json=body, headers=headers[role])
            code = (
                response.json().get("error", {}).get("code")
                if response.content
                and (response.headers.get("content-type", "").startswith("application/json"))
                else None
            )
            denied = response.status_code in (401, 403) and code in POLICY_CODES
            got = "deny" if denied else "allow"
            if got != row[role]:
                mismatches.append((route, role, row[role], response.status_code, code))
            assert response.status_code < 500, (route, role, response.text)
    assert mismatches == []


def test_AC1_metrics_can_be_protected(make_env: Any) -> None:
    env = make_env(metrics_protected=True)
    assert env.client.get("/metrics").status_code == 401
    admin = env.admin()
    assert env.client.get("/metrics", headers=bearer(admin)).status_code == 200
    user = env.user("metrics@example.com")
    assert env.client.get("/metrics", headers=bearer(user)).status_code == 403


def test_AC3_authorizer_failure_denies(env: Env) -> None:
    pair = env.user("fail@example.com")

    class Broken:
        def is_allowed(self, request: Any) -> bool:
            raise RuntimeError("policy store down")

    env.app.state.aegis.authorizer = Broken()
    from aegis.server.permissions import EngineAuthorizer

    engine_backed = EngineAuthorizer.__new__(EngineAuthorizer)
    engine_backed.engine = Broken()  # type: ignore[assignment]
    env.app.state.aegis.authorizer = engine_backed
    assert env.client.get("/api/v1/users/me", headers=bearer(pair)).status_code == 403
    assert env.client.get("/api/v1/health/ping").status_code == 401


@pytest.mark.parametrize("route", sorted(r for r in MATRIX if MATRIX[r]["anonymous"] == "deny"))
def test_SES5_logged_out_token_fails_on_every_protected_route(env: Env, route: str) -> None:
    pair = env.user("every@example.com")
    env.client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    method, path = route.split(" ", 1)
    response = env.client.request(
        method, path.replace("{id}", "x"), json=BODIES.get(route), headers=bearer(pair)
    )
    assert response.status_code == 401
