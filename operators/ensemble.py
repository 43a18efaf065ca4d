"""Weighted ensemble of the rule score and model scores into one verdict.

``fraud_score = sum(w_c * s_c for present c) / sum(w_c for present c)``, where
``s_rules = min(100, sum of points of the rules that fired)`` and the model
components are 0-100 anomaly scores. Components that are absent (no model
loaded yet) are left out and the weights renormalised; their score is ``null``
in the output. If a rule with ``force_high`` fired (blocklists), the score is
raised to at least the HIGH threshold, so such an event is HIGH on its own.

>>> v = combine([RuleHit("velocity_check", 25, "x")], {"isolation_forest": None}, EnsembleConfig())
>>> (v.fraud_score, v.risk_level, v.decision)
(25.0, 'LOW', 'approve')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.rules import RuleHit

__all__ = ["EnsembleConfig", "Verdict", "blend", "combine", "rules_score", "rules_scores"]


class EnsembleConfig(BaseModel):
    """The ``ensemble`` section of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
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

_DECISION = {"LOW": "approve", "MEDIUM": "review", "HIGH": "block"}


def rules_score(hits: Sequence[RuleHit]) -> float:
    return float(min(100, sum(h.points for h in hits)))


def combine(
    hits: Sequence[RuleHit], model_scores: Mapping[str, float | None], cfg: EnsembleConfig
) -> Verdict:
    """One event's verdict from its rule hits and model scores."""
    scores: dict[str, float | None] = {"rules": rules_score(hits)}
    scores.update({name: model_scores.get(name) for name in MODEL_COMPONENTS})
    num = den = 0.0
    for name, score in scores.items():
        weight = cfg.weights.get(name, 0.0)
        if score is not None and weight > 0:
            num += weight * score
            den += weight
    score = num / den
    if any(h.force_high for h in hits):
        score = max(score, cfg.high_threshold)
    score = round(min(100.0, max(0.0, score)), 2)
    level = "HIGH" if score >= cfg.high_threshold else "MEDIUM" if score >= cfg.medium_threshold else "LOW"
    return Verdict(score, level, _DECISION[level], level == "HIGH", scores)


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
