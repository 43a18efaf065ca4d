"""The scorer protocol every model implements, and the set the job scores with.

A scorer maps a feature matrix (rows = events, columns = ``FEATURE_NAMES``,
``NaN`` = missing) to anomaly scores in 0-100, one call per micro-batch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from operators.features import FEATURE_NAMES
from operators.metrics import MODEL_SECONDS

__all__ = ["COMPONENTS", "RULES_ONLY", "ModelSet", "Scorer"]

COMPONENTS: tuple[str, ...] = ("isolation_forest", "autoencoder", "supervised")
"""Model component names, as they appear in ``scores`` and in the ensemble weights."""


@runtime_checkable
class Scorer(Protocol):
    """A batch anomaly scorer (see the contract test in ``tests/models``)."""

    name: str

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> Self:
        """Fit on rows ``x`` in event-time order; ``y`` (1 = fraud) only for supervised scorers."""
        ...

    def score_batch(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores in ``[0, 100]``, one per row, higher = more anomalous."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def save(self, path: Path) -> None: ...

    @classmethod
    def load(cls, path: Path) -> Self: ...


@dataclass(frozen=True)
class ModelSet:
    """The scorers active at one moment, under one version id.

    The job swaps whole ``ModelSet`` objects, so no batch is ever scored by a
    half-loaded model.
    """

    version: str
    scorers: Mapping[str, Scorer] = field(default_factory=dict)
    columns: tuple[str, ...] = FEATURE_NAMES
    """Feature columns of the batch matrix (``FEATURE_NAMES``, risk features or ``attr:<name>``)."""
    component_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """A component's own columns when they are a subset of ``columns`` (else all of them)."""

    def __post_init__(self) -> None:
        index = {c: i for i, c in enumerate(self.columns)}
        missing = {n: [c for c in cols if c not in index] for n, cols in self.component_columns.items()}
        if any(missing.values()):
            raise ValueError(f"component columns not in the model columns: {missing}")
        object.__setattr__(
            self,
            "_index",
            {n: np.array([index[c] for c in cols]) for n, cols in self.component_columns.items()},
        )

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of every component for the batch ``x`` (columns = ``self.columns``)."""
        if len(x) == 0:
            return {name: np.empty(0, dtype=np.float32) for name in self.scorers}
        out = {}
        index: dict[str, np.ndarray] = self._index  # type: ignore[attr-defined]
        for name, scorer in self.scorers.items():
            began = time.perf_counter()
            cols = index.get(name)
            out[name] = scorer.score_batch(x if cols is None else x[:, cols])
            MODEL_SECONDS.labels(name).observe(time.perf_counter() - began)
        return out


RULES_ONLY = ModelSet(version="rules-only")
"""No model artifacts: the ensemble renormalises over the rules alone."""
