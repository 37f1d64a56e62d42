"""Part 2 of the server: policies, evaluation, decision audit, metrics and settings over HTTP."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from server_helpers import Env, bearer

from aegis.engine import PolicyEngine

OPS = """
allow "sre-may-restart" {
    action == "restart_pod"
    "sre" in principal.roles
}

deny "no-prod-on-friday" {
    resource.namespace == "prod"
    principal.id == "mallory"
    reason "mallory may not touch prod"
}
"""
REQUEST = {
    "principal": {"id": "alice", "roles": ["sre"]},
    "action": "restart_pod",
    "resource": {"kind": "pod", "namespace": "prod"},
    "context": {"time": "2026-11-26T10:15:00Z"},
}


def _setup(env: Env) -> tuple[dict[str, str], dict[str, str]]:
    return bearer(env.admin()), bearer(env.user("u@example.com"))


def _create(env: Env, admin: dict[str, str], name: str = "ops", source: str = OPS) -> Any:
    return env.client.post("/api/v1/policies", json={"name": name, "source": source}, headers=admin)


def test_create_list_get_versions_and_evaluate_like_aegis_eval(env: Env) -> None:
    admin, user = _setup(env)
    # aegis serve starts with no policy: everything is denied
    first = env.client.post("/api/v1/evaluate", json=REQUEST, headers=user)
    assert first.status_code == 200
    assert first.json()["decision"] == "DENY"
    assert first.json()["reason"] == "no allow rule matched"
    created = _create(env, admin)
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["id"] and doc["version"] == 1 and doc["enabled"] is True
    listed = env.client.get("/api/v1/policies", headers=user).json()
    assert [d["name"] for d in listed["items"]] == ["ops"] and listed["next_cursor"] is None
    assert env.client.get(f"/api/v1/policies/{doc['id']}", headers=user).json() == doc
    decided = env.client.post("/api/v1/evaluate", json=REQUEST, headers=user)
    expected = PolicyEngine.from_texts({"ops.aegis": OPS}).evaluate(REQUEST).to_dict()
    assert decided.json() == expected
    assert decided.json()["decision"] == "ALLOW"
    changed = env.client.put(
        f"/api/v1/policies/{doc['id']}", json={"enabled": False}, headers=admin
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert (
        env.client.post("/api/v1/evaluate", json=REQUEST, headers=user).json()["decision"] == "DENY"
    )
    assert env.client.delete(f"/api/v1/policies/{doc['id']}", headers=admin).status_code == 204
    assert env.client.get(f"/api/v1/policies/{doc['id']}", headers=admin).status_code == 404
    versions = env.client.get(f"/api/v1/policies/{doc['id']}/versions", headers=admin).json()
    assert [(v["version"], v["change"]) for v in versions["items"]] == [
        (1, "created"),
        (2, "updated"),
        (3, "deleted"),
    ]
    assert all(v["author_id"] and v["at"].endswith("Z") for v in versions["items"])
    events = env.client.get("/api/v1/audit/events?action=policy_created", headers=admin).json()
    assert len(events["items"]) == 1 and events["items"][0]["target_id"] == doc["id"]


def test_a_document_that_does_not_load_gets_every_diagnostic(env: Env) -> None:
    admin, _ = _setup(env)
    bad = 'allow "a" {\n  action == \n}\n\nallow "b" { resource.x ==== 1 }\n'
    response = _create(env, admin, "broken", bad)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "policy.invalid"
    assert error["details"] and all("line" in d and "column" in d for d in error["details"])
    assert error["details"][0]["file"] == "broken.aegis"
    assert _create(env, admin).status_code == 201
    clash = _create(env, admin, "ops2", 'allow "sre-may-restart" { action == "x" }')
    assert clash.status_code == 422
    assert any(d["code"] == "duplicate-rule" for d in clash.json()["error"]["details"]), clash.text
    # a disabled document is only checked on its own
    alone = env.client.post(
        "/api/v1/policies",
        json={"name": "ops3", "source": 'allow "sre-may-restart" { true }', "enabled": False},
        headers=admin,
    )
    assert alone.status_code == 201
    enable = env.client.put(
        f"/api/v1/policies/{alone.json()['id']}", json={"enabled": True}, headers=admin
    )
    assert enable.status_code == 422
    assert _create(env, admin).status_code == 409
    for name in ("Bad", "-x", "a" * 65, "a/b", "a\n"):
        assert _create(env, admin, name, OPS).status_code == 422, name
    assert _create(env, admin, "nul", "# \x00\n" + OPS).status_code == 422
    huge = "# " + "x" * 70_000 + "\n"
    assert _create(env, admin, "huge", huge).status_code == 422


def test_validate_and_format(env: Env) -> None:
    admin, user = _setup(env)
    ok = env.client.post("/api/v1/policies/validate", json={"source": OPS}, headers=user)
    assert ok.json() == {"ok": True, "diagnostics": []}
    bad = env.client.post("/api/v1/policies/validate", json={"source": "allow {"}, headers=user)
    assert bad.json()["ok"] is False and bad.json()["diagnostics"][0]["line"] == 1
    formatted = env.client.post(
        "/api/v1/policies/format", json={"source": 'allow "a" {action=="read"}'}, headers=user
    )
    assert formatted.status_code == 200
    assert formatted.json()["source"] == 'allow "a" {\n    action == "read"\n}\n'
    unparsable = env.client.post("/api/v1/policies/format", json={"source": "x"}, headers=user)
    assert unparsable.status_code == 422 and unparsable.json()["error"]["details"]
    # against the active set: a clash with an enabled document is reported
    assert _create(env, admin).status_code == 201
    clash = env.client.post(
        "/api/v1/policies/validate",
        json={"source": 'allow "sre-may-restart" { true }'},
        headers=user,
    )
    assert clash.json()["ok"] is False
    same = env.client.post(
        "/api/v1/policies/validate",
        json={"source": 'allow "sre-may-restart" { true }', "name": "ops"},
        headers=user,
    )
    assert same.json()["ok"] is True


def test_invalid_requests_are_400_and_batches_are_bounded(env: Env) -> None:
    admin, user = _setup(env)
    assert _create(env, admin).status_code == 201
    for bad in (
        {"principal": {}, "action": "x"},
        {**REQUEST, "context": None},
        {**REQUEST, "extra": 1},
        {**REQUEST, "context": {"time": "yesterday"}},
        [REQUEST],
    ):
        response = env.client.post("/api/v1/evaluate", json=bad, headers=user)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["code"] == "decision.invalid_request"
    batch = env.client.post(
        "/api/v1/evaluate/batch",
        json={"requests": [REQUEST, {**REQUEST, "action": "x"}]},
        headers=user,
    )
    assert [d["decision"] for d in batch.json()["decisions"]] == ["ALLOW", "DENY"]
    broken = env.client.post(
        "/api/v1/evaluate/batch", json={"requests": [REQUEST, {"action": 1}]}, headers=user
    )
    assert broken.status_code == 400 and "request 1" in broken.json()["error"]["message"]
    too_many = env.client.post(
        "/api/v1/evaluate/batch", json={"requests": [REQUEST] * 101}, headers=user
    )
    assert too_many.status_code == 422
    assert (
        env.client.put(
            "/api/v1/settings", json={"evaluate_batch_max": 200}, headers=admin
        ).status_code
        == 200
    )
    assert (
        env.client.post(
            "/api/v1/evaluate/batch", json={"requests": [REQUEST] * 101}, headers=user
        ).status_code
        == 200
    )


def test_AUD6_decision_log_filters_pages_and_verify_names_the_tampered_record(env: Env) -> None:
    admin, user = _setup(env)
    assert _create(env, admin).status_code == 201
    for i in range(7):
        who = "mallory" if i % 3 == 0 else f"p{i}"
        request = {**REQUEST, "principal": {"id": who, "roles": ["sre"]}}
        assert env.client.post("/api/v1/evaluate", json=request, headers=user).status_code == 200
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        url = "/api/v1/audit/decisions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = env.client.get(url, headers=admin).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["seq"] for r in seen] == list(range(1, 8))
    denied = env.client.get("/api/v1/audit/decisions?decision=DENY", headers=admin).json()
    assert {r["request"]["principal"]["id"] for r in denied["items"]} == {"mallory"}
    by_rule = env.client.get("/api/v1/audit/decisions?rule=no-prod-on-friday", headers=admin).json()
    assert len(by_rule["items"]) == 3
    by_principal = env.client.get("/api/v1/audit/decisions?principal=p1", headers=admin).json()
    assert [r["seq"] for r in by_principal["items"]] == [2]
    assert env.client.get(
        "/api/v1/audit/decisions?action=restart_pod&since=2000-01-01T00:00:00Z", headers=admin
    ).json()["items"]
    assert (
        env.client.get(
            "/api/v1/audit/decisions?until=2000-01-01T00:00:00%2B02:00", headers=admin
        ).json()["items"]
        == []
    )
    assert (
        env.client.get("/api/v1/audit/decisions?action=delete_pod", headers=admin).json()["items"]
        == []
    )
    injection = env.client.get("/api/v1/audit/decisions?principal=%25' OR 1=1 --", headers=admin)
    assert injection.status_code == 200 and injection.json()["items"] == []
    for query in (
        "since=yesterday",
        "decision=MAYBE",
        "limit=0",
        "cursor=abc",
        "x=1",
        "since=0001-01-01T00:00:00%2B01:00",
    ):
        assert (
            env.client.get(f"/api/v1/audit/decisions?{query}", headers=admin).status_code == 422
        ), query
    assert env.client.get("/api/v1/audit/decisions", headers=user).status_code == 403
    verdict = env.client.get("/api/v1/audit/verify", headers=admin).json()
    assert verdict["ok"] is True and verdict["chains"]["decisions"]["checked"] == 7
    # tamper through the database (the triggers are dropped first, as an intruder would)
    with env.db.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER IF EXISTS aegis_audit_records_no_update"))
        for name in conn.execute(
            sa.text("SELECT name FROM sqlite_master WHERE type='trigger'")
        ).scalars():
            if "audit_records" in name or "aegis_audit" in name:
                conn.execute(sa.text(f'DROP TRIGGER "{name}"'))
        conn.execute(
            sa.text(
                "UPDATE aegis_audit_records SET body = replace(body, '\"DENY\"', '\"ALLOW\"'), "
                "decision = 'ALLOW' WHERE chain = 'decisions' AND seq = 4"
            )
        )
    broken = env.client.get("/api/v1/audit/verify", headers=admin).json()
    assert broken["ok"] is False
    assert broken["first_bad"]["chain"] == "decisions" and broken["first_bad"]["seq"] == 4
    assert broken["first_bad_seq"] == 4 and broken["chains"]["events"]["ok"] is True
    # a body that no longer parses is still listed (from its columns), never a 500
    with env.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE aegis_audit_records SET body = 'garbage' WHERE seq = 6"))
    listed = env.client.get("/api/v1/audit/decisions?principal=mallory", headers=admin)
    assert listed.status_code == 200
    everything = env.client.get("/api/v1/audit/decisions", headers=admin).json()["items"]
    assert everything[5]["data"] == {"unreadable": True} and everything[5]["seq"] == 6


def test_metrics_current_historical_and_rule_counts(env: Env) -> None:
    admin, user = _setup(env)
    assert _create(env, admin).status_code == 201
    for who in ("alice", "mallory", "alice"):
        request = {**REQUEST, "principal": {"id": who, "roles": ["sre"]}}
        env.client.post("/api/v1/evaluate", json=request, headers=user)
    env.clock.advance(120)
    env.client.post("/api/v1/evaluate", json=REQUEST, headers=user)
    current = env.client.get("/api/v1/metrics/current", headers=admin).json()
    assert current["decisions"] == 4 and current["decisions_by_effect"] == {
        "ALLOW": 3,
        "DENY": 1,
    }
    assert current["cache"]["hits"] >= 1 and 0 < current["cache"]["hit_ratio"] <= 1
    assert current["audit"]["records"] == 4 and current["rules"] == 2
    history = env.client.get(
        "/api/v1/metrics/historical?from=2026-11-26T09:59:00Z&to=2026-11-26T10:05:00Z",
        headers=admin,
    ).json()
    assert history["step"] == 60 and len(history["points"]) == 6
    assert [p["total"] for p in history["points"]] == [0, 3, 0, 1, 0, 0]
    assert sum(p["deny"] for p in history["points"]) == 1
    wide = env.client.get(
        "/api/v1/metrics/historical?from=2000-01-01T00:00:00Z&step=1", headers=admin
    ).json()
    assert wide["clamped"] is True and len(wide["points"]) <= 1000
    assert sum(p["total"] for p in wide["points"]) == 4
    default = env.client.get("/api/v1/metrics/historical", headers=admin).json()
    assert len(default["points"]) == 60 and sum(p["total"] for p in default["points"]) == 4
    counts = env.client.get("/api/v1/metrics/policy-evaluation-counts", headers=admin).json()
    assert counts["totals"] == {"ALLOW": 3, "DENY": 1}
    assert {(i["rule"], i["effect"], i["count"]) for i in counts["items"]} == {
        ("sre-may-restart", "ALLOW", 3),
        ("sre-may-restart", "DENY", 1),
        ("no-prod-on-friday", "DENY", 1),
    }
    far = (
        "from=nope",
        "step=-1",
        "from=2026-11-27T00:00:00Z&to=2026-11-26T00:00:00Z",
        "from=0001-01-01T00:00:00%2B01:00",
        "to=0001-01-01T00:10:00Z",
        "to=9999-12-31T23:59:59-01:00",
    )
    for query in far:
        assert (
            env.client.get(f"/api/v1/metrics/historical?{query}", headers=admin).status_code == 422
        ), query
    text = env.client.get("/metrics").text
    assert 'aegis_decisions_total{effect="ALLOW"} 3.0' in text
    assert "aegis_decision_cache_hit_ratio" in text and "aegis_audit_queue_depth" in text
    assert env.client.get("/api/v1/metrics/current", headers=user).status_code == 403


def test_settings_are_typed_validated_audited_and_admin_only(env: Env) -> None:
    admin, user = _setup(env)
    got = env.client.get("/api/v1/settings", headers=admin).json()
    assert got["evaluate_batch_max"] == 100
    for bad in (
        {"evaluate_batch_max": 0},
        {"evaluate_batch_max": "5"},
        {"decision_cache_ttl": 61},
        {"audit_mask_paths": ["a b"]},
        {"unknown": 1},
    ):
        assert env.client.put("/api/v1/settings", json=bad, headers=admin).status_code == 422
    assert (
        env.client.put("/api/v1/settings", json={"evaluate_batch_max": 5}, headers=user).status_code
        == 403
    )
    assert env.client.get("/api/v1/settings", headers=user).status_code == 403
    put = env.client.put(
        "/api/v1/settings",
        json={
            "evaluate_batch_max": 5,
            "audit_mask_paths": ["principal.email"],
            "decision_cache_ttl": 5,
        },
        headers=admin,
    )
    assert put.status_code == 200 and put.json()["evaluate_batch_max"] == 5
    assert env.client.get("/api/v1/settings", headers=admin).json() == put.json()
    events = env.client.get("/api/v1/audit/events?action=settings_updated", headers=admin)
    assert events.json()["items"][0]["details"]["changed"]["evaluate_batch_max"] == [100, 5]
    request = {**REQUEST, "principal": {"id": "alice", "email": "a@x.org", "roles": []}}
    assert env.client.post("/api/v1/evaluate", json=request, headers=user).status_code == 200
    record = env.client.get("/api/v1/audit/decisions", headers=admin).json()["items"][-1]
    assert record["request"]["principal"]["email"] == "***"


def test_AUD5_no_decision_without_its_record(env: Env) -> None:
    admin, user = _setup(env)
    assert _create(env, admin).status_code == 201
    assert env.client.post("/api/v1/evaluate", json=REQUEST, headers=user).status_code == 200
    env.app.state.aegis.policies.sink.close()  # the store is gone: appends now fail
    refused = env.client.post("/api/v1/evaluate", json=REQUEST, headers=user)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "service.unavailable"
    assert "decision" not in refused.json()
    batch = env.client.post("/api/v1/evaluate/batch", json={"requests": [REQUEST]}, headers=user)
    assert batch.status_code == 503
    current = env.client.get("/api/v1/metrics/current", headers=admin).json()
    assert current["audit"]["failures"] == 2 and current["decisions_by_effect"]["ALLOW"] == 1
    assert "aegis_decision_audit_failures_total 2.0" in env.client.get("/metrics").text


def test_numbers_are_read_as_aegis_eval_reads_them(env: Env) -> None:
    admin, user = _setup(env)
    source = 'allow "tenth" {\n    resource.size == 0.1\n}\n'
    assert _create(env, admin, "tenth", source).status_code == 201
    body = '{"principal": {}, "action": "a", "resource": {"size": %s}}'
    headers = {**user, "Content-Type": "application/json"}
    exact = env.client.post("/api/v1/evaluate", content=body % "0.1", headers=headers)
    assert exact.json()["decision"] == "ALLOW"
    close = env.client.post(
        "/api/v1/evaluate", content=body % "0.10000000000000000001", headers=headers
    )
    assert close.json()["decision"] == "DENY"  # a float would have rounded it to 0.1
