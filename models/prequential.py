"""Prequential evaluation with a label delay: how the label loop would have done.

The fraud-detection handbook (Le Borgne et al., chapter 5) evaluates a fraud
model the way it lives in production: trained on the past, with only the
labels known at the time, and tested on the days that follow. For each test
window ``[T, T + test_days)`` (windows follow each other from the start of
the data):

* **train** on the events of ``[T - delay - train_days, T - delay)``: the
  ``delay_days`` before ``T`` are left out, as their chargebacks have not come
  back; an event counts as fraud only if its fraud label was known at ``T``
  (``known_at <= T``), else as legitimate (what a retraining at ``T`` sees);
* **test** on the events of the window, with their final labels.

Each fold reports the average precision of every score given (the served
champion score, the shadow challenger score, re-blended ensembles) and of a
supervised model retrained for the fold; the summary pools the test rows of
every fold (one AP over all of them) and also averages the per-fold APs.
Folds without a known fraud to train on, or without a fraud to test on, are
listed as skipped with the reason.

Everything here is pure (arrays in, a report out): ``fraudstream evaluate
--prequential`` feeds it from Postgres, ``python -m bench label_loop`` from
the generated compromised-merchant workload.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.base import Scorer
from models.evaluation import average_precision

__all__ = ["RETRAINED", "Fold", "PrequentialConfig", "prequential"]

DAY = 86_400.0
RETRAINED = "retrained"
"""The name of the supervised model retrained in every fold."""

Blend = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(test row indices, retrained scores of those rows) -> a score per row."""


@dataclass(frozen=True)
class PrequentialConfig:
    delay_days: float = 7.0
    test_days: float = 7.0
    train_days: float | None = None
    """Training window length; None: all the history before the delay."""
    min_train_frauds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.delay_days < 0:
            raise ValueError(f"delay_days must be >= 0, got {self.delay_days}")
        if self.test_days <= 0:
            raise ValueError(f"test_days must be > 0, got {self.test_days}")
        if self.train_days is not None and self.train_days <= 0:
            raise ValueError(f"train_days must be > 0, got {self.train_days}")


@dataclass(frozen=True)
class Fold:
    test_from: str
    train_events: int
    train_known_frauds: int
    test_events: int
    test_frauds: int
    ap: dict[str, float | None] = field(default_factory=dict)
    skipped: str | None = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _default_fit(x: np.ndarray, y: np.ndarray, seed: int) -> Scorer:
    from models.supervised import SupervisedScorer

    return SupervisedScorer(seed=seed).fit(x, y)


def prequential(
    ts: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    known_at: np.ndarray,
    scores: Mapping[str, np.ndarray],
    config: PrequentialConfig = PrequentialConfig(),
    blends: Mapping[str, Blend] | None = None,
    fit: Callable[[np.ndarray, np.ndarray, int], Scorer] = _default_fit,
    groups: list[str] | None = None,
) -> dict[str, Any]:
    """Prequential report: folds and a pooled summary per score name.

    ``ts``: event times (epoch seconds, ascending); ``x``: feature matrix;
    ``y``: final labels (1 fraud); ``known_at``: when each fraud label became
    known (epoch seconds; ``inf`` for none); ``scores``: served scores per name
    (NaN where a row has none, e.g. no shadow challenger); ``blends``: named
    ensembles that combine the retrained score with served components;
    ``groups``: a fraud scenario per row (ignored for legitimate rows) to also
    report, per scenario, the pooled AP of its frauds against every legitimate row.
    """
    if len(ts) and np.any(np.diff(ts) < 0):
        raise ValueError("ts must be in ascending event-time order")
    n = len(ts)
    if not n:
        raise ValueError("no events to evaluate")
    c = config
    names = [*scores, RETRAINED, *(blends or {})]
    pooled_idx: list[np.ndarray] = []
    pooled_scores: dict[str, list[np.ndarray]] = {name: [] for name in names}
    folds: list[Fold] = []
    day0 = math.floor(ts[0] / DAY) * DAY
    start = day0 + c.delay_days * DAY + c.test_days * DAY
    for t in np.arange(start, ts[-1] + 1e-9, c.test_days * DAY):
        train_end = float(t) - c.delay_days * DAY
        train_begin = -np.inf if c.train_days is None else train_end - c.train_days * DAY
        lo, hi = np.searchsorted(ts, [train_begin, train_end], side="left")
        a, b = np.searchsorted(ts, [float(t), float(t) + c.test_days * DAY], side="left")
        y_train = (y[lo:hi] == 1) & (known_at[lo:hi] <= t)
        y_test = y[a:b]
        fold = Fold(_iso(float(t)), int(hi - lo), int(y_train.sum()), int(b - a), int(y_test.sum()))
        if y_train.sum() < c.min_train_frauds or y_train.all():
            folds.append(replace(fold, skipped=f"{int(y_train.sum())} known frauds to train on"))
            continue
        if not y_test.any() or y_test.all():
            folds.append(replace(fold, skipped="test window has one class only"))
            continue
        model = fit(x[lo:hi], y_train.astype(int), c.seed)
        retrained = np.asarray(model.score_batch(x[a:b]), dtype=np.float64)
        fold_scores = {name: np.asarray(s[a:b], dtype=np.float64) for name, s in scores.items()}
        fold_scores[RETRAINED] = retrained
        idx = np.arange(a, b)
        for name, blend in (blends or {}).items():
            fold_scores[name] = np.asarray(blend(idx, retrained), dtype=np.float64)
        folds.append(
            replace(fold, ap={name: average_precision(y_test, s) for name, s in fold_scores.items()})
        )
        pooled_idx.append(idx)
        for name in names:
            pooled_scores[name].append(fold_scores[name])
    summary: dict[str, dict[str, Any]] = {}
    tested = np.concatenate(pooled_idx) if pooled_idx else np.zeros(0, dtype=int)
    y_pooled = y[tested]
    if pooled_idx:
        group = np.array([groups[i] if y[i] else "" for i in tested]) if groups is not None else None
        for name in names:
            per_fold = [ap for f in folds if (ap := f.ap.get(name)) is not None]
            pooled = np.concatenate(pooled_scores[name])
            summary[name] = {
                "pooled_ap": average_precision(y_pooled, pooled),
                "mean_fold_ap": float(np.mean(per_fold)) if per_fold else None,
                "folds": len(per_fold),
            }
            if group is not None:
                summary[name]["pooled_ap_by_group"] = {
                    g: average_precision(y_pooled[keep], pooled[keep])
                    for g in sorted(set(group) - {""})
                    if (keep := (group == "") | (group == g)).any()
                }
    return {
        "config": {
            "delay_days": c.delay_days,
            "test_days": c.test_days,
            "train_days": c.train_days,
            "min_train_frauds": c.min_train_frauds,
        },
        "events": n,
        "frauds": int(y.sum()),
        "tested_events": len(tested),
        "tested_frauds": int(y_pooled.sum()),
        "summary": summary,
        "folds": [asdict(f) for f in folds],
    }
