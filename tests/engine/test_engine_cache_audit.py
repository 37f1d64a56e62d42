"""PolicyEngine with a decision cache and an audit sink (issue 3, items 2-4; spec §8)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aegis.engine import AuditError, PolicyEngine
from aegis.engine.audit import Masker, MemoryAuditSink, verify
from aegis.engine.cache import MemoryDecisionCache

POLICY = """
allow "sre-restart" { action == "restart_pod" "sre" in principal.roles time.hour in 8..17 }
deny "no-prod" { resource.namespace == "prod" reason "not prod" }
"""


def request(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "principal": {"id": "alice", "roles": ["sre"], "email": "a@example.com"},
        "action": "restart_pod",
        "resource": {"kind": "pod", "namespace": "staging", "name": "api-1"},
        "context": {"time": "2026-11-26T10:15:00Z", "ticket": "T-1"},
    }
    base.update(changes)
    return base


def test_requests_differing_only_in_unread_attributes_share_an_entry() -> None:
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, cache=MemoryDecisionCache())
    first = engine.evaluate(request())
    second = engine.evaluate(
        request(principal={"id": "bob", "roles": ["sre"]}, context={"time": "2026-11-26T10:59:59Z"})
    )
    assert first == second
    assert engine.stats.cache_hits == 1
    engine.evaluate(request(context={"time": "2026-11-26T18:00:00Z"}))  # hour is read
    assert engine.stats.cache_misses == 2


def test_a_new_policy_set_is_never_answered_from_the_old_sets_entries() -> None:
    cache = MemoryDecisionCache()
    old = PolicyEngine.from_texts({"p.aegis": POLICY}, cache=cache)
    assert old.evaluate(request()).allowed
    new = PolicyEngine.from_texts(
        {"p.aegis": POLICY + 'deny "freeze" { action == "restart_pod" }'}, cache=cache
    )
    decision = new.evaluate(request())
    assert not decision.allowed
    assert decision.version == new.version != old.version
    assert new.stats.cache_hits == 0


def test_CACHE1_decisions_with_errors_are_never_cached() -> None:
    cache = MemoryDecisionCache()
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, cache=cache)
    broken = request(principal={"id": "x"})  # roles missing: the allow rule errors
    assert engine.evaluate(broken).errors
    assert engine.evaluate(broken).errors
    assert engine.stats.cache_hits == 0


@pytest.mark.redis
def test_redis_cache_transparency_with_the_real_redis(redis_url: str, redis_prefix: str) -> None:
    from aegis.engine.cache.redis import RedisDecisionCache

    cache = RedisDecisionCache(url=redis_url, prefix=redis_prefix)
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, cache=cache)
    plain = PolicyEngine.from_texts({"p.aegis": POLICY})
    stream = [request(), request(resource={"namespace": "prod"}), request(action="scale")]
    for req in stream + stream:
        assert engine.evaluate(req) == plain.evaluate(req)
    assert engine.stats.cache_hits == 3


# -- audit ------------------------------------------------------------------------------------
def test_every_decision_is_audited_masked_and_chained() -> None:
    sink = MemoryAuditSink()
    engine = PolicyEngine.from_texts(
        {"p.aegis": POLICY}, audit=sink, audit_masker=Masker(["principal.email"])
    )
    engine.evaluate(request())
    engine.evaluate_many([request(), request(resource={"namespace": "prod"})])
    records = sink.records("decisions")
    assert [r.decision for r in records] == ["ALLOW", "ALLOW", "DENY"]
    assert records[2].deny == ("no-prod",) or list(records[2].deny) == ["no-prod"]
    assert verify(records).ok
    assert "a@example.com" not in json.dumps([r.to_dict() for r in records])
    assert engine.stats.audit_records == 3


class BrokenSink:
    def append(self, records: Any) -> Any:
        raise AuditError("audit store down")

    def close(self) -> None:
        pass


def test_AUD5_no_decision_without_its_audit_record() -> None:
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, audit=BrokenSink())  # type: ignore[arg-type]
    with pytest.raises(AuditError):
        engine.evaluate(request())


def test_evaluate_many_names_the_invalid_request_and_audits_nothing() -> None:
    sink = MemoryAuditSink()
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, audit=sink)
    with pytest.raises(ValueError, match="request 1"):
        engine.evaluate_many([request(), {"principal": {}}])
    assert sink.records("decisions") == []


def test_aevaluate_equals_evaluate_and_runs_concurrently() -> None:
    sink = MemoryAuditSink()
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, audit=sink, cache=MemoryDecisionCache())

    async def main() -> list[Any]:
        return await asyncio.gather(*(engine.aevaluate(request()) for _ in range(20)))

    decisions = asyncio.run(main())
    expected = engine.evaluate(request())
    assert all(d == expected for d in decisions)
    assert len(sink.records("decisions")) == 21


def test_thread_safety_with_cache_and_audit() -> None:
    sink = MemoryAuditSink()
    engine = PolicyEngine.from_texts({"p.aegis": POLICY}, audit=sink, cache=MemoryDecisionCache())
    expected = engine.evaluate(request())
    failures: list[str] = []

    def worker() -> None:
        for _ in range(50):
            if engine.evaluate(request()) != expected:
                failures.append("different")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    records = sink.records("decisions")
    assert len(records) == 401
    assert verify(records).ok


def test_eval_audit_then_verify_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "p.aegis").write_text(POLICY, "utf-8")
    req = tmp_path / "r.json"
    req.write_text(json.dumps(request()), "utf-8")
    for url in (f"sqlite:///{tmp_path / 'a.db'}", f"jsonl:{tmp_path / 'a.jsonl'}"):
        for _ in range(3):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "aegis.cli",
                    "eval",
                    "--policies",
                    str(tmp_path),
                    "--request",
                    str(req),
                    "--audit",
                    url,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        flag = "--db" if url.startswith("sqlite") else "--jsonl"
        target = url if flag == "--db" else url.removeprefix("jsonl:")
        verified = subprocess.run(
            [sys.executable, "-m", "aegis.cli", "audit", "verify", flag, target],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "3 records" in verified.stdout
