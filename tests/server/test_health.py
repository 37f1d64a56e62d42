"""Health, OpenAPI and metrics."""

from __future__ import annotations

from typing import Any

from server_helpers import Env

from aegis.server.db.database import Database


def test_ping(env: Env) -> None:
    response = env.client.get("/api/v1/health/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_reports_each_dependency(make_env: Any) -> None:
    env = make_env()

    async def plugin_ok() -> bool:
        return True

    async def plugin_down() -> bool:
        raise ConnectionError("gone")

    env.app.state.aegis.health_checks = {"detector": plugin_ok, "actuator": plugin_down}
    body = env.client.get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "disabled"
    assert body["checks"]["plugin:detector"]["status"] == "ok"
    assert body["checks"]["plugin:actuator"] == {
        "status": "down",
        "latency_ms": body["checks"]["plugin:actuator"]["latency_ms"],
        "error": "ConnectionError",
    }
    for check in body["checks"].values():
        assert isinstance(check["latency_ms"], float)


def test_FLT01_health_degraded_when_redis_is_down(make_env: Any) -> None:
    env = make_env(redis_url="redis://127.0.0.1:1/0")
    body = env.client.get("/api/v1/health").json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"


def test_FLT08_SES6_database_down_gives_503_without_internals(make_env: Any, tmp_path: Any) -> None:
    env = make_env()
    pair = env.user("db@example.com")
    broken = Database(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    (tmp_path / "missing").rmdir()  # the directory is gone: every connection fails
    env.app.state.aegis.db = broken
    health = env.client.get("/api/v1/health")
    assert health.status_code == 503
    assert health.json()["status"] == "down"
    me = env.client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.status_code == 503
    assert "sqlite" not in me.text.lower()
    login = env.login("db@example.com")
    assert login.status_code == 503
    assert login.json()["error"]["code"] == "service.unavailable"
    assert "Traceback" not in login.text
    assert "sqlite" not in login.text.lower()


def test_openapi_matches_the_route_table(env: Env) -> None:
    doc = env.client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    served = {(e.method.lower(), e.path) for e in env.app.state.aegis.endpoints}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == []
    assert login["x-aegis-action"] == "api:auth:login"
    assert "LoginRequestV1" in doc["components"]["schemas"]
    assert doc["paths"]["/api/v1/users"]["get"]["security"] == [{"bearerAuth": []}]
    schema = doc["components"]["schemas"]["SignupRequestV1"]
    assert schema["additionalProperties"] is False


def test_metrics_are_per_app(make_env: Any) -> None:
    one, two = make_env(), make_env()
    one.client.get("/api/v1/health/ping")
    text = one.client.get("/metrics").text
    assert "aegis_http_requests_total" in text
    assert 'route="/api/v1/health/ping"' in text
    assert 'route="/api/v1/health/ping"' not in two.client.get("/metrics").text
