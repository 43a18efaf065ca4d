"""Versioned model artifacts: write, verify, load, activate.

Layout under the model directory (``models.path`` / ``FRAUDSTREAM_MODEL_DIR``)::

    active                      <- the active version id (replaced atomically)
    <version>/metadata.json     <- version, features, training summary, metrics, file sha256s
    <version>/isolation_forest.npz, isolation_forest.json
    <version>/autoencoder.pt,  autoencoder.json

The version id is a content hash of the files and the feature list. Loading
verifies every file's checksum first and uses only safe formats (NumPy arrays
without pickle, ``torch.load(weights_only=True)``, JSON), so a corrupt or
tampered artifact is refused with a clear message instead of being executed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.autoencoder import AutoencoderScorer
from models.base import RULES_ONLY, ModelSet, Scorer
from models.isolation_forest import IsolationForestScorer
from models.supervised import SupervisedScorer
from operators import metrics
from operators.features import FEATURE_NAMES, is_risk_feature
from operators.refresh import Throttle

__all__ = ["FORMAT", "ActiveModels", "ArtifactError", "ModelStore", "load_artifact", "write_artifact"]

log = logging.getLogger(__name__)

FORMAT = "fraudstream-model/1"
_LOADERS: dict[str, Callable[[Path, str, int], Scorer]] = {
    "isolation_forest": lambda path, device, gpu_min_rows: IsolationForestScorer.load(path),
    "autoencoder": AutoencoderScorer.load,
    "supervised": lambda path, device, gpu_min_rows: SupervisedScorer.load(path),
}


class ArtifactError(RuntimeError):
    """An artifact is missing, corrupt, tampered with or does not fit this code."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_columns(columns: list[str]) -> None:
    for col in columns:
        known = col in FEATURE_NAMES or is_risk_feature(col) or (col.startswith("attr:") and len(col) > 5)
        if not known:
            raise ArtifactError(f"feature {col!r} is not known to this version of fraudstream")


def write_artifact(
    root: Path,
    scorers: Mapping[str, Scorer],
    columns: tuple[str, ...],
    training: dict[str, Any],
    model_metrics: dict[str, Any],
    component_columns: Mapping[str, tuple[str, ...]] | None = None,
) -> str:
    """Save fitted scorers as a new version under ``root``; return the version id."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for scorer in scorers.values():
            scorer.save(tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        per_component = {n: list(c) for n, c in (component_columns or {}).items()}
        key = [files, list(columns)] + ([per_component] if per_component else [])
        version = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
        metadata = {
            "format": FORMAT,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(),
            "features": list(columns),
            "components": sorted(scorers),
            "component_features": per_component,
            "scorers": {name: s.describe() for name, s in scorers.items()},
            "training": training,
            "metrics": model_metrics,
            "files": files,
        }
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str))
        final = root / version
        if final.exists():
            shutil.rmtree(tmp)
        else:
            tmp.rename(final)
        return version
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_artifact(path: Path, device: str = "auto", gpu_min_rows: int = 0) -> ModelSet:
    """Verify and load one artifact directory as a :class:`ModelSet` (on a GPU,
    batches under ``gpu_min_rows`` rows score on the CPU)."""
    try:
        metadata = json.loads((path / "metadata.json").read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: no metadata.json (not a model artifact)") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}/metadata.json: unreadable ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise ArtifactError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    for name, expected in metadata.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: file {name} is missing")
        if _sha256(file) != expected:
            raise ArtifactError(f"{path}: checksum mismatch for {name} (corrupt or tampered)")
    columns = list(metadata.get("features", []))
    _check_columns(columns)
    scorers: dict[str, Scorer] = {}
    for name in metadata.get("components", []):
        loader = _LOADERS.get(name)
        if loader is None:
            raise ArtifactError(f"{path}: unknown component {name!r}")
        try:
            scorers[name] = loader(path, device, gpu_min_rows)
        except Exception as exc:
            raise ArtifactError(f"{path}: cannot load {name}: {type(exc).__name__}: {exc}") from exc
    per_component = {n: tuple(c) for n, c in (metadata.get("component_features") or {}).items()}
    try:
        return ModelSet(str(metadata["version"]), scorers, tuple(columns), per_component)
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc


class ModelStore:
    """The model directory: versions and the ``active`` pointer."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "metadata.json").exists())

    def pointer(self, name: str = "active") -> str | None:
        try:
            version = (self.root / name).read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def active(self) -> str | None:
        return self.pointer("active")

    def challenger(self) -> str | None:
        """The version scoring in shadow beside the active one, if any."""
        return self.pointer("challenger")

    def activate(self, version: str, pointer: str = "active") -> None:
        """Point ``active`` (or ``challenger``) at ``version`` (verified first), atomically."""
        load_artifact(self.root / version, device="cpu")
        tmp = self.root / f".{pointer}.{os.getpid()}"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / pointer)

    def clear_challenger(self) -> None:
        (self.root / "challenger").unlink(missing_ok=True)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest versions (by when they were written), never the
        active one or the challenger; returns the versions deleted."""
        pinned = {self.active(), self.challenger()}
        by_age = sorted(self.versions(), key=lambda v: (self.root / v / "metadata.json").stat().st_mtime)
        doomed = [v for v in by_age[: max(0, len(by_age) - keep)] if v not in pinned]
        for version in doomed:
            shutil.rmtree(self.root / version)
        return doomed

    def load_active(self, device: str = "auto") -> ModelSet | None:
        version = self.active()
        return None if version is None else load_artifact(self.root / version, device)


class ActiveModels:
    """Hot-swap provider: the job calls it per batch; it re-reads ``active``
    every ``refresh_s`` and swaps in a fully loaded new version. A version that
    fails to load is logged and counted, and the current models stay."""

    def __init__(
        self,
        root: Path,
        device: str = "auto",
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        pointer: str = "active",
        gpu_min_rows: int = 0,
    ) -> None:
        self.store = ModelStore(root)
        self.pointer = pointer
        self.device = device
        self.gpu_min_rows = gpu_min_rows
        self.current = RULES_ONLY
        self._throttle = Throttle(refresh_s, clock)
        self._failed: str | None = None
        self._publish()

    def __call__(self) -> ModelSet:
        if self._throttle.due():
            self._refresh()
        return self.current

    def _refresh(self) -> None:
        version = self.store.pointer(self.pointer)
        if version is None and self.pointer != "active" and self.current is not RULES_ONLY:
            log.info("models: %s %s retired", self.pointer, self.current.version)
            self.current = RULES_ONLY
            return
        if version is None or version in {self.current.version, self._failed}:
            return
        try:
            models = load_artifact(self.store.root / version, self.device, self.gpu_min_rows)
        except ArtifactError as exc:
            self._failed = version
            metrics.MODEL_LOAD_FAILURES.inc()
            log.error("models: cannot activate %s, keeping %s: %s", version, self.current.version, exc)
            return
        log.info("models: %s switched from %s to %s", self.pointer, self.current.version, models.version)
        if self.pointer == "active":
            metrics.MODEL_INFO.labels(self.current.version).set(0)
        self.current, self._failed = models, None
        self._publish()

    def _publish(self) -> None:
        if self.pointer == "active":
            metrics.MODEL_INFO.labels(self.current.version).set(1)
