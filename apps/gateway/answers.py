"""The gateway's answers: the score answer from the job's decision or from the
fallback rules, and the other response bodies."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from flows.blocklists import RedisBlocklists
from flows.config import Settings
from operators.ensemble import MODEL_COMPONENTS
from operators.events import TransactionEvent
from operators.features import compute_features
from operators.rules import RuleContext, evaluate_rules
from operators.scoring import decide
from operators.state import UserState

__all__ = ["IngestAccepted", "Problem", "ScoreResponse", "UserRisk", "fallback_answer", "stream_answer"]


class ScoreResponse(BaseModel):
    """The reference FastAPI scorer's answer shape plus the job's decision details."""

    transaction_id: str
    fraud_score: float = Field(ge=0, le=100)
    risk_level: str
    is_blocked: bool
    decision: str = Field(description="approve | review | block (pending is never returned: see source)")
    triggered_rules: list[str]
    reasons: list[str]
    scores: dict[str, float | None]
    model_version: str
    explanation: str
    processing_time_ms: float
    source: str = Field(description="stream: the job's own decision; fallback: budget ran out (see docs)")
    fallback_reason: str | None = None


class IngestAccepted(BaseModel):
    """The answer to an ingestion: how many events were produced, and their ids."""

    accepted: int
    event_ids: list[str]


class UserRisk(BaseModel):
    """The latest decision for a user, as the job left it in Redis (``fraud:risk:<user_id>``)."""

    user_id: str
    fraud_score: float
    risk_level: str
    decision: str
    event_id: str
    event_time: str
    updated_at: str


class Problem(BaseModel):
    detail: list[dict[str, Any]] | str


def _explanation(reasons: list[str], scores: dict[str, float | None], review_at: float) -> str:
    """The rules' reasons, and the models that scored at or above ``review_at`` (the
    ensemble's medium threshold), as the verdict's scores say: never "normal" beside a
    model score that is not."""
    high = [
        f"{name.replace('_', ' ')} {score:.0f}"
        for name in MODEL_COMPONENTS
        if (score := scores.get(name)) is not None and score >= review_at
    ]
    models = f"model scores at or above the review threshold ({review_at:g} of 100): {', '.join(high)}"
    if reasons:
        return "; ".join(reasons) + (f"; {models}" if high else "")
    if high:
        return f"no rule fired; {models}"
    return f"no rule fired and no model score reached the review threshold ({review_at:g} of 100)"


def stream_answer(event_id: str, d: dict[str, Any], began: float, review_at: float = 40.0) -> ScoreResponse:
    return ScoreResponse(
        transaction_id=event_id,
        fraud_score=d["fraud_score"],
        risk_level=d["risk_level"],
        is_blocked=d["is_blocked"],
        decision=d["decision"],
        triggered_rules=d["triggered_rules"],
        reasons=d["reasons"],
        scores=d["scores"],
        model_version=d["model_version"],
        explanation=_explanation(d["reasons"], d["scores"], review_at),
        processing_time_ms=round((time.perf_counter() - began) * 1000, 3),
        source="stream",
    )


def fallback_answer(
    ev: TransactionEvent, settings: Settings, blocklists: RedisBlocklists, reason: str, began: float
) -> ScoreResponse:
    """Rules that need no history, on an empty profile, through the same ensemble."""
    features = compute_features(
        UserState(), ev, ev.timestamp.timestamp(), settings.rules.velocity_check.window_s
    )
    lists = blocklists.current()
    hits, verdict = decide(
        ev, evaluate_rules(ev, features, RuleContext(settings.rules, lists)), {}, settings.ensemble, lists
    )
    reasons = [h.reason for h in hits]
    return ScoreResponse(
        transaction_id=ev.event_id,
        fraud_score=verdict.fraud_score,
        risk_level=verdict.risk_level,
        is_blocked=verdict.is_blocked,
        decision=verdict.decision,
        triggered_rules=[h.rule for h in hits],
        reasons=reasons,
        scores=verdict.scores,
        model_version="fallback-rules",
        explanation=_explanation(reasons, verdict.scores, settings.ensemble.medium_threshold),
        processing_time_ms=round((time.perf_counter() - began) * 1000, 3),
        source="fallback",
        fallback_reason=reason,
    )
