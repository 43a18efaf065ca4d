"""Fraud labels: the record on the ``labels`` topic, its validation, and how a
label finds the entities (merchant, device, user) of the event it is about.

A label says whether one event was fraud, and when that became known
(``label_time``): a chargeback weeks later, an analyst's decision, a customer
confirming a payment. Labels carry only the ``event_id``; the job looks the
event up among the events it scored (``scored_events``), so a label for an
event it never saw is counted and dropped rather than guessed at.

>>> label = decode_label(b'{"event_id":"e1","is_fraud":true,"label_time":"2026-01-09T10:00:00Z",'
...                      b'"source":"chargeback"}')
>>> (label.event_id, label.is_fraud, label.source)
('e1', True, 'chargeback')
>>> decode_label(b'{"event_id":"e1","is_fraud":"yes","label_time":"2026-01-09T10:00:00Z"}').error
'is_fraud: Expected `bool`, got `str`'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Protocol

import bytewax.operators as op
import msgspec
from bytewax.connectors.kafka import KafkaError
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from operators import metrics
from operators.events import InvalidEvent, TransactionEvent, decode_reason
from operators.validation import DeadLetter, RawMessage, dead_letter

__all__ = [
    "ENTITY_KEYS",
    "EventRef",
    "KnownLabel",
    "Label",
    "LabelResolverLogic",
    "LabelStore",
    "LabelStreams",
    "decode_label",
    "encode_label",
    "resolve_labels",
    "validate_labels",
]


class Label(msgspec.Struct, frozen=True, omit_defaults=True):
    """One label, as produced to the labels topic (key = ``event_id``)."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    is_fraud: bool
    label_time: Annotated[datetime, msgspec.Meta(tz=True)]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")] = "analyst"

    @property
    def label_ts(self) -> float:
        return self.label_time.timestamp()


_DECODER = msgspec.json.Decoder(Label)
_ENCODER = msgspec.json.Encoder()


def decode_label(raw: bytes | None, max_bytes: int = 4096) -> Label | InvalidEvent:
    """Decode one labels-topic value; bad input becomes an :class:`InvalidEvent`, never an exception."""
    if raw is None:
        return InvalidEvent(b"", "payload: message has no value")
    if len(raw) > max_bytes:
        return InvalidEvent(raw, f"payload: {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        label = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        return InvalidEvent(raw, decode_reason(exc))
    if "\x00" in label.event_id:
        return InvalidEvent(raw, "event_id: contains a NUL character")
    if label.label_time.year < 1970:
        return InvalidEvent(raw, "label_time: before 1970")
    return label


def encode_label(label: Label) -> tuple[bytes, bytes]:
    """Key and value for the labels topic."""
    return label.event_id.encode(), _ENCODER.encode(label)


@dataclass(frozen=True)
class LabelStreams:
    oks: Stream[Label]
    errs: Stream[DeadLetter]


def validate_labels(
    step_id: str, up: Stream[RawMessage | KafkaError], clock: Callable[[], float] = time.time
) -> LabelStreams:
    """Split raw label messages into labels and dead letters."""

    def check(item: RawMessage | KafkaError) -> list[Label | DeadLetter]:
        if isinstance(item, KafkaError):
            return []
        result = decode_label(item.value)
        if isinstance(result, InvalidEvent):
            metrics.LABELS.labels("dead_lettered").inc()
            return [dead_letter(item, result.error, clock())]
        return [result]

    checked = op.flat_map(f"{step_id}_check", up, check)
    branch = op.branch(f"{step_id}_split", checked, lambda r: isinstance(r, Label))
    return LabelStreams(branch.trues, branch.falses)  # type: ignore[arg-type]


ENTITY_KEYS: dict[str, Callable[[TransactionEvent], str | None]] = {
    "merchant": lambda ev: ev.merchant_id or ev.merchant_name,
    "device": lambda ev: ev.device_id,
    "user": lambda ev: ev.user_id,
}
"""The key of each entity kind in an event: a merchant is its ``merchant_id``
(a terminal, a shop) or, without one, its ``merchant_name``."""


@dataclass(frozen=True, slots=True)
class EventRef:
    """What the job knows of a scored event: its time and entity keys."""

    event_ts: float
    keys: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class KnownLabel:
    """A label whose event the job scored, ready for the entity risk windows."""

    label: Label
    ref: EventRef

    def key(self, kind: str) -> str | None:
        return self.ref.keys.get(kind)


class LabelStore(Protocol):
    """Where labels are kept and their events looked up (see :mod:`operators.sinks.labels`)."""

    def record(self, labels: Sequence[Label]) -> int: ...

    def lookup(self, event_ids: Sequence[str]) -> dict[str, EventRef]: ...


@dataclass(frozen=True, slots=True)
class Pending:
    label: Label
    since: float
    """Wall-clock time the label first failed to find its event."""


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
