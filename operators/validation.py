"""Decode and validate raw Kafka messages into events or dead letters.

>>> from bytewax.connectors.kafka import KafkaSourceMessage
>>> out = check_message(KafkaSourceMessage(b"u", b"not json", topic="t", partition=0, offset=7),
...                     ValidationLimits(), now=0.0)
>>> (out.error, out.offset)
('payload: JSON is malformed: invalid character (byte 4)', 7)
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import bytewax.operators as op
import msgspec
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Stream

from operators import metrics
from operators.events import InvalidEvent, TransactionEvent, ValidationLimits, decode_event

__all__ = ["Accepted", "DeadLetter", "ValidatedStreams", "check_message", "error_field", "validate"]

log = logging.getLogger(__name__)

RawMessage = KafkaSourceMessage[bytes | None, bytes | None]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid event with what the job knows of its arrival.

    ``ts`` is the event time in epoch seconds; ``ingest_ms`` the broker's
    message timestamp (start of the end-to-end latency); ``received_at`` the
    wall-clock time the job decoded it.
    """

    event: TransactionEvent
    ts: float
    ingest_ms: int | None
    received_at: float


class DeadLetter(msgspec.Struct, frozen=True):
    """What the dead-letter topic receives (see docs/contract.md)."""

    value: str
    value_encoding: str
    error: str
    topic: str | None
    partition: int | None
    offset: int | None
    failed_at: str
    key: str | None = None


@dataclass(frozen=True)
class ValidatedStreams:
    oks: Stream[Accepted]
    errs: Stream[DeadLetter]


def _text(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _ingest_ms(msg: RawMessage) -> int | None:
    if msg.timestamp is None:
        return None
    kind, value = msg.timestamp
    return value if kind != 0 and value > 0 else None


def dead_letter(msg: RawMessage, error: str, now: float) -> DeadLetter:
    value, encoding = _text(msg.value or b"")
    key = _text(msg.key)[0] if msg.key is not None else None
    return DeadLetter(
        value,
        encoding,
        error,
        msg.topic,
        msg.partition,
        msg.offset,
        datetime.fromtimestamp(now, UTC).isoformat(),
        key,
    )


def error_field(error: str) -> str:
    """The top-level field an error names (bounded label values for metrics).

    >>> error_field("attributes.'x': contains a NUL character")
    'attributes'
    """
    return re.split(r"[.\[:]", error, maxsplit=1)[0] or "payload"


def check_message(msg: RawMessage, limits: ValidationLimits, now: float) -> Accepted | DeadLetter:
    """One message to an :class:`Accepted` event or a :class:`DeadLetter`."""
    result = decode_event(msg.value, limits, datetime.fromtimestamp(now, UTC))
    if isinstance(result, InvalidEvent):
        return dead_letter(msg, result.error, now)
    return Accepted(result, result.timestamp.timestamp(), _ingest_ms(msg), now)


def validate(
    step_id: str,
    up: Stream[RawMessage | KafkaError],
    limits: ValidationLimits,
    clock: Callable[[], float] = time.time,
) -> ValidatedStreams:
    """Split raw messages into valid events and dead letters (nothing is dropped).

    Consumer errors from the source carry no event: they are logged and counted.
    """

    def check_batch(batch: list[RawMessage | KafkaError]) -> list[Accepted | DeadLetter]:
        started = time.perf_counter()
        now = clock()
        out: list[Accepted | DeadLetter] = []
        for item in batch:
            if isinstance(item, KafkaError):
                log.warning("%s: consumer error: %s", step_id, item.err)
                metrics.EVENTS.labels("consumer_error").inc()
                continue
            result = check_message(item, limits, now)
            if isinstance(result, DeadLetter):
                metrics.EVENTS.labels("dead_lettered").inc()
                metrics.DLQ_EVENTS.labels(error_field(result.error)).inc()
            out.append(result)
        metrics.STAGE_SECONDS.labels("validate").observe(time.perf_counter() - started)
        return out

    checked = op.flat_map_batch("check", up, check_batch)
    branch = op.branch("split", checked, lambda r: isinstance(r, Accepted))
    return ValidatedStreams(branch.trues, branch.falses)  # type: ignore[arg-type]
