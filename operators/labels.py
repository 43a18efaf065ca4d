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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol

import msgspec

from operators.events import InvalidEvent, TransactionEvent, decode_reason

__all__ = [
    "ENTITY_KEYS",
    "EventRef",
    "KnownLabel",
    "Label",
    "LabelStore",
    "Pending",
    "decode_label",
    "encode_label",
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
