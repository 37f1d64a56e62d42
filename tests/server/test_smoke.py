from __future__ import annotations

from server_helpers import Env, bearer


def test_signup_login_me(env: Env) -> None:
    pair = env.user("alice@example.com")
    assert pair["token_type"] == "bearer"
    me = env.client.get("/api/v1/users/me", headers=bearer(pair))
    assert me.status_code == 200, me.text
    assert me.json()["roles"] == ["user"]
