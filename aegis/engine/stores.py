"""Policy stores: where an engine gets its current policy set, and hears about new ones.

A store always serves a complete, valid set. A new set replaces the current one in a single
reference assignment (an atomic swap: a reader sees the old set or the new one, never a mix),
and only after it has loaded without any diagnostic. When new content does not load, the
store keeps serving the last good set and exposes the failure in :attr:`last_error`.

The version of a set is its content hash (spec §6), so it changes exactly when the rules
change; editing a comment or the layout, or touching a file, keeps it. Listeners are called
only when the version changes.

Two stores ship: :class:`InMemoryPolicyStore` (texts set through the API) and
:class:`DirectoryPolicyStore` (``*.aegis`` files under a directory, hot-reloaded by polling).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from aegis.engine.errors import PolicyStoreError
from aegis.errors import ConfigurationError
from aegis.lang import Diagnostic, PolicyLoadError, PolicySet, collect_policy_files, load_paths
from aegis.lang import load_texts as _load_texts

__all__ = [
    "DirectoryPolicyStore",
    "InMemoryPolicyStore",
    "PolicyListener",
    "PolicyStore",
]

_log = logging.getLogger("aegis.engine.stores")

PolicyListener = Callable[[PolicySet], None]
"""A callback given the new current set after the version changed."""


@runtime_checkable
class PolicyStore(Protocol):
    """A source of the current policy set.

    Contract: :meth:`current` never blocks on I/O and always returns a complete, valid set;
    all methods are thread-safe; a listener is called (from the thread that installed the
    new set) once per version change, after :meth:`current` already returns the new set.
    A listener that raises is logged and does not stop the others.
    """

    @property
    def version(self) -> str:
        """The version (content hash) of the current set."""
        ...

    def current(self) -> PolicySet:
        """The current policy set."""
        ...

    def subscribe(self, listener: PolicyListener) -> Callable[[], None]:
        """Call ``listener(new_set)`` on every version change; returns an unsubscribe function."""
        ...


class _Listeners:
    """Subscription bookkeeping shared by the stores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[PolicyListener] = []

    def add(self, listener: PolicyListener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def notify(self, policy_set: PolicySet) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(policy_set)
            except Exception:
                _log.exception("policy store listener %r failed", listener)


class InMemoryPolicyStore:
    """A store whose texts are set through the API.

    Args:
        texts: the initial ``{file name: source}``; ``None`` starts with the empty set
            (which denies everything).

    Raises:
        PolicyLoadError: the initial texts do not load.

    Usage::

        store = InMemoryPolicyStore({"ops.aegis": 'allow "read" { action == "read" }'})
        store.subscribe(lambda new: print("now serving", new.version))
        store.update({"ops.aegis": 'allow "read" { action in ["read", "list"] }'})
    """

    def __init__(self, texts: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._listeners = _Listeners()
        self._set = _load_texts(dict(texts or {}))
        self._last_error: PolicyLoadError | None = None

    @property
    def version(self) -> str:
        """The version (content hash) of the current set."""
        return self._set.version

    @property
    def last_error(self) -> PolicyLoadError | None:
        """The failure of the last :meth:`update`, or ``None`` if it succeeded."""
        return self._last_error

    def current(self) -> PolicySet:
        """The current policy set."""
        return self._set

    def subscribe(self, listener: PolicyListener) -> Callable[[], None]:
        """Call ``listener(new_set)`` on every version change; returns an unsubscribe function."""
        return self._listeners.add(listener)

    def update(self, texts: Mapping[str, str]) -> PolicySet:
        """Replace the whole set by the set of ``texts``, all or nothing.

        Returns:
            The new current set.

        Raises:
            PolicyLoadError: the texts do not load; the current set stays as it was.
        """
        with self._lock:
            try:
                new = _load_texts(dict(texts))
            except PolicyLoadError as exc:
                self._last_error = exc
                raise
            self._last_error = None
            old, self._set = self._set, new
        if new.version != old.version:
            self._listeners.notify(new)
        return new


_Fingerprint = tuple[tuple[str, int, int], ...]


class DirectoryPolicyStore:
    """A store reading every ``*.aegis`` file under a directory, hot-reloaded by polling.

    Each poll lists the files with their modification time and size; if that changed, it
    hashes their bytes, and only if the bytes changed does it load the set. A set that loads
    replaces the current one atomically; one that does not is reported in
    :attr:`last_error` / :attr:`diagnostics` (and logged) while the last good set keeps being
    served. A later fix is picked up by the next poll. No dependency beyond the standard
    library: polling, not inotify, so it also works on network and container volumes.

    Args:
        path: the directory (read recursively).
        poll_interval: seconds between polls in a background daemon thread; ``None`` for no
            thread (call :meth:`refresh` yourself).

    Raises:
        PolicyStoreError: ``path`` is not a readable directory.
        PolicyLoadError: the initial content does not load (there is no good set to serve).
        ConfigurationError: ``poll_interval`` is not positive.

    Usage::

        with DirectoryPolicyStore("policies/", poll_interval=2.0) as store:
            engine_set = store.current()
    """

    def __init__(self, path: str | os.PathLike[str], poll_interval: float | None = 1.0) -> None:
        if poll_interval is not None and not poll_interval > 0:
            raise ConfigurationError(f"poll_interval `{poll_interval}` must be positive")
        self._path = Path(path)
        if not self._path.is_dir():
            raise PolicyStoreError(f"policy directory `{self._path}` does not exist")
        self._lock = threading.Lock()
        self._listeners = _Listeners()
        self._last_error: PolicyLoadError | PolicyStoreError | None = None
        fingerprint = self._fingerprint()
        digest = self._digest(fingerprint)
        self._set = load_paths([self._path])
        # INVARIANT: _served_digest hashes the bytes behind _set; _attempted is the listing
        # and digest of the newest content looked at (served or failed), None after an error.
        self._served_digest = digest
        self._attempted: tuple[_Fingerprint | None, str] = (fingerprint, digest)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if poll_interval is not None:
            self._thread = threading.Thread(
                target=self._run,
                args=(poll_interval,),
                name=f"aegis-policy-store:{self._path}",
                daemon=True,
            )
            self._thread.start()

    @property
    def path(self) -> Path:
        """The directory served."""
        return self._path

    @property
    def version(self) -> str:
        """The version (content hash) of the current set."""
        return self._set.version

    @property
    def last_error(self) -> PolicyLoadError | PolicyStoreError | None:
        """Why the newest content is not served, or ``None`` when it is."""
        return self._last_error

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """The diagnostics of :attr:`last_error` (empty when the newest content is served)."""
        error = self._last_error
        return error.diagnostics if isinstance(error, PolicyLoadError) else ()

    def current(self) -> PolicySet:
        """The last good policy set."""
        return self._set

    def subscribe(self, listener: PolicyListener) -> Callable[[], None]:
        """Call ``listener(new_set)`` on every version change; returns an unsubscribe function."""
        return self._listeners.add(listener)

    def refresh(self) -> bool:
        """Poll now: load the directory again if its content changed.

        Returns:
            Whether the version changed.
        """
        with self._lock:
            try:
                fingerprint = self._fingerprint()
                if fingerprint == self._attempted[0]:
                    return False
                digest = self._digest(fingerprint)
            except PolicyStoreError as exc:
                self._attempted = (None, self._attempted[1])  # look again next time
                self._fail(exc)
                return False
            previous_digest = self._attempted[1]
            self._attempted = (fingerprint, digest)
            if digest == self._served_digest:  # touched, or reverted to the served content
                self._last_error = None
                return False
            if digest == previous_digest:  # the same content that failed to load
                return False
            try:
                new = load_paths([self._path])
            except PolicyLoadError as exc:
                self._fail(exc)
                return False
            self._served_digest = digest
            self._last_error = None
            old, self._set = self._set, new
        if new.version == old.version:
            return False
        _log.info("policy set %s loaded from %s (was %s)", new.version, self._path, old.version)
        self._listeners.notify(new)
        return True

    def close(self) -> None:
        """Stop the polling thread (the current set stays readable)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> DirectoryPolicyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # the poller must survive anything; the set stays served
                _log.exception("policy store poll of %s failed", self._path)

    def _fail(self, error: PolicyLoadError | PolicyStoreError) -> None:
        if str(error) != str(self._last_error):
            _log.warning("policy directory %s not reloaded, serving %s: %s",
                         self._path, self._set.version, error)
        self._last_error = error

    def _fingerprint(self) -> _Fingerprint:
        try:
            files = collect_policy_files([self._path])
            if not self._path.is_dir():
                raise OSError(f"`{self._path}` is not a directory")
            entries = []
            for file in files:
                stat = file.stat()
                entries.append((str(file), stat.st_mtime_ns, stat.st_size))
        except OSError as exc:
            raise PolicyStoreError(f"cannot list policy directory `{self._path}`: {exc}") from exc
        return tuple(entries)

    @staticmethod
    def _digest(fingerprint: _Fingerprint) -> str:
        digest = hashlib.sha256()
        for name, _mtime, _size in fingerprint:
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                raise PolicyStoreError(f"cannot read policy file `{name}`: {exc}") from exc
            for part in (name.encode("utf-8", "surrogateescape"), data):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return digest.hexdigest()
