"""The scoring step: one micro-batch at a time through :func:`operators.scoring.score_batch`,
with the models and blocklists current at that batch, and the batch's metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators import kernels, metrics
from operators.ensemble import EnsembleConfig
from operators.features import Featured
from operators.rules import Blocklists
from operators.rulesets import RuleSet
from operators.scoring import BatchModels, ScoredEvent, score_batch
from operators.steps.batching import micro_batch

__all__ = ["ScoringStep", "score"]


class ScoringStep:
    """Scores one micro-batch with the current models, blocklists and rule sets
    (``rules`` gives the active set and the shadow one, if any, once per batch)."""

    def __init__(
        self,
        models: Callable[[], BatchModels],
        blocklists: Callable[[], Blocklists],
        rules: Callable[[], tuple[RuleSet, RuleSet | None]],
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
        active, shadow = self.rules()
        scored = score_batch(
            batch,
            self.models(),
            active,
            self.blocklists(),
            self.ensemble,
            self.clock(),
            self.challenger(),
            shadow,
            kernels.decide_batch,
            kernels.featured_matrix,
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


@operator
def score(
    step_id: str,
    up: Stream[list[Featured]],
    scorer: ScoringStep,
    max_size: int,
    max_wait_ms: float = 0.0,
    shards: int = 1,
    clock: Callable[[], float] = time.time,
) -> Stream[list[ScoredEvent]]:
    """Score lists of featured events; one list of verdicts out per model call.

    Without a wait, everything one activation brings is scored together, in
    chunks of ``max_size``; with ``max_wait_ms`` events are held per shard until
    the batch fills or the wait expires (see :mod:`operators.steps.batching`)."""
    if max_wait_ms > 0:
        events = op.flat_map("events", up, lambda batch: batch)
        batches = micro_batch("micro_batch", events, max_size, max_wait_ms, shards, clock)
        return op.map("score", batches, scorer)

    def chunks(lists: list[list[Featured]]) -> list[list[ScoredEvent]]:
        events = [f for batch in lists for f in batch]
        return [scorer(events[i : i + max_size]) for i in range(0, len(events), max_size)]

    return op.flat_map_batch("score", up, chunks)
