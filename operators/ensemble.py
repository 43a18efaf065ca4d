"""The rule score and model scores combined into one verdict, by one of two profiles.

``s_rules = min(100, sum of points of the rules that fired)``; model components
are 0-100 scores (anomaly models: tail rarity, 20 points per factor of ten, see
:mod:`models.calibration`; the supervised model: a calibrated fraud probability
x 100). Absent components (no model loaded yet) are left out; their score is
``null`` in the output.

* ``evidence`` (the default): every component adds evidence on one scale.
  ``fraud_score = min(100, s_rules + sum(e_m * s_m))`` over the anomaly models,
  with ``evidence_weights`` ``e_m`` (0.25 each, conservative without labels: the
  models see the same features, and their scores drift with traffic). A
  1-in-100,000 event by both models adds 50, a review on its own; typical traffic
  adds ~4. When a **supervised** score is present, it leads:
  ``fraud_score = s_supervised`` (labels beat hand-set evidence, and a blend
  would dilute its ranking).
* ``weighted``: the reference ensemble, ``sum(w_c * s_c) / sum(w_c)`` over
  present components with ``weights`` (rules 0.85, isolation forest 0.10,
  autoencoder 0.05, supervised 1.0), weights renormalised over what is present.

In both, if a rule with ``force_high`` fired (blocklists), the score is raised
to at least the HIGH threshold, so such an event is HIGH on its own.

>>> v = combine([RuleHit("velocity_check", 25, "x")], {"isolation_forest": None}, EnsembleConfig())
>>> (v.fraud_score, v.risk_level, v.decision)
(25.0, 'LOW', 'approve')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.rules import RuleHit

__all__ = [
    "ANOMALY_COMPONENTS",
    "EnsembleConfig",
    "Verdict",
    "allowed",
    "blend",
    "combine",
    "ensemble_scores",
    "risk_level",
    "rules_score",
    "rules_scores",
]


class EnsembleConfig(BaseModel):
    """The ``ensemble`` section of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    profile: Literal["evidence", "weighted"] = "evidence"
    evidence_weights: dict[str, float] = Field(
        default_factory=lambda: {"isolation_forest": 0.25, "autoencoder": 0.25}
    )
    """``evidence`` profile: points per point of each anomaly model's tail-rarity score."""
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "rules": 0.85,
            "isolation_forest": 0.10,
            "autoencoder": 0.05,
            "supervised": 1.0,
        }
    )
    medium_threshold: float = Field(40.0, gt=0, le=100)
    high_threshold: float = Field(70.0, gt=0, le=100)

    @model_validator(mode="after")
    def _check(self) -> EnsembleConfig:
        unknown = set(self.weights) - {"rules", *MODEL_COMPONENTS}
        if unknown:
            raise ValueError(f"weights: unknown components {sorted(unknown)}")
        if any(w < 0 for w in self.weights.values()) or self.weights.get("rules", 0) <= 0:
            raise ValueError("weights: must be >= 0, and rules > 0")
        unknown = set(self.evidence_weights) - set(ANOMALY_COMPONENTS)
        if unknown:
            raise ValueError(f"evidence_weights: unknown anomaly models {sorted(unknown)}")
        if any(w < 0 for w in self.evidence_weights.values()):
            raise ValueError("evidence_weights: must be >= 0")
        if self.medium_threshold >= self.high_threshold:
            raise ValueError("medium_threshold must be below high_threshold")
        return self


class Verdict(msgspec.Struct, frozen=True):
    fraud_score: float
    risk_level: str
    decision: str
    is_blocked: bool
    scores: dict[str, float | None]


MODEL_COMPONENTS = ("isolation_forest", "autoencoder", "supervised")
"""Model components the ensemble knows, in the order of ``scores``."""
ANOMALY_COMPONENTS = ("isolation_forest", "autoencoder")

_DECISION = {"LOW": "approve", "MEDIUM": "review", "HIGH": "block"}


def risk_level(score: float, medium: float, high: float) -> str:
    """``HIGH`` at or above ``high``, ``MEDIUM`` at or above ``medium``, else ``LOW``."""
    return "HIGH" if score >= high else "MEDIUM" if score >= medium else "LOW"


def rules_score(hits: Sequence[RuleHit]) -> float:
    return float(min(100, sum(h.points for h in hits)))


def combine(
    hits: Sequence[RuleHit], model_scores: Mapping[str, float | None], cfg: EnsembleConfig
) -> Verdict:
    """One event's verdict from its rule hits and model scores."""
    scores: dict[str, float | None] = {"rules": rules_score(hits) if hits else 0.0}
    for name in MODEL_COMPONENTS:
        scores[name] = model_scores.get(name)
    score = _evidence(scores, cfg) if cfg.profile == "evidence" else _weighted(scores, cfg)
    if hits and any(h.force_high for h in hits):
        score = max(score, cfg.high_threshold)
    score = round(min(100.0, max(0.0, score)), 2)
    level = risk_level(score, cfg.medium_threshold, cfg.high_threshold)
    return Verdict(score, level, _DECISION[level], level == "HIGH", scores)


def allowed(verdict: Verdict) -> Verdict:
    """``verdict`` for an allow-listed user or device: approve, whatever the score
    (which is kept, so analysts see what the allow list overrode)."""
    return Verdict(verdict.fraud_score, "LOW", "approve", False, verdict.scores)


def _evidence(scores: Mapping[str, float | None], cfg: EnsembleConfig) -> float:
    supervised = scores.get("supervised")
    if supervised is not None:
        return supervised
    total = scores["rules"] or 0.0
    for name, weight in cfg.evidence_weights.items():
        value = scores.get(name)
        if value is not None:
            total += weight * value
    return total


def _weighted(scores: Mapping[str, float | None], cfg: EnsembleConfig) -> float:
    num = den = 0.0
    for name, score in scores.items():
        weight = cfg.weights.get(name, 0.0)
        if score is not None and weight > 0:
            num += weight * score
            den += weight
    return num / den


def rules_scores(triggered: Sequence[Sequence[str]], points: Mapping[str, int]) -> np.ndarray:
    """:func:`rules_score` of many events from the names of the rules that fired and their points.

    >>> rules_scores([["velocity_check"], [], ["a", "b"]], {"velocity_check": 25, "a": 60, "b": 70}).tolist()
    [25.0, 0.0, 100.0]
    """
    return np.array([min(100, sum(points.get(r, 0) for r in fired)) for fired in triggered], dtype=np.float64)


def blend(
    components: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    force_high: np.ndarray | None = None,
    high_threshold: float = 70.0,
) -> np.ndarray:
    """:func:`combine`'s ``fraud_score`` over columns of component scores (NaN: absent).

    Offline re-scoring (another weight, a retrained model, other rule points)
    with exactly the served formula; ``force_high`` marks rows where a
    blocklist rule fired.

    >>> blend({"rules": np.array([25.0, 0.0]), "isolation_forest": np.array([np.nan, 80.0])},
    ...       {"rules": 0.85, "isolation_forest": 0.10}).round(2).tolist()
    [25.0, 8.42]
    """
    num = den = None
    for name, values in components.items():
        weight = weights.get(name, 0.0)
        if weight <= 0:
            continue
        v = np.asarray(values, dtype=np.float64)
        present = np.isfinite(v)
        part, w = np.where(present, weight * v, 0.0), np.where(present, weight, 0.0)
        num, den = (part, w) if num is None or den is None else (num + part, den + w)
    if num is None or den is None:
        raise ValueError("no component with a positive weight")
    score = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    if force_high is not None:
        score = np.where(force_high, np.maximum(score, high_threshold), score)
    return np.round(np.clip(score, 0.0, 100.0), 2)


def ensemble_scores(
    components: Mapping[str, np.ndarray], cfg: EnsembleConfig, force_high: np.ndarray | None = None
) -> np.ndarray:
    """:func:`combine`'s ``fraud_score`` over columns of component scores (NaN: absent),
    with ``cfg``'s profile: offline re-scoring with exactly the served formula.

    >>> ensemble_scores({"rules": np.array([25.0, 0.0]), "isolation_forest": np.array([np.nan, 80.0]),
    ...                  "supervised": np.array([np.nan, 12.5])}, EnsembleConfig()).tolist()
    [25.0, 12.5]
    """
    if cfg.profile == "weighted":
        return blend(components, cfg.weights, force_high, cfg.high_threshold)
    total = np.asarray(components["rules"], dtype=np.float64).copy()
    for name, weight in cfg.evidence_weights.items():
        if name in components:
            v = np.asarray(components[name], dtype=np.float64)
            total += np.where(np.isfinite(v), weight * v, 0.0)
    if "supervised" in components:
        sup = np.asarray(components["supervised"], dtype=np.float64)
        total = np.where(np.isfinite(sup), sup, total)
    if force_high is not None:
        total = np.where(force_high, np.maximum(total, cfg.high_threshold), total)
    return np.round(np.clip(total, 0.0, 100.0), 2)
