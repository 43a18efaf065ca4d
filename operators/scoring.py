"""Micro-batch scoring: rules per event, every model once per batch, then the ensemble.

``score_batch`` is a plain function over plain data; :mod:`operators.steps.scoring`
wires it into the dataflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

import msgspec
import numpy as np

from operators.ensemble import EnsembleConfig, Verdict, allowed, combine
from operators.events import TransactionEvent
from operators.features import Featured, Features, featured_matrix
from operators.rules import Blocklists, RuleContext, RuleHit, allow_listed
from operators.rulesets import RuleSet

__all__ = ["BatchModels", "Decider", "ScoredEvent", "ShadowRules", "decide", "decide_batch", "score_batch"]


class BatchModels(Protocol):
    """What scoring needs of a model set (``models.base.ModelSet`` is one): a
    version, the matrix columns, and one call that scores a whole batch."""

    @property
    def version(self) -> str: ...
    @property
    def columns(self) -> tuple[str, ...]: ...
    def score(self, x: np.ndarray) -> Mapping[str, np.ndarray]: ...


class ShadowRules(msgspec.Struct, frozen=True):
    """What the shadow rule set would have done to one event (never used for the decision)."""

    version: int
    fraud_score: float
    triggered: list[str]


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
    rules_version: int | None = None
    """The rule-set version that decided (None: the config file's rules)."""
    shadow_rules: ShadowRules | None = None

    @property
    def is_alert(self) -> bool:
        return self.verdict.risk_level != "LOW"


def decide(
    ev: TransactionEvent,
    hits: list[RuleHit],
    model_scores: Mapping[str, float | None],
    ensemble: EnsembleConfig,
    lists: Blocklists,
) -> tuple[list[RuleHit], Verdict]:
    """The hits and verdict of one event: the ensemble's, unless the user or
    device is on the allow list, which approves (and says so as a hit)."""
    verdict = combine(hits, model_scores, ensemble)
    if (allow := allow_listed(ev, lists)) is not None:
        return [*hits, allow], allowed(verdict)
    return hits, verdict


Decider = Callable[..., list[ScoredEvent]]
"""What decides a scored batch: :func:`decide_batch` or its compiled kernel
(``operators.kernels.decide_batch``), which gives the same verdicts."""


def score_batch(
    batch: Sequence[Featured],
    models: BatchModels,
    rules: RuleSet,
    blocklists: Blocklists,
    ensemble: EnsembleConfig,
    now: float,
    challenger: BatchModels | None = None,
    shadow_rules: RuleSet | None = None,
    decider: Decider | None = None,
    matrix: Callable[[Sequence[Featured], Sequence[str]], np.ndarray] = featured_matrix,
) -> list[ScoredEvent]:
    """Score a batch: one model call per component for the whole batch, then the rules and
    the ensemble per event (:func:`decide_batch`, or ``decider``: the same thing compiled).
    ``matrix`` builds each model's input (:func:`~operators.features.featured_matrix`, or
    its compiled kernel).

    The whole batch is decided by one rule set (``rules``); an allow-listed user
    or device is approved whatever fires (its score is kept). A ``challenger`` scores
    the same batch in shadow, and so does a ``shadow_rules`` set: their ensemble
    scores are kept beside the decision for comparison, nothing more.
    """
    if not batch:
        return []
    own = _columns(models.score(matrix(batch, models.columns)))
    shadow = None
    if challenger is not None:
        shadow = (
            challenger.version,
            _columns(challenger.score(matrix(batch, challenger.columns))),
        )
    if shadow_rules is not None and shadow_rules.version is None:
        shadow_rules = None  # only a stored version can run in shadow
    decide_all = decider or decide_batch
    return decide_all(batch, own, models.version, rules, blocklists, ensemble, now, shadow, shadow_rules)


def _columns(scores: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    """Model scores as lists (one conversion per batch, plain floats per event)."""
    return {name: s.tolist() for name, s in scores.items()}


def decide_batch(
    batch: Sequence[Featured],
    scores: Mapping[str, list[float]],
    model_version: str,
    rules: RuleSet,
    blocklists: Blocklists,
    ensemble: EnsembleConfig,
    now: float,
    challenger: tuple[str, Mapping[str, list[float]]] | None = None,
    shadow_rules: RuleSet | None = None,
) -> list[ScoredEvent]:
    """Every event's rule hits and verdict, given the models' ``scores`` (a list per
    component, in batch order); a ``challenger``'s (version and scores) and a stored
    ``shadow_rules`` set's only beside it (see :func:`score_batch`)."""
    ctx = RuleContext(rules.config, blocklists)
    shadow_ctx = RuleContext(shadow_rules.config, blocklists) if shadow_rules is not None else ctx
    scored_at = datetime.fromtimestamp(now, UTC)
    own_columns = list(scores.items())
    shadow_columns = list(challenger[1].items()) if challenger is not None else []
    out = []
    for i, item in enumerate(batch):
        acc = item.accepted
        hits = rules.evaluate(acc.event, item.features, ctx)
        own = {name: column[i] for name, column in own_columns}
        hits, verdict = decide(acc.event, hits, own, ensemble, blocklists)
        shadow_set = None
        if shadow_rules is not None and shadow_rules.version is not None:
            shadow_hits = shadow_rules.evaluate(acc.event, item.features, shadow_ctx)
            would_score = combine(shadow_hits, own, ensemble).fraud_score
            shadow_set = ShadowRules(shadow_rules.version, would_score, [h.rule for h in shadow_hits])
        shadow_score = None
        if challenger is not None:
            values = {name: column[i] for name, column in shadow_columns}
            shadow_score = (challenger[0], combine(hits, values, ensemble).fraud_score)
        out.append(
            ScoredEvent(
                acc.event,
                item.features,
                hits,
                verdict,
                model_version,
                scored_at,
                acc.ingest_ms,
                round((now - acc.received_at) * 1000.0, 3),
                shadow_score,
                acc.request_id,
                rules.version,
                shadow_set,
            )
        )
    return out
