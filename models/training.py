"""Offline training: replay events through the job's own state and feature code,
fit both scorers, calibrate, and write a versioned artifact.

Features come from :func:`operators.features.update_profile` (its compiled kernel where
built, :mod:`operators.kernels`) and
:func:`operators.features.feature_matrix`, exactly what the stream job runs, so
there is no train/serve skew.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.artifacts import ModelStore, write_artifact
from models.autoencoder import AutoencoderScorer
from models.base import Scorer
from models.isolation_forest import IsolationForestScorer
from operators.entity_risk import RiskConfig, RiskWindow, update_window
from operators.events import TransactionEvent
from operators.features import FEATURE_NAMES, Features, feature_matrix
from operators.kernels import update_profile
from operators.labels import ENTITY_KEYS, EventRef, KnownLabel, Label
from operators.state import StateLimits, UserState
from operators.validation import Accepted

__all__ = ["EntityRisk", "TrainingConfig", "TrainingResult", "replay_features", "train"]


@dataclass(frozen=True)
class TrainingConfig:
    attribute_features: tuple[str, ...] = ()
    seed: int = 0
    epochs: int = 40
    hidden: tuple[int, ...] = (32, 16, 6)
    n_estimators: int = 100
    max_samples: int = 256
    device: str = "auto"
    calibration: str = "tail-rarity"
    state_limits: StateLimits = field(default_factory=StateLimits)

    @property
    def columns(self) -> tuple[str, ...]:
        return FEATURE_NAMES + tuple(f"attr:{a}" for a in self.attribute_features)


@dataclass(frozen=True)
class TrainingResult:
    version: str
    events: int
    columns: tuple[str, ...]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class EntityRisk:
    """Which entity risk windows to replay (``entity_risk`` settings)."""

    config: RiskConfig = field(default_factory=RiskConfig)
    entities: tuple[str, ...] = ("merchant", "device", "user")


def replay_features(
    events: Iterable[TransactionEvent],
    limits: StateLimits | None = None,
    labels: Iterable[Label] = (),
    risk: EntityRisk | None = None,
) -> tuple[list[Features], list[TransactionEvent]]:
    """Features of every event as the job computes them, in event-time order.

    With ``risk``, the entity risk windows too, fed with ``labels``. A label is
    applied right after its event: the windows count a label only for events
    after its ``label_time``, so when it arrives does not matter, as long as
    it arrives (in the job, before the events it should inform).
    """
    limits = limits or StateLimits()
    ordered = sorted(events, key=lambda e: e.timestamp)
    by_event: dict[str, list[Label]] = {}
    for lab in labels:
        by_event.setdefault(lab.event_id, []).append(lab)
    windows: dict[tuple[str, str], RiskWindow] = {}
    states: dict[str, UserState] = {}
    features = []
    for ev in ordered:
        state = states.setdefault(ev.user_id, UserState())
        ts = ev.timestamp.timestamp()
        item = update_profile(state, Accepted(ev, ts, None, ts), limits)
        if risk is not None:
            keys = {kind: ENTITY_KEYS[kind](ev) for kind in risk.entities}
            for kind, key in keys.items():
                if key is not None:
                    window = windows.setdefault((kind, key), RiskWindow())
                    (item,) = update_window(window, [item], kind, risk.config)
            ref = EventRef(ts, keys)
            for lab in by_event.get(ev.event_id, ()):
                for kind, key in keys.items():
                    if key is not None:
                        update_window(windows[(kind, key)], [KnownLabel(lab, ref)], kind, risk.config)
        features.append(item.features)
    return features, ordered


def _summary(events: Sequence[TransactionEvent]) -> dict[str, Any]:
    amounts = np.array([e.amount for e in events])
    return {
        "events": len(events),
        "users": len({e.user_id for e in events}),
        "first_event": events[0].timestamp.isoformat() if events else None,
        "last_event": events[-1].timestamp.isoformat() if events else None,
        "amount_mean": float(amounts.mean()) if len(amounts) else None,
        "amount_p99": float(np.quantile(amounts, 0.99)) if len(amounts) else None,
    }


def train(
    events: Iterable[TransactionEvent],
    out: Path,
    config: TrainingConfig = TrainingConfig(),
    activate: bool = False,
    progress: Callable[[str], None] = lambda _: None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainingResult:
    """Fit both scorers on ``events`` and write a new version under ``out``."""
    progress("building features")
    features, ordered = replay_features(events, config.state_limits)
    if len(ordered) < 100:
        raise ValueError(f"need at least 100 events to train, got {len(ordered)}")
    x = feature_matrix(features, ordered, config.columns)
    scorers: dict[str, Scorer] = {}
    progress("fitting isolation forest")
    scorers["isolation_forest"] = IsolationForestScorer(
        config.n_estimators, config.max_samples, seed=config.seed, calibration=config.calibration
    ).fit(x)
    progress("fitting autoencoder")
    scorers["autoencoder"] = AutoencoderScorer(
        config.hidden,
        config.epochs,
        seed=config.seed,
        device=config.device,
        on_epoch=on_epoch,
        calibration=config.calibration,
    ).fit(x)
    model_metrics = {
        name: {"share_above_99": float(np.mean(s.score_batch(x) > 99.0))} for name, s in scorers.items()
    }
    progress("writing artifact")
    version = write_artifact(out, scorers, config.columns, _summary(ordered), model_metrics)
    if activate:
        ModelStore(out).activate(version)
    return TrainingResult(version, len(ordered), config.columns, model_metrics)
