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
from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.rules import RuleHit

__all__ = ["EnsembleConfig", "Verdict", "combine", "rules_score"]


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
