"""One identity, one verdict: the event ids the job has already accepted.

The first message with an ``event_id`` is scored; a later one (an identical
re-send or a different payload under the same id) changes no state and gets no
second verdict anywhere. Ids are remembered for ``window_s`` of wall-clock time
and at most ``max_ids`` in all, the oldest forgotten first; the memory is part
of the job's recovered state, so a restart forgets nothing.

The memory lives in the user's shard (:class:`operators.shards.UserShard`),
not in a shard of event ids: a user's events then reach the user state in the
order they arrived, as an exchange by event id would not keep them. An id
re-used under another ``user_id`` is therefore not caught (Postgres still keeps
its first row).

>>> seen, cfg = SeenEvents(), DedupConfig(window_s=60.0, max_ids=1_000)
>>> seen.first("e1", b"\\x01" * 32, now=0.0, config=cfg) is None
True
>>> hex(seen.first("e1", b"\\x02" * 32, now=1.0, config=cfg))
'0x101010101010101'
>>> seen.evict(now=61.0, config=cfg); len(seen)
0
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass

import msgspec

from operators.events import encode_event
from operators.validation import Accepted, DeadLetter, Message, dead_letter

__all__ = ["DedupConfig", "SeenEvents", "admit", "duplicate_letter"]


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """Ids are remembered ``window_s`` (wall clock), at most ``max_ids`` in all over ``shards``."""

    window_s: float = 3600.0
    max_ids: int = 2_000_000
    shards: int = 64

    @property
    def max_per_shard(self) -> int:
        return -(-self.max_ids // self.shards)


def _id_hash(event_id: str) -> int:
    digest = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class _Snapshot(msgspec.Struct, array_like=True):
    ids: bytes
    digests: bytes
    times: bytes


class SeenEvents:
    """Ids seen in one shard, oldest first: a 64-bit hash of the id, the first
    8 bytes of the first payload's SHA-256 and the time it was seen.

    A dict answers "seen before?"; the order lives in three flat arrays (ids, digest
    prefixes, times) read from ``head``, the oldest id still remembered, so a snapshot
    is three copies of memory, not a walk over every id: with the memory full (2M ids
    over the shards) the walk took about 0.3 us an id at every epoch."""

    __slots__ = ("digests", "head", "ids", "prefixes", "times")

    def __init__(self) -> None:
        self.digests: dict[int, int] = {}
        self.ids = array("q")
        self.prefixes = array("q")
        self.times = array("d")
        self.head = 0

    def __len__(self) -> int:
        return len(self.times) - self.head

    def first(self, event_id: str, digest: bytes, now: float, config: DedupConfig) -> int | None:
        """None when ``event_id`` is new (it is remembered from now on), else the
        first payload's digest prefix (as a signed 64-bit integer)."""
        key = _id_hash(event_id)
        found = self.digests.get(key)
        if found is not None:
            return found
        prefix = int.from_bytes(digest[:8], "big", signed=True)
        self.digests[key] = prefix
        self.ids.append(key)
        self.prefixes.append(prefix)
        self.times.append(now)
        if len(self.times) - self.head > config.max_per_shard:
            self._drop_oldest()
        return None

    def evict(self, now: float, config: DedupConfig) -> None:
        """Forget ids older than the window."""
        before = now - config.window_s
        times = self.times
        while self.head < len(times) and times[self.head] < before:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        del self.digests[self.ids[self.head]]
        self.head += 1
        if self.head >= _COMPACT_FROM and 2 * self.head >= len(self.times):
            h = self.head
            del self.ids[:h], self.prefixes[:h], self.times[:h]
            self.head = 0

    def snapshot(self) -> bytes:
        """Compact bytes for Bytewax's recovery store (24 bytes per id)."""
        h = self.head
        return msgspec.msgpack.encode(
            _Snapshot(self.ids[h:].tobytes(), self.prefixes[h:].tobytes(), self.times[h:].tobytes())
        )

    @classmethod
    def restore(cls, data: bytes) -> SeenEvents:
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        seen = cls()
        seen.ids.frombytes(snap.ids)
        seen.prefixes.frombytes(snap.digests)
        seen.times.frombytes(snap.times)
        seen.digests = dict(zip(seen.ids, seen.prefixes, strict=True))
        return seen


_COMPACT_FROM = 4096
"""Forgotten ids kept at the front of the arrays before they are cut off (at least half)."""


def duplicate_letter(acc: Accepted, first_digest: int, now: float, max_value_bytes: int) -> DeadLetter:
    """The dead letter of a re-used id: both payloads' SHA-256 prefixes in the reason;
    the value is the event as decoded, re-encoded."""
    first = first_digest.to_bytes(8, "big", signed=True).hex()
    this = acc.digest[:8].hex()
    same = "an identical re-send" if first == this else "a different payload"
    topic, partition, offset = acc.origin or (None, None, None)
    msg = Message(acc.event.user_id.encode(), None, topic, partition, offset)
    error = (
        f"event_id: duplicate of an event already accepted ({same}; first payload sha256 {first}..., "
        f"this one {this}...)"
    )
    return dead_letter(msg, error, now, max_value_bytes, value=encode_event(acc.event))


def admit(
    seen: SeenEvents, batch: list[Accepted], now: float, config: DedupConfig, max_value_bytes: int
) -> tuple[list[Accepted | DeadLetter], int]:
    """The batch with every re-used id replaced by its dead letter, and how many there were."""
    seen.evict(now, config)
    out: list[Accepted | DeadLetter] = []
    dups = 0
    for acc in batch:
        first = seen.first(acc.event.event_id, acc.digest, acc.received_at, config)
        if first is None:
            out.append(acc)
        else:
            dups += 1
            out.append(duplicate_letter(acc, first, now, max_value_bytes))
    return out, dups
