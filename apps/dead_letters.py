"""`fraudstream dlq`: read the dead-letter topic, summarise it, and re-submit
selected dead letters once what rejected them is fixed.

A dead letter (docs/contract.md) keeps the payload as UTF-8 text or base64
(``value_encoding``), its key, and where it came from. Re-submitting produces
that payload, byte for byte, with its key, back to the topic it came from. A
``truncated`` dead letter kept only a prefix, and a duplicate's ``value`` is the
event re-encoded (its id already has its verdict): neither can be re-submitted,
and :func:`original_payload` says why; the SHA-256 of the whole payload must match.

>>> letter = DeadLetter('{"amount": -1}', "utf-8", "amount: Expected `float` >= 0.0", "transactions",
...                     2, 1041, "2026-11-23T05:19:21+00:00", "user-1", 14,
...                     hashlib.sha256(b'{"amount": -1}').hexdigest())
>>> original_payload(letter)
b'{"amount": -1}'
>>> entry = DeadLetterEntry(0, 7, letter)
>>> (entry.field, entry.source, Selection.parse(["2:1041"], ["amount"]).matches(entry))
('amount', 'transactions/2@1041', True)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import msgspec

from operators.validation import DeadLetter, error_field

__all__ = [
    "DeadLetterEntry",
    "NotResubmittable",
    "Selection",
    "original_payload",
    "preview",
    "read_dead_letters",
]

_DECODE = msgspec.json.Decoder(DeadLetter)
DUPLICATE = "event_id: duplicate of an event already accepted"
"""How the error of a re-used ``event_id`` starts (docs/contract.md)."""
READ_STALL_S = 30.0
"""Reading the existing dead letters gives up after this long without progress."""


class NotResubmittable(ValueError):
    """The dead letter does not hold the original payload (the message says why)."""


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One record of the dead-letter topic: where it is, and the dead letter (None if unreadable)."""

    partition: int
    offset: int
    letter: DeadLetter | None
    raw: bytes = b""

    @classmethod
    def of(cls, partition: int, offset: int, raw: bytes | None) -> DeadLetterEntry:
        try:
            return cls(partition, offset, _DECODE.decode(raw or b""))
        except msgspec.DecodeError:
            return cls(partition, offset, None, raw or b"")

    @property
    def field(self) -> str:
        """The top-level field the error names (``payload`` for the whole message)."""
        return error_field(self.letter.error) if self.letter else "(unreadable dead letter)"

    @property
    def source(self) -> str:
        """``topic/partition@offset`` of the message that was rejected."""
        d = self.letter
        if d is None:
            return "?"
        part, off = ("?" if v is None else v for v in (d.partition, d.offset))
        return f"{d.topic or '?'}/{part}@{off}"


def original_payload(letter: DeadLetter) -> bytes:
    """The payload exactly as it was sent, or :class:`NotResubmittable`."""
    if letter.error.startswith(DUPLICATE):
        raise NotResubmittable(
            "a duplicate of an event_id the job already scored: one identity, one verdict (its value "
            "is the event re-encoded, not what was sent)"
        )
    if letter.truncated:
        raise NotResubmittable(
            f"truncated: the dead letter kept {len(_decoded(letter))} of {letter.value_bytes} bytes"
        )
    payload = _decoded(letter)
    if letter.value_sha256 and hashlib.sha256(payload).hexdigest() != letter.value_sha256:
        raise NotResubmittable("its value does not match value_sha256: not the payload that was sent")
    return payload


def _decoded(letter: DeadLetter) -> bytes:
    if letter.value_encoding == "base64":
        try:
            return base64.b64decode(letter.value, validate=True)
        except binascii.Error as exc:
            raise NotResubmittable(f"value is not valid base64 ({exc})") from exc
    return letter.value.encode("utf-8")


def preview(entry: DeadLetterEntry, width: int = 60) -> str:
    """The payload on one line, at most ``width`` characters.

    >>> d = DeadLetter("a\\nb" + "x" * 100, "utf-8", "payload: x", "t", 0, 1, "", None, 103, "", False)
    >>> preview(DeadLetterEntry(0, 0, d), 12)
    'a\\\\nbxxxxxxx…'
    """
    d = entry.letter
    if d is None:
        text = repr(entry.raw[:width])
    elif d.value_encoding == "base64":
        text = f"(binary, {d.value_bytes} bytes) base64:{d.value}"
    else:
        text = d.value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= width else text[: width - 1] + "…"


_SOURCE = re.compile(r"^(?:(\d+)[:@/])?(\d+)$")


@dataclass(frozen=True)
class Selection:
    """Which dead letters to show or re-submit: by the source message's
    ``[PARTITION:]OFFSET`` and by error field (any of each; none given: all)."""

    offsets: frozenset[tuple[int | None, int]] = frozenset()
    fields: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, offsets: Iterable[str], fields: Iterable[str]) -> Selection:
        """Raise ValueError naming the option for a malformed ``--offset``."""
        parsed: set[tuple[int | None, int]] = set()
        for spec in offsets:
            match = _SOURCE.match(spec.strip())
            if match is None:
                raise ValueError(
                    f"--offset: expected [PARTITION:]OFFSET of the rejected message, got {spec!r}"
                )
            part, off = match.groups()
            parsed.add((None if part is None else int(part), int(off)))
        return cls(frozenset(parsed), frozenset(f.strip() for f in fields if f.strip()))

    @property
    def empty(self) -> bool:
        return not self.offsets and not self.fields

    def matches(self, entry: DeadLetterEntry) -> bool:
        d = entry.letter
        if self.fields and entry.field not in self.fields:
            full = d.error.split(":", 1)[0] if d else ""
            if full not in self.fields:
                return False
        if self.offsets:
            if d is None or d.offset is None:
                return False
            if (d.partition, d.offset) not in self.offsets and (None, d.offset) not in self.offsets:
                return False
        return True


def read_dead_letters(
    bootstrap: str,
    topic: str,
    client_config: dict[str, str] | None = None,
    follow: bool = False,
    idle_s: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[DeadLetterEntry | None]:
    """Every record of ``topic`` from its beginning, in offset order per partition
    (LookupError when there is no such topic).

    Without ``follow`` it ends once every partition was read to its end (the
    fetches say so: some brokers' offset listings lag behind batched records).
    With it, it yields ``None`` once there, then goes on with new records until
    ``stop()`` or ``idle_s`` seconds without one."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from infra.topics import quiet_client_log

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fraudstream-dlq-cli",
            "enable.auto.commit": False,
            **(client_config or {}),
            "enable.partition.eof": True,
            "logger": quiet_client_log(),
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10).topics
        if topic not in metadata:
            raise LookupError(f"no topic {topic!r} yet: the job creates it when it starts (kafka.dlq_topic)")
        pending = set(metadata[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        idle_since = time.monotonic()
        caught_up = False
        while not stop():
            if not pending and not caught_up:
                caught_up, idle_since = True, time.monotonic()
                if not follow:
                    return
                yield None
            for msg in consumer.consume(500, 0.2):
                part, off, error = msg.partition(), msg.offset(), msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(part)
                    continue
                if part is None or off is None:
                    continue
                idle_since = time.monotonic()
                yield DeadLetterEntry.of(part, off, msg.value())
            idle = time.monotonic() - idle_since
            if not caught_up and idle > READ_STALL_S:
                raise RuntimeError(
                    f"reading {topic!r} from {bootstrap} stalled for {READ_STALL_S:.0f} s "
                    f"(partitions {sorted(pending)} not read to their end)"
                )
            if caught_up and idle_s is not None and idle > idle_s:
                return
    finally:
        consumer.close()
