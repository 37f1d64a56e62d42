"""Signed model files and a versioned model registry.

A saved model is a folder with two files:

* ``model.joblib`` — the pickled estimator (joblib);
* ``manifest.json`` — format, version, creation time, library versions, model class, feature
  names, training-data hash, metrics, the SHA-256 of ``model.joblib`` and an HMAC-SHA256
  ``signature`` over the canonical JSON of everything else in the manifest.

Loading reads both files once, verifies the HMAC (constant-time) with the configured key,
checks the model bytes against the signed SHA-256 and checks that the pickle was written by a
compatible scikit-learn (same major.minor) and Aegis format; only then are the *same bytes*
unpickled. An unsigned, tampered or incompatible model raises
:class:`~aegis.detectors.ModelIntegrityError` and is never unpickled: unpickling runs code, so a
model file must never be trusted because of where it sits.

The key comes from configuration: an explicit ``key`` argument, else the ``AEGIS_MODEL_KEY``
environment variable (at least 16 bytes).

:class:`ModelRegistry` keeps versions under ``DIR/versions/vN/`` and the promotion history in
``DIR/registry.json`` (written atomically). ``promote`` makes a version current; ``rollback``
returns to the previously promoted one. The pointer file is not signed: whoever can write it
can only choose among signed versions.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import platform
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis.detectors.errors import DetectorError, ModelIntegrityError
from aegis.errors import ConfigurationError

__all__ = [
    "FORMAT",
    "KEY_ENV",
    "ModelRegistry",
    "ModelVersion",
    "data_hash",
    "load_model",
    "read_manifest",
    "save_model",
]

FORMAT = "aegis-model/1"
"""The manifest format this version writes and accepts."""

KEY_ENV = "AEGIS_MODEL_KEY"
"""Environment variable holding the model signing key."""

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
_MIN_KEY = 16


def _resolve_key(key: bytes | str | None) -> bytes:
    if key is None:
        env = os.environ.get(KEY_ENV)
        if not env:
            raise ConfigurationError(
                f"no model signing key: pass `key` or set the `{KEY_ENV}` environment variable"
            )
        key = env
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if len(raw) < _MIN_KEY:
        raise ConfigurationError(f"the model signing key must be at least {_MIN_KEY} bytes")
    return raw


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _sign(manifest: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(manifest), hashlib.sha256).hexdigest()


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("aegis", "scikit-learn", "numpy", "pandas", "joblib"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _major_minor(v: str) -> tuple[str, ...]:
    return tuple(v.split(".")[:2])


def data_hash(X: Any) -> str:
    """SHA-256 of a training table (values as float64 bytes, plus column names if any)."""
    from aegis.detectors.features import as_matrix

    arr, names = as_matrix(X)
    digest = hashlib.sha256()
    digest.update(json.dumps(names or []).encode())
    digest.update(repr(arr.shape).encode())
    digest.update(arr.tobytes())
    return "sha256:" + digest.hexdigest()


def _feature_names(model: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    n = getattr(model, "n_features_in_", None)
    return [f"m{i}" for i in range(int(n))] if n is not None else []


def save_model(
    model: Any,
    directory: str | Path,
    *,
    key: bytes | str | None = None,
    version: str = "v1",
    training_data: Any = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` and its signed manifest into ``directory`` (created if needed).

    Args:
        model: a fitted estimator.
        directory: target folder.
        key: signing key (default: ``$AEGIS_MODEL_KEY``).
        version: version label recorded in the manifest.
        training_data: the training table, hashed into the manifest.
        metrics: numbers to record (fit time, evaluation scores...).

    Returns:
        The manifest written.

    Raises:
        ConfigurationError: no or too short key.
    """
    import joblib

    secret = _resolve_key(key)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    payload = buffer.getvalue()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "libraries": _library_versions(),
        "feature_names": _feature_names(model),
        "training_data_hash": None if training_data is None else data_hash(training_data),
        "metrics": dict(metrics or {}),
        "model_file": MODEL_FILE,
        "model_sha256": hashlib.sha256(payload).hexdigest(),
    }
    manifest["signature"] = _sign(manifest, secret)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / MODEL_FILE, payload)
    _atomic_write(folder / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a saved model, unverified (for listings; never trust it to load).

    Raises:
        ModelIntegrityError: the manifest is missing or not JSON.
    """
    path = Path(directory) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelIntegrityError(f"no manifest in `{directory}`: the model is unsigned") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelIntegrityError(f"the manifest in `{directory}` is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelIntegrityError(f"the manifest in `{directory}` is not a JSON object")
    return data


def load_model(directory: str | Path, *, key: bytes | str | None = None) -> Any:
    """Verify a saved model, then unpickle it.

    Raises:
        ModelIntegrityError: unsigned, tampered (manifest or model bytes) or incompatible; the
            file is then never unpickled.
        ConfigurationError: no or too short key.
    """
    import joblib
    import sklearn

    secret = _resolve_key(key)
    manifest = read_manifest(directory)
    signature = manifest.get("signature")
    if not isinstance(signature, str) or not signature:
        raise ModelIntegrityError(f"the model in `{directory}` is unsigned: refusing to load it")
    if not hmac.compare_digest(signature, _sign(manifest, secret)):
        raise ModelIntegrityError(
            f"the manifest in `{directory}` fails its signature check (tampered, or signed "
            "with another key): refusing to load it"
        )
    if manifest.get("format") != FORMAT:
        raise ModelIntegrityError(
            f"the model in `{directory}` has format `{manifest.get('format')}`, "
            f"this version reads `{FORMAT}`"
        )
    trained_with = str(manifest.get("libraries", {}).get("scikit-learn", "unknown"))
    if _major_minor(trained_with) != _major_minor(sklearn.__version__):
        raise ModelIntegrityError(
            f"the model in `{directory}` was built with scikit-learn {trained_with}, "
            f"this is {sklearn.__version__}: retrain it"
        )
    try:
        payload = (Path(directory) / MODEL_FILE).read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read the model file in `{directory}`: {exc}") from exc
    if not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), str(manifest["model_sha256"])):
        raise ModelIntegrityError(
            f"the model file in `{directory}` does not match its signed hash (tampered): "
            "refusing to load it"
        )
    try:
        return joblib.load(io.BytesIO(payload))
    except Exception as exc:  # verified bytes that still do not load: incompatible
        raise ModelIntegrityError(f"the model in `{directory}` cannot be loaded: {exc}") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version (its manifest is unverified until loaded).

    Attributes:
        version: ``"v1"``, ``"v2"``...
        path: its folder.
        manifest: the manifest as read.
        current: whether it is the promoted version.
    """

    version: str
    path: Path
    manifest: Mapping[str, Any]
    current: bool


_VERSION = re.compile(r"^v(\d+)$")


class ModelRegistry:
    """A folder of signed model versions with promotion and rollback.

    Args:
        root: the registry folder (created on first write).
        key: signing key (default: ``$AEGIS_MODEL_KEY``), resolved when needed.

    Example:
        >>> import numpy as np, tempfile
        >>> from aegis.detectors import AnomalyDetector, ModelRegistry
        >>> X = np.random.default_rng(0).normal(size=(200, 3))
        >>> reg = ModelRegistry(tempfile.mkdtemp(), key="0123456789abcdef")
        >>> reg.register(AnomalyDetector(n_estimators=5).fit(X), training_data=X, promote=True)
        'v1'
        >>> type(reg.load()).__name__
        'AnomalyDetector'
    """

    def __init__(self, root: str | Path, *, key: bytes | str | None = None) -> None:
        self.root = Path(root)
        self._key = key

    # -- state ---------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        path = self.root / "registry.json"
        if not path.exists():
            return {"current": None, "history": []}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DetectorError(f"the registry file `{path}` is unreadable: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("history", []), list):
            raise DetectorError(f"the registry file `{path}` is malformed")
        return {"current": data.get("current"), "history": list(data.get("history", []))}

    def _save_state(self, state: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / "registry.json", json.dumps(state, indent=2).encode())

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        folder = self.root / "versions"
        if not folder.is_dir():
            return []
        current = self.current()
        found = []
        for child in folder.iterdir():
            match = _VERSION.match(child.name)
            if match and child.is_dir():
                try:
                    manifest = read_manifest(child)
                except ModelIntegrityError:
                    manifest = {}
                found.append((int(match.group(1)), child, manifest))
        return [
            ModelVersion(f"v{n}", path, manifest, f"v{n}" == current)
            for n, path, manifest in sorted(found, key=lambda item: item[0])
        ]

    def current(self) -> str | None:
        """The promoted version, or ``None``."""
        value = self._state()["current"]
        return str(value) if value else None

    # -- changes -------------------------------------------------------------------------
    def register(
        self,
        model: Any,
        *,
        training_data: Any = None,
        metrics: Mapping[str, Any] | None = None,
        promote: bool = False,
    ) -> str:
        """Save ``model`` as the next version; optionally promote it. Returns the version."""
        existing = [int(v.version[1:]) for v in self.versions()]
        version = f"v{max(existing, default=0) + 1}"
        save_model(
            model,
            self.root / "versions" / version,
            key=self._key,
            version=version,
            training_data=training_data,
            metrics=metrics,
        )
        if promote:
            self.promote(version)
        return version

    def promote(self, version: str) -> None:
        """Make ``version`` current (after verifying its signature).

        Raises:
            DetectorError: no such version.
            ModelIntegrityError: the version does not verify.
        """
        self._verify(version)
        state = self._state()
        state["current"] = version
        state["history"].append(version)
        self._save_state(state)

    def rollback(self) -> str:
        """Return to the version promoted before the current one; returns it.

        Raises:
            DetectorError: nothing to roll back to.
        """
        state = self._state()
        history: list[str] = state["history"]
        current = state["current"]
        previous = [v for v in history if v != current]
        if not previous:
            raise DetectorError("no earlier promoted version to roll back to")
        target = previous[-1]
        self._verify(target)
        while history and history[-1] != target:
            history.pop()
        state["current"] = target
        self._save_state(state)
        return target

    def load(self, version: str | None = None) -> Any:
        """Verify and load ``version`` (default: the current one).

        Raises:
            DetectorError: no such version, or nothing promoted yet.
            ModelIntegrityError: the files do not verify; nothing is unpickled.
        """
        chosen = version or self.current()
        if chosen is None:
            raise DetectorError(f"no promoted model in `{self.root}`")
        return load_model(self._folder(chosen), key=self._key)

    def manifest(self, version: str | None = None) -> dict[str, Any]:
        """The (unverified) manifest of ``version`` (default: current)."""
        chosen = version or self.current()
        if chosen is None:
            raise DetectorError(f"no promoted model in `{self.root}`")
        return read_manifest(self._folder(chosen))

    def _folder(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise DetectorError(f"invalid version `{version}` (expected v1, v2...)")
        folder = self.root / "versions" / version
        if not folder.is_dir():
            raise DetectorError(f"no version `{version}` in `{self.root}`")
        return folder

    def _verify(self, version: str) -> None:
        folder = self._folder(version)
        manifest = read_manifest(folder)
        secret = _resolve_key(self._key)
        signature = manifest.get("signature")
        if not isinstance(signature, str) or not hmac.compare_digest(
            signature, _sign(manifest, secret)
        ):
            raise ModelIntegrityError(f"version `{version}` fails its signature check")
        payload = (folder / MODEL_FILE).read_bytes()
        if hashlib.sha256(payload).hexdigest() != manifest.get("model_sha256"):
            raise ModelIntegrityError(f"version `{version}` does not match its signed hash")
