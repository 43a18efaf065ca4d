"""Micro-batch scoring: rules per event, every model once per batch, then the ensemble.

``score_batch`` is a plain function over plain data; ``score`` wires it into the
dataflow after :func:`operators.batching.micro_batch`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream

from models.base import ModelSet
from operators import metrics
from operators.ensemble import EnsembleConfig, Verdict, combine
from operators.events import TransactionEvent
from operators.features import Features, feature_matrix
from operators.profiles import Featured
from operators.rules import Blocklists, RuleContext, RuleHit, RulesConfig, evaluate_rules

__all__ = ["ScoredEvent", "Scorer", "score", "score_batch"]


class ScoredEvent(msgspec.Struct, frozen=True):
    """The job's verdict on one event, as every sink sees it."""

    event: TransactionEvent
    features: Features
    hits: list[RuleHit]
    verdict: Verdict
    model_version: str
    scored_at: datetime
    ingest_ms: int | None
    processing_ms: float
    challenger: tuple[str, float] | None = None
    """(version, fraud score) of the challenger scoring in shadow; never used for the decision."""
    request_id: str | None = None
    """The producer's request token (the gateway's), echoed on the decision."""

    @property
    def is_alert(self) -> bool:
        return self.verdict.risk_level != "LOW"


def score_batch(
    batch: Sequence[Featured],
    models: ModelSet,
    rules: RulesConfig,
    blocklists: Blocklists,
    ensemble: EnsembleConfig,
    now: float,
    challenger: ModelSet | None = None,
) -> list[ScoredEvent]:
    """Score a batch: one model call per component for the whole batch.

    A ``challenger`` scores the same batch in shadow: its ensemble score is kept
    beside the decision for champion/challenger comparison, nothing more.
    """
    if not batch:
        return []
    features = [f.features for f in batch]
    events = [f.accepted.event for f in batch]
    model_scores = models.score(feature_matrix(features, events, models.columns))
    shadow = None
    if challenger is not None:
        shadow = challenger.score(feature_matrix(features, events, challenger.columns))
    ctx = RuleContext(rules, blocklists)
    scored_at = datetime.fromtimestamp(now, UTC)
    out = []
    for i, item in enumerate(batch):
        acc = item.accepted
        hits = evaluate_rules(acc.event, item.features, ctx)
        verdict = combine(hits, {name: float(s[i]) for name, s in model_scores.items()}, ensemble)
        shadow_score = None
        if shadow is not None and challenger is not None:
            scores = {name: float(s[i]) for name, s in shadow.items()}
            shadow_score = (challenger.version, combine(hits, scores, ensemble).fraud_score)
        out.append(
            ScoredEvent(
                acc.event,
                item.features,
                hits,
                verdict,
                models.version,
                scored_at,
                acc.ingest_ms,
                round((now - acc.received_at) * 1000.0, 3),
                shadow_score,
                acc.request_id,
            )
        )
    return out


class Scorer:
    """Scores one micro-batch with the current models and blocklists."""

    def __init__(
        self,
        models: Callable[[], ModelSet],
        blocklists: Callable[[], Blocklists],
        rules: RulesConfig,
        ensemble: EnsembleConfig,
        clock: Callable[[], float] = time.time,
        challenger: Callable[[], ModelSet | None] = lambda: None,
    ) -> None:
        self.models = models
        self.challenger = challenger
        self.blocklists = blocklists
        self.rules = rules
        self.ensemble = ensemble
        self.clock = clock

    def __call__(self, batch: list[Featured]) -> list[ScoredEvent]:
        began = time.perf_counter()
        scored = score_batch(
            batch,
            self.models(),
            self.rules,
            self.blocklists(),
            self.ensemble,
            self.clock(),
            self.challenger(),
        )
        metrics.STAGE_SECONDS.labels("score").observe(time.perf_counter() - began)
        metrics.BATCH_SIZE.labels("score").observe(len(batch))
        _count(scored)
        return scored


def _count(scored: list[ScoredEvent]) -> None:
    """Metrics of one batch: counters once per label, histograms per event."""
    metrics.EVENTS.labels("scored").inc(len(scored))
    alerts = Counter(s.verdict.risk_level for s in scored if s.is_alert)
    hits = Counter(hit.rule for s in scored for hit in s.hits)
    for level, n in alerts.items():
        metrics.ALERTS.labels(level).inc(n)
    for rule, n in hits.items():
        metrics.RULE_HITS.labels(rule).inc(n)
    components = {
        name: metrics.COMPONENT_SCORE.labels(name) for name in ("rules", "isolation_forest", "autoencoder")
    }
    metrics.observe_many(metrics.FRAUD_SCORE, [s.verdict.fraud_score for s in scored])
    for name, child in components.items():
        values = [v for s in scored if (v := s.verdict.scores.get(name)) is not None]
        if values:
            metrics.observe_many(child, values)


def score(step_id: str, batches: Stream[list[Featured]], scorer: Scorer) -> Stream[ScoredEvent]:
    """Score each micro-batch (see :mod:`operators.batching`)."""
    return op.flat_map(step_id, batches, scorer)
