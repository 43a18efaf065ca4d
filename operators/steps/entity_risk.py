"""The entity risk steps: one per entity kind (merchant, device, user), keyed by
that entity, fed by the scored stream's events and by resolved labels.

Each event gets ``<kind>_events_<w>d``, ``<kind>_frauds_<w>d`` and
``<kind>_fraud_share_<w>d`` in ``features.risk`` from the entity's
:class:`~operators.entity_risk.RiskWindow`, then counts in it. A label updates
the window of every entity of its event. Events without the entity (no
merchant, no device) pass by unchanged; their features are missing (NaN).

    events ─┬─ has a merchant ─ key ─┐
            │         labels ─ key ──┴─ merchant windows ─┐
            └─ no merchant ───────────────────────────────┴─ merge ─> next kind
"""

from __future__ import annotations

import time
from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream

from operators import metrics
from operators.entity_risk import RiskConfig, RiskWindow, update_window
from operators.features import Featured
from operators.labels import ENTITY_KEYS, KnownLabel
from operators.steps.expiring import ExpiringLogic

__all__ = ["entity_risk"]


def entity_risk(
    step_id: str,
    events: Stream[Featured],
    labels: Stream[KnownLabel] | None,
    kind: str,
    config: RiskConfig,
    ttl_s: float,
    clock: Callable[[], float] = time.time,
) -> Stream[Featured]:
    """Attach ``kind``'s risk features to every event that has that entity."""
    key_of = ENTITY_KEYS[kind]
    split = op.branch(f"{step_id}_has_key", events, lambda f: key_of(f.accepted.event) is not None)
    keyed = op.key_on(f"{step_id}_key", split.trues, lambda f: key_of(f.accepted.event) or "")
    inputs: KeyedStream[Featured | KnownLabel] = keyed
    if labels is not None:
        relevant = op.filter(f"{step_id}_labels_with_key", labels, lambda k: k.key(kind) is not None)
        keyed_labels = op.key_on(f"{step_id}_label_key", relevant, lambda k: k.key(kind) or "")
        inputs = op.merge(f"{step_id}_merge", keyed, keyed_labels)

    live = metrics.ENTITY_STATES.labels(kind)

    def apply(window: RiskWindow, values: list[Featured | KnownLabel]) -> list[Featured]:
        return update_window(window, values, kind, config)

    def build(resume: RiskWindow | None) -> ExpiringLogic[Featured | KnownLabel, Featured, RiskWindow]:
        live.inc()
        window = resume if resume is not None else RiskWindow(touched_at=clock())
        return ExpiringLogic(window, apply, ttl_s, clock, live)

    windowed = op.key_rm(f"{step_id}_unkey", op.stateful_batch(step_id, inputs, build))
    return op.merge(f"{step_id}_rejoin", windowed, split.falses)
