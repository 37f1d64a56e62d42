"""Compiled-set snapshots (aegis.engine._snapshot): a set restored from its snapshot decides
exactly as one compiled from its texts, and a snapshot that is damaged, planted or unsafe to
trust is never used to decide."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aegis.engine import EngineError, InvalidRequestError, PolicyEngine, _snapshot
from aegis.engine._snapshot import SnapshotStore, default_store, snapshot_key
from aegis.lang import ast, load_texts

_NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshot small sets too (the default leaves sets under 100 rules alone)."""
    monkeypatch.setattr(_snapshot, "MIN_RULES", 0)


SOURCE = {
    "ops.aegis": """# operations
@owner("sre")
allow "sre-restart" {
    action == "restart_pod"
    "sre" in principal.roles
    resource.namespace in ["prod", "staging"]   # the two clusters
    time.hour in 8..18
}

deny "freeze" {
    action in ["scale", "restart_pod"]
    resource.labels["freeze"] == true
    reason "change freeze"
}
""",
    "berlin.aegis": """timezone "Europe/Berlin"

allow "night-scale" {
    action == "scale"
    time.hour in 0..5
    resource.replicas < 10 or not (has resource.replicas)
}

deny "bad-replicas" { action == "scale" resource.replicas > "x" }
""",
}

REQUESTS: list[dict[str, Any]] = [
    {"principal": {"roles": ["sre"]}, "action": "restart_pod",
     "resource": {"namespace": "prod"}, "context": {"time": "2026-11-26T10:00:00Z"}},
    {"principal": {"roles": ["sre"]}, "action": "restart_pod",
     "resource": {"namespace": "prod", "labels": {"freeze": True}},
     "context": {"time": "2026-11-26T10:00:00Z"}},
    {"principal": {"roles": []}, "action": "scale", "resource": {"replicas": 3},
     "context": {"time": "2026-11-26T01:00:00Z"}},
    {"principal": {"roles": "sre"}, "action": "scale", "resource": {},
     "context": {"time": 1795800697}},
    {"principal": {}, "action": "delete", "resource": {}, "context": {"time": 0}},
]  # fmt: skip


def _decide(engine: PolicyEngine, request: Any) -> Any:
    try:
        return engine.evaluate(request)
    except InvalidRequestError as exc:
        return ("invalid", str(exc))


def _restored(texts: dict[str, str], directory: Path) -> PolicyEngine:
    """An engine restored from the snapshot its first load left in ``directory``."""
    PolicyEngine.from_texts(texts, compiled_cache=directory)
    engine = PolicyEngine.from_texts(texts, compiled_cache=directory)
    assert not isinstance(engine._compiled._source, type(load_texts({}))), "not restored"
    return engine


def test_a_restored_set_decides_as_a_compiled_one(tmp_path: Path) -> None:
    fresh = PolicyEngine(load_texts(SOURCE), compiled_cache=False)
    restored = _restored(SOURCE, tmp_path)
    for request in REQUESTS:
        assert _decide(restored, request) == _decide(fresh, request)
    # an erroring deny rule needs its reference evaluation: the rule comes from its slice
    assert restored.evaluate(REQUESTS[3]).errors == fresh.evaluate(REQUESTS[3]).errors
    assert restored.evaluate(REQUESTS[3]).errors
    assert restored.version == fresh.version
    assert restored.reads == fresh.reads
    assert repr(restored) == repr(fresh)
    assert restored.policy_set == fresh.policy_set  # loaded from the texts when asked for


def test_rules_parsed_from_their_slices_are_the_rules_of_the_whole_file(tmp_path: Path) -> None:
    whole = load_texts(SOURCE)
    restored = _restored(SOURCE, tmp_path)
    rule_at = restored._compiled._rule_at
    for position, rule in enumerate(whole.rules):
        sliced = rule_at(position)
        assert sliced == rule
        assert [(type(n), getattr(n, "span", None)) for n in _nodes(sliced)] == [
            (type(n), getattr(n, "span", None)) for n in _nodes(rule)
        ]
        assert (sliced.span, sliced.name_span, sliced.reason_span) == (
            rule.span, rule.name_span, rule.reason_span)  # fmt: skip
        assert [a.span for a in sliced.annotations] == [a.span for a in rule.annotations]


def _nodes(rule: ast.Rule) -> Iterator[Any]:
    for condition in rule.conditions:
        yield from ast.walk(condition)


def test_the_snapshot_is_used_through_a_loaded_set_too(tmp_path: Path) -> None:
    PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    policy_set = load_texts(SOURCE)
    engine = PolicyEngine(policy_set, compiled_cache=tmp_path)
    assert engine._compiled._source is policy_set  # restored, with the loaded rules
    for request in REQUESTS:
        assert _decide(engine, request) == _decide(PolicyEngine(policy_set), request)


def test_from_paths_uses_the_snapshot(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text in SOURCE.items():
        (policies / name).write_text(text)
    cache = tmp_path / "cache"
    first = PolicyEngine.from_paths([policies], compiled_cache=cache)
    second = PolicyEngine.from_paths([policies], compiled_cache=cache)
    assert len(list(cache.glob("*.json"))) == 1
    assert second.version == first.version
    (policies / "ops.aegis").write_text(SOURCE["ops.aegis"].replace("8..18", "9..17"))
    third = PolicyEngine.from_paths([policies], compiled_cache=cache)
    assert third.version != first.version  # another content: another snapshot
    assert len(list(cache.glob("*.json"))) == 2


def test_the_key_covers_names_texts_and_the_format() -> None:
    key = snapshot_key(SOURCE)
    assert key == snapshot_key(dict(reversed(list(SOURCE.items()))))
    assert key != snapshot_key({**SOURCE, "ops.aegis": SOURCE["ops.aegis"] + " "})
    renamed = {("x" + name): text for name, text in SOURCE.items()}
    assert key != snapshot_key(renamed)
    # name/text boundaries are length-prefixed: moving text between them changes the key
    assert snapshot_key({"ab": "c"}) != snapshot_key({"a": "bc"})


def _only_snapshot(directory: Path) -> Path:
    (found,) = directory.glob("*.json")
    return found


def test_a_damaged_snapshot_is_ignored_removed_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    path = _only_snapshot(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "aegis.engine"):
        engine = PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    assert "checksum" in caplog.text
    assert isinstance(engine._compiled._source, type(load_texts({})))  # compiled from texts
    assert path.read_bytes() != bytes(data)  # a good snapshot took its place
    for request in REQUESTS:
        assert _decide(engine, request) == _decide(PolicyEngine(load_texts(SOURCE)), request)


def _rewrite(path: Path, change: Any) -> None:
    """Change a snapshot's payload and make its checksum match again (a planted file)."""
    import json

    header, _, payload = path.read_bytes().partition(b"\n")
    data = json.loads(payload)
    change(data)
    payload = json.dumps(data).encode()
    parts = header.split(b" ")
    parts[3] = hashlib.sha256(payload).hexdigest().encode()
    path.write_bytes(b" ".join(parts) + b"\n" + payload)


def test_a_malformed_snapshot_with_a_good_checksum_is_ignored(tmp_path: Path) -> None:
    PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    path = _only_snapshot(tmp_path)

    def break_members(data: dict[str, Any]) -> None:
        data["index"]["members"] = [99, 100]

    _rewrite(path, break_members)
    engine = PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    assert isinstance(engine._compiled._source, type(load_texts({})))
    assert engine.evaluate(REQUESTS[0]) == PolicyEngine(load_texts(SOURCE)).evaluate(REQUESTS[0])


def test_a_snapshot_of_other_rules_fails_closed(tmp_path: Path) -> None:
    PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    path = _only_snapshot(tmp_path)

    def rename(data: dict[str, Any]) -> None:
        for outcome in data["outcomes"]:
            outcome[0] = "other-" + outcome[0]

    _rewrite(path, rename)
    engine = PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    with pytest.raises(EngineError, match="does not match the policy texts"):
        engine.evaluate(REQUESTS[0])  # its first candidate rule is not what the texts say

    PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path / "b")
    other = _only_snapshot(tmp_path / "b")
    _rewrite(other, lambda data: data.update(version="0" * 64))
    engine = PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path / "b")
    with pytest.raises(EngineError, match="does not match its policy texts"):
        _ = engine.policy_set


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_directory_others_may_write_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    with caplog.at_level(logging.WARNING, "aegis.engine"):
        PolicyEngine.from_texts(SOURCE, compiled_cache=directory)
        PolicyEngine.from_texts(SOURCE, compiled_cache=directory)
    assert not list(directory.iterdir())
    assert caplog.text.count("writable by nobody else") == 1  # said once per store
    # a snapshot planted there is not read either
    directory.chmod(0o700)
    PolicyEngine.from_texts(SOURCE, compiled_cache=directory)
    directory.chmod(0o775)
    engine = PolicyEngine.from_texts(SOURCE, compiled_cache=directory)
    assert isinstance(engine._compiled._source, type(load_texts({})))


def test_new_directories_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "compiled"
    PolicyEngine.from_texts(SOURCE, compiled_cache=directory)
    assert directory.stat().st_mode & 0o777 == 0o700


def test_off_means_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    PolicyEngine.from_texts(SOURCE, compiled_cache=False)
    monkeypatch.setenv("AEGIS_COMPILED_CACHE", "off")
    assert default_store() is None
    monkeypatch.setenv("AEGIS_COMPILED_CACHE", str(tmp_path))
    store = default_store()
    assert store is not None and store.directory == tmp_path
    monkeypatch.delenv("AEGIS_COMPILED_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = default_store()
    assert store is not None and store.directory == tmp_path / "xdg" / "aegis" / "compiled"


def test_small_sets_leave_no_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_snapshot, "MIN_RULES", 100)
    PolicyEngine.from_texts(SOURCE, compiled_cache=tmp_path)
    assert not list(tmp_path.glob("*.json"))


def test_the_store_keeps_a_bounded_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_snapshot, "MAX_ENTRIES", 3)
    store = SnapshotStore(tmp_path)
    for i in range(6):
        store.store(f"{i:064x}", {"n": i})
        os.utime(tmp_path / f"{i:064x}.json", (i, i))
    assert sorted(p.name[-6:] for p in tmp_path.glob("*.json")) == [
        "3.json", "4.json", "5.json"]  # fmt: skip
    assert store.load(f"{5:064x}") == {"n": 5}


def test_a_rule_the_fast_parser_declines_comes_from_the_grammar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aegis.engine import _snapshot as module

    restored = _restored(SOURCE, tmp_path)
    monkeypatch.setattr(module, "fast_parse_rule", lambda *args, **kwargs: None)
    fresh = PolicyEngine(load_texts(SOURCE), compiled_cache=False)
    for request in REQUESTS:
        assert _decide(restored, request) == _decide(fresh, request)


def test_a_restored_set_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    """Rules parse and compile on first use while eight threads decide at once."""
    import threading

    rules = "\n".join(
        f'allow "r{i:03d}" {{ action == "a{i % 7}" resource.namespace == "ns{i % 11}" '
        f'"x{i % 5}" in principal.roles }}\ndeny "d{i:03d}" {{ action == "a{i % 7}" '
        f"resource.replicas > {i % 13} }}"
        for i in range(150)
    )
    texts = {"many.aegis": rules}
    stream = [
        {"principal": {"roles": [f"x{i % 5}"]}, "action": f"a{i % 7}",
         "resource": {"namespace": f"ns{i % 11}", **({"replicas": i % 17} if i % 3 else {})}}
        for i in range(400)
    ]  # fmt: skip
    fresh = PolicyEngine(load_texts(texts), compiled_cache=False)
    expected = [fresh.evaluate(r, now=_NOW) for r in stream]
    restored = _restored(texts, tmp_path)
    failures: list[str] = []
    start = threading.Barrier(8)

    def work(offset: int) -> None:
        start.wait()
        for i in range(len(stream)):
            j = (i * 7 + offset * 50) % len(stream)
            if restored.evaluate(stream[j], now=_NOW) != expected[j]:
                failures.append(f"request {j}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
