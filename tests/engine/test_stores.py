"""Policy stores: atomic swap, last good set on a broken edit, version == content."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from aegis.engine.errors import PolicyStoreError
from aegis.engine.stores import DirectoryPolicyStore, InMemoryPolicyStore, PolicyStore
from aegis.errors import ConfigurationError
from aegis.lang import PolicyLoadError, PolicySet

READ = 'allow "read" { action == "read" }\n'
WRITE = 'allow "write" { action == "write" }\n'
BROKEN = 'allow "oops" { action == }\n'


def _names(policy_set: PolicySet) -> list[str]:
    return [rule.name for rule in policy_set.rules]


# ---------------------------------------------------------------- in memory


def test_in_memory_update_swaps_and_notifies() -> None:
    store = InMemoryPolicyStore({"a.aegis": READ})
    assert isinstance(store, PolicyStore)
    seen: list[str] = []
    unsubscribe = store.subscribe(lambda new: seen.append(new.version))
    old = store.version
    new = store.update({"a.aegis": READ, "b.aegis": WRITE})
    assert store.current() is new
    assert _names(new) == ["read", "write"]
    assert seen == [new.version] != [old]
    unsubscribe()
    store.update({"a.aegis": READ})
    assert len(seen) == 1


def test_in_memory_broken_update_keeps_the_set_all_or_nothing() -> None:
    store = InMemoryPolicyStore({"a.aegis": READ})
    before = store.current()
    with pytest.raises(PolicyLoadError):
        store.update({"a.aegis": READ, "b.aegis": BROKEN})
    assert store.current() is before
    assert store.last_error is not None
    store.update({"a.aegis": WRITE})
    assert store.last_error is None


def test_in_memory_version_ignores_layout_comments_and_file_names() -> None:
    store = InMemoryPolicyStore({"a.aegis": READ})
    seen: list[PolicySet] = []
    store.subscribe(seen.append)
    version = store.version
    store.update({"renamed.aegis": '# comment\nallow "read" {\n  action == "read"\n}\n'})
    assert store.version == version
    assert seen == []


def test_empty_store_denies_everything() -> None:
    assert InMemoryPolicyStore().current().rules == ()


def test_listener_failure_does_not_stop_others() -> None:
    store = InMemoryPolicyStore()
    seen: list[str] = []

    def bad(_: PolicySet) -> None:
        raise RuntimeError("boom")

    store.subscribe(bad)
    store.subscribe(lambda new: seen.append(new.version))
    store.update({"a.aegis": READ})
    assert seen == [store.version]


# ---------------------------------------------------------------- directory


def _write(path: Path, text: str) -> None:
    """Write and move the mtime forward, so that coarse filesystem clocks still see a change."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    stat = path.stat()
    if stat.st_mtime_ns <= old:
        os.utime(path, ns=(stat.st_atime_ns, old + 1_000_000))


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "a.aegis", READ)
    _write(tmp_path / "sub" / "b.aegis", WRITE)
    (tmp_path / "notes.txt").write_text("not a policy")
    return tmp_path


def test_directory_loads_recursively(policy_dir: Path) -> None:
    with DirectoryPolicyStore(policy_dir, poll_interval=None) as store:
        assert isinstance(store, PolicyStore)
        assert _names(store.current()) == ["read", "write"]
        assert store.last_error is None
        assert store.refresh() is False


def test_directory_change_swaps_and_notifies(policy_dir: Path) -> None:
    store = DirectoryPolicyStore(policy_dir, poll_interval=None)
    seen: list[PolicySet] = []
    store.subscribe(seen.append)
    _write(policy_dir / "c.aegis", 'deny "freeze" { action == "write" }\n')
    assert store.refresh() is True
    assert _names(store.current()) == ["freeze", "read", "write"]
    assert seen == [store.current()]
    (policy_dir / "c.aegis").unlink()
    assert store.refresh() is True
    assert _names(store.current()) == ["read", "write"]


def test_directory_broken_edit_keeps_last_good_set_and_reports(policy_dir: Path) -> None:
    store = DirectoryPolicyStore(policy_dir, poll_interval=None)
    good = store.current()
    _write(policy_dir / "a.aegis", BROKEN)
    assert store.refresh() is False
    assert store.current() is good
    assert isinstance(store.last_error, PolicyLoadError)
    assert store.diagnostics
    assert store.diagnostics[0].span.file.endswith("a.aegis")
    assert store.refresh() is False  # unchanged broken content is not reloaded
    _write(policy_dir / "a.aegis", READ)  # reverted: the served content again
    assert store.refresh() is False
    assert store.last_error is None
    _write(policy_dir / "a.aegis", BROKEN)
    assert store.refresh() is False
    assert isinstance(store.last_error, PolicyLoadError)
    _write(policy_dir / "a.aegis", 'allow "read" { action in ["read", "list"] }\n')
    assert store.refresh() is True
    assert store.last_error is None
    assert store.diagnostics == ()


def test_directory_touch_or_comment_keeps_the_version(policy_dir: Path) -> None:
    store = DirectoryPolicyStore(policy_dir, poll_interval=None)
    seen: list[PolicySet] = []
    store.subscribe(seen.append)
    version = store.version
    stat = (policy_dir / "a.aegis").stat()
    os.utime(policy_dir / "a.aegis", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert store.refresh() is False
    _write(policy_dir / "a.aegis", "# only a comment changed\n" + READ)
    assert store.refresh() is False
    assert store.version == version
    assert seen == []
    # but the served sources follow the file, for diagnostics' source lines
    assert any("# only a comment" in text for text in store.current().sources.values())


def test_directory_initial_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyStoreError):
        DirectoryPolicyStore(tmp_path / "absent", poll_interval=None)
    with pytest.raises(ConfigurationError):
        DirectoryPolicyStore(tmp_path, poll_interval=0)
    _write(tmp_path / "a.aegis", BROKEN)
    with pytest.raises(PolicyLoadError):
        DirectoryPolicyStore(tmp_path, poll_interval=None)


def test_directory_removed_keeps_serving(
    policy_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = DirectoryPolicyStore(policy_dir, poll_interval=None)
    good = store.current()
    moved = tmp_path_factory.mktemp("moved") / "p"
    policy_dir.rename(moved)
    assert store.refresh() is False
    assert store.current() is good
    assert isinstance(store.last_error, PolicyStoreError)
    assert store.diagnostics == ()
    moved.rename(policy_dir)
    assert store.refresh() is False  # same content as the served set
    assert store.last_error is None


def test_background_polling_picks_up_changes(policy_dir: Path) -> None:
    changed = threading.Event()
    with DirectoryPolicyStore(policy_dir, poll_interval=0.02) as store:
        store.subscribe(lambda _: changed.set())
        _write(policy_dir / "a.aegis", 'allow "read2" { action == "read" }\n')
        assert changed.wait(5), "the poller never reloaded"
        assert _names(store.current()) == ["read2", "write"]


def test_readers_never_see_a_partial_set(policy_dir: Path) -> None:
    """Readers racing a writer only ever see complete sets: both files' rules, or a good old set."""
    store = DirectoryPolicyStore(policy_dir, poll_interval=None)
    stop = threading.Event()
    bad: list[list[str]] = []

    def read() -> None:
        while not stop.is_set():
            names = _names(store.current())
            if "write" not in names or len(names) != 2:
                bad.append(names)
            time.sleep(0)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    versions = {store.version}
    for i in range(20):
        _write(policy_dir / "a.aegis", f'allow "read{i}" {{ action == "read" }}\n')
        store.refresh()
        versions.add(store.version)
    stop.set()
    for t in readers:
        t.join()
    assert bad == []
    assert len(versions) == 21
