"""The label steps: validate label messages, store them and find their events
(the record and its rules are :mod:`operators.labels`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from operators import metrics
from operators.events import InvalidEvent
from operators.labels import KnownLabel, Label, LabelStore, Pending, decode_label
from operators.validation import DeadLetter, RawMessage, dead_letter

__all__ = ["LabelResolverLogic", "LabelStreams", "resolve_labels", "validate_labels"]


@dataclass(frozen=True)
class LabelStreams:
    oks: Stream[Label]
    errs: Stream[DeadLetter]


def validate_labels(
    step_id: str, up: Stream[RawMessage], clock: Callable[[], float] = time.time
) -> LabelStreams:
    """Split raw label messages into labels and dead letters (consumer errors never reach
    this step: the source logs and counts them)."""

    def check(item: RawMessage) -> list[Label | DeadLetter]:
        result = decode_label(item.value)
        if isinstance(result, InvalidEvent):
            metrics.LABELS.labels("dead_lettered").inc()
            return [dead_letter(item, result.error, clock())]
        return [result]

    checked = op.flat_map(f"{step_id}_check", up, check)
    branch = op.branch(f"{step_id}_split", checked, lambda r: isinstance(r, Label))
    return LabelStreams(branch.trues, branch.falses)  # type: ignore[arg-type]


class LabelResolverLogic(StatefulBatchLogic[Label, KnownLabel, list[Pending]]):
    """Store each label, then find its event; a label whose event is not scored
    yet (it may still be on its way through the job) is retried every
    ``retry_s`` for ``pending_s``, then counted as unknown and dropped."""

    def __init__(
        self,
        pending: list[Pending],
        store: LabelStore,
        pending_s: float,
        retry_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.pending, self.store, self.pending_s, self.retry_s, self.clock = (
            pending,
            store,
            pending_s,
            retry_s,
            clock,
        )
        self.next_try: float | None = clock() + retry_s if pending else None

    def on_batch(self, values: list[Label]) -> tuple[list[KnownLabel], bool]:
        new = self.store.record(values)
        metrics.LABELS.labels("stored").inc(new)
        metrics.LABELS.labels("duplicate").inc(len(values) - new)
        now = self.clock()
        self.pending.extend(Pending(lab, now) for lab in values)
        return self._resolve(now), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[KnownLabel], bool]:
        return self._resolve(self.clock()), StatefulBatchLogic.RETAIN

    def _resolve(self, now: float) -> list[KnownLabel]:
        refs = self.store.lookup(sorted({p.label.event_id for p in self.pending}))
        out, waiting = [], []
        for p in self.pending:
            ref = refs.get(p.label.event_id)
            if ref is not None:
                out.append(KnownLabel(p.label, ref))
            elif now - p.since < self.pending_s:
                waiting.append(p)
            else:
                metrics.LABELS.labels("unknown").inc()
        metrics.LABELS.labels("applied").inc(len(out))
        self.pending = waiting
        metrics.LABELS_PENDING.set(len(waiting))
        self.next_try = now + self.retry_s if waiting else None
        return out

    def notify_at(self) -> datetime | None:
        return None if self.next_try is None else datetime.fromtimestamp(self.next_try, UTC)

    def snapshot(self) -> list[Pending]:
        return list(self.pending)


def resolve_labels(
    step_id: str,
    labels: Stream[Label],
    store: Callable[[], LabelStore],
    pending_s: float,
    retry_s: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> Stream[KnownLabel]:
    """Labels whose events the job scored, with those events' entity keys.

    Labels are few (a share of a share of the traffic), so one worker resolves
    them all, in batches: one insert and one lookup per batch.
    """
    keyed = op.key_on(f"{step_id}_key", labels, lambda _: "labels")
    holder: list[LabelStore] = []

    def build(resume: list[Pending] | None) -> LabelResolverLogic:
        if not holder:
            holder.append(store())
        return LabelResolverLogic(resume or [], holder[0], pending_s, retry_s, clock)

    return op.key_rm(f"{step_id}_unkey", op.stateful_batch(step_id, keyed, build))
