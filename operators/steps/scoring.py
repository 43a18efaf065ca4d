"""The scoring step: one micro-batch at a time through :func:`operators.scoring.score_batch`,
with the models and blocklists current at that batch, and the batch's metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Stream

from operators import metrics
from operators.ensemble import EnsembleConfig
from operators.features import Featured
from operators.rules import Blocklists, RulesConfig
from operators.scoring import BatchModels, ScoredEvent, score_batch

__all__ = ["ScoringStep", "score"]


class ScoringStep:
    """Scores one micro-batch with the current models and blocklists."""

    def __init__(
        self,
        models: Callable[[], BatchModels],
        blocklists: Callable[[], Blocklists],
        rules: RulesConfig,
        ensemble: EnsembleConfig,
        clock: Callable[[], float] = time.time,
        challenger: Callable[[], BatchModels | None] = lambda: None,
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


def score(step_id: str, batches: Stream[list[Featured]], scorer: ScoringStep) -> Stream[ScoredEvent]:
    """Score each micro-batch (see :mod:`operators.steps.batching`)."""
    return op.flat_map(step_id, batches, scorer)
