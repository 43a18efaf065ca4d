"""Decode and validate raw Kafka messages into events or dead letters (pure; the
step is :mod:`operators.steps.validation`).

>>> out = check_message(Message(b"u", b"not json", "t", 0, 7), ValidationLimits(), now=0.0)
>>> (out.error, out.offset)
('payload: JSON is malformed: invalid character (byte 4)', 7)
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from operators.events import (
    InvalidEvent,
    TransactionEvent,
    ValidationLimits,
    decode_event,
    undecodable_reason,
)

__all__ = [
    "REQUEST_ID_HEADER",
    "Accepted",
    "DeadLetter",
    "Message",
    "RawBatch",
    "RawMessage",
    "check_batch",
    "check_message",
    "dead_letter",
    "error_field",
]


class RawMessage(Protocol):
    """What validation reads of a Kafka message (Bytewax's ``KafkaSourceMessage`` is one)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def topic(self) -> str | None: ...
    @property
    def partition(self) -> int | None: ...
    @property
    def offset(self) -> int | None: ...
    @property
    def timestamp(self) -> tuple[int, int] | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


@dataclass(frozen=True, slots=True)
class Message:
    """A plain :class:`RawMessage` (tests, re-encoded duplicates)."""

    key: bytes | None
    value: bytes | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp: tuple[int, int] | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


REQUEST_ID_HEADER = "fraudstream-request-id"
"""Kafka header a producer (the gateway) sets to match the job's decision to its request."""
_MAX_ERROR_CHARS = 1_000
_MAX_KEY_BYTES = 256


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """A valid event with what the job knows of its arrival.

    ``ts`` is the event time in epoch seconds; ``ingest_ms`` the broker's
    message timestamp (start of the end-to-end latency); ``received_at`` the
    wall-clock time the job decoded it; ``digest`` the SHA-256 of the payload
    (one identity, one verdict: see :mod:`operators.dedup`); ``request_id`` the
    producer's request token (header ``fraudstream-request-id``), echoed on the
    decision; ``origin`` the message's topic, partition and offset.

    A struct, not a dataclass: built once per event and pickled whenever it
    crosses to another process, both several times faster (no reference
    cycles are possible, so the garbage collector does not track it).
    """

    event: TransactionEvent
    ts: float
    ingest_ms: int | None
    received_at: float
    digest: bytes = b""
    request_id: str | None = None
    origin: tuple[str | None, int | None, int | None] | None = None


class DeadLetter(msgspec.Struct, frozen=True):
    """What the dead-letter topic receives (see docs/contract.md).

    Bounded whatever the input: ``value`` keeps at most ``max_value_bytes`` of
    the payload (``truncated`` says so), ``value_bytes`` and ``value_sha256``
    describe the whole payload, the error and the key are cut to a fixed size.
    """

    value: str
    value_encoding: str
    error: str
    topic: str | None
    partition: int | None
    offset: int | None
    failed_at: str
    key: str | None = None
    value_bytes: int = 0
    value_sha256: str = ""
    truncated: bool = False


def _text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _cut(raw: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of ``raw``, not splitting a UTF-8 character."""
    if len(raw) <= limit:
        return raw
    prefix = raw[:limit]
    try:
        prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= limit - 3:
            return prefix[: exc.start]
    return prefix


def _broker_ms(timestamp: tuple[int, int] | None) -> int | None:
    if timestamp is None:
        return None
    kind, value = timestamp
    return value if kind != 0 and value > 0 else None


def dead_letter(
    msg: RawMessage, error: str, now: float, max_value_bytes: int = 16_384, value: bytes | None = None
) -> DeadLetter:
    """The dead letter for ``msg`` (``value`` replaces its payload, e.g. a re-encoded duplicate).

    >>> big = Message(b"k", b"x" * 100, "t", 0, 1)
    >>> d = dead_letter(big, "payload: too big", 0.0, max_value_bytes=8)
    >>> (d.value, d.value_bytes, d.truncated, d.value_sha256[:8])
    ('xxxxxxxx', 100, True, '09ecb6eb')
    """
    raw = (msg.value or b"") if value is None else value
    text, encoding = _text(_cut(raw, max_value_bytes))
    key = _text(msg.key[:_MAX_KEY_BYTES])[0] if msg.key is not None else None
    return DeadLetter(
        text,
        encoding,
        error[:_MAX_ERROR_CHARS],
        msg.topic,
        msg.partition,
        msg.offset,
        datetime.fromtimestamp(now, UTC).isoformat(),
        key,
        len(raw),
        hashlib.sha256(raw).hexdigest(),
        len(raw) > max_value_bytes,
    )


def _header_request_id(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    for name, value in headers or ():
        if name == REQUEST_ID_HEADER and value:
            return value[:64].decode("utf-8", "replace")
    return None


def error_field(error: str) -> str:
    """The top-level field an error names (bounded label values for metrics).

    >>> error_field("attributes.'x': contains a NUL character")
    'attributes'
    """
    return re.split(r"[.\[:]", error, maxsplit=1)[0] or "payload"


def check_message(msg: RawMessage, limits: ValidationLimits, now: float) -> Accepted | DeadLetter:
    """One message to an :class:`Accepted` event or a :class:`DeadLetter`; never raises."""
    try:
        result = decode_event(msg.value, limits, datetime.fromtimestamp(now, UTC))
        if isinstance(result, InvalidEvent):
            return dead_letter(msg, result.error, now, limits.dead_letter_bytes)
        return _accepted(
            result, msg.value, msg.timestamp, msg.headers, (msg.topic, msg.partition, msg.offset), now
        )
    except Exception as exc:
        return dead_letter(msg, undecodable_reason(exc, msg.value or b""), now, limits.dead_letter_bytes)


def _accepted(
    event: TransactionEvent,
    value: bytes | None,
    timestamp: tuple[int, int] | None,
    headers: Sequence[tuple[str, bytes]] | None,
    origin: tuple[str | None, int | None, int | None],
    now: float,
) -> Accepted:
    return Accepted(
        event,
        event.timestamp.timestamp(),
        _broker_ms(timestamp),
        now,
        hashlib.sha256(value or b"").digest(),
        _header_request_id(headers),
        origin,
    )


def _accept(
    value: bytes | None,
    timestamp: tuple[int, int] | None,
    headers: Sequence[tuple[str, bytes]] | None,
    origin: tuple[str | None, int | None, int | None],
    limits: ValidationLimits,
    now: float,
    now_dt: datetime,
) -> Accepted | None:
    """:func:`check_message`'s accepted event from a batch's columns, without building a
    message first; None for anything else (the batch then asks :func:`check_message`)."""
    try:
        result = decode_event(value, limits, now_dt)
        if isinstance(result, InvalidEvent):
            return None
        return _accepted(result, value, timestamp, headers, origin, now)
    except Exception:
        return None


@dataclass(frozen=True, slots=True)
class RawBatch:
    """One poll of one partition: the messages as parallel lists (the job's source item).

    >>> batch = RawBatch.of([Message(b"u", b"{}", "t", 0, 5), Message(None, b"x", "t", 0, 6)])
    >>> len(batch), batch.offsets, batch.message(1).key
    (2, [5, 6], None)
    """

    topic: str | None
    partition: int | None
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: list[tuple[int, int] | None]
    headers: list[Sequence[tuple[str, bytes]] | None]

    def __len__(self) -> int:
        return len(self.values)

    def message(self, i: int) -> Message:
        return Message(
            self.keys[i],
            self.values[i],
            self.topic,
            self.partition,
            self.offsets[i],
            self.timestamps[i],
            self.headers[i],
        )

    @classmethod
    def of(cls, messages: Sequence[RawMessage]) -> RawBatch:
        """A batch of messages from one partition (tests build batches this way)."""
        first = messages[0] if messages else None
        return cls(
            first.topic if first else None,
            first.partition if first else None,
            [m.offset if m.offset is not None else -1 for m in messages],
            [m.key for m in messages],
            [m.value for m in messages],
            [m.timestamp for m in messages],
            [m.headers for m in messages],
        )


def check_batch(
    batch: RawBatch, limits: ValidationLimits, now: float
) -> tuple[list[Accepted], list[DeadLetter]]:
    """Every message of a batch to an event or a dead letter, in order; never raises."""
    accepted: list[Accepted] = []
    dead: list[DeadLetter] = []
    now_dt = datetime.fromtimestamp(now, UTC)
    topic, partition, offsets = batch.topic, batch.partition, batch.offsets
    columns = zip(batch.values, batch.timestamps, batch.headers, strict=True)
    for i, (value, timestamp, headers) in enumerate(columns):
        fast = _accept(value, timestamp, headers, (topic, partition, offsets[i]), limits, now, now_dt)
        # None: a dead letter (rare), and the reference path says why
        result = fast if fast is not None else check_message(batch.message(i), limits, now)
        if isinstance(result, Accepted):
            accepted.append(result)
        else:
            dead.append(result)
    return accepted, dead
