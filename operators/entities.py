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

import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Stream
from bytewax.operators import KeyedStream, StatefulBatchLogic

from operators import metrics
from operators.entity_risk import RiskConfig, RiskWindow
from operators.labels import ENTITY_KEYS, KnownLabel
from operators.profiles import Featured

__all__ = ["EntityRiskLogic", "entity_risk", "update_window"]


def update_window(
    window: RiskWindow, items: Iterable[Featured | KnownLabel], kind: str, config: RiskConfig
) -> list[Featured]:
    """Apply labels, then events in event-time order; events come back with their risk features.

    Sorting matters: the step before (per user) hands over one activation's
    events grouped by user, so a merchant may see a later day before an
    earlier one within a batch.
    """
    out = []
    ordered = sorted(items, key=lambda i: -math.inf if isinstance(i, KnownLabel) else i.accepted.ts)
    for item in ordered:
        if isinstance(item, KnownLabel):
            lab = item.label
            window.apply_label(lab.event_id, item.ref.event_ts, lab.is_fraud, lab.label_ts, config)
            continue
        ts = item.accepted.ts
        risk = {f"{kind}_{name}": value for name, value in window.features(ts, config).items()}
        features = msgspec.structs.replace(item.features, risk={**item.features.risk, **risk})
        window.add_event(ts, config)
        out.append(Featured(item.accepted, features))
    return out


class EntityRiskLogic(StatefulBatchLogic[Featured | KnownLabel, Featured, RiskWindow]):
    def __init__(
        self, window: RiskWindow, kind: str, config: RiskConfig, ttl_s: float, clock: Callable[[], float]
    ) -> None:
        self.window, self.kind, self.config, self.ttl_s, self.clock = window, kind, config, ttl_s, clock

    def on_batch(self, values: list[Featured | KnownLabel]) -> tuple[list[Featured], bool]:
        out = update_window(self.window, values, self.kind, self.config)
        self.window.touched_at = self.clock()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Featured], bool]:
        metrics.ENTITY_STATES.labels(self.kind).dec()
        return [], StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime:
        return datetime.fromtimestamp(self.window.touched_at + self.ttl_s, UTC)

    def snapshot(self) -> RiskWindow:
        return self.window.snapshot()


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

    def build(resume: RiskWindow | None) -> EntityRiskLogic:
        metrics.ENTITY_STATES.labels(kind).inc()
        window = resume if resume is not None else RiskWindow(touched_at=clock())
        return EntityRiskLogic(window, kind, config, ttl_s, clock)

    windowed = op.key_rm(f"{step_id}_unkey", op.stateful_batch(step_id, inputs, build))
    return op.merge(f"{step_id}_rejoin", windowed, split.falses)
