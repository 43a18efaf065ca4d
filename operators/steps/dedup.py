"""The dedup step: the first message of an ``event_id`` goes on, later ones
become dead letters (see :mod:`operators.dedup`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators import metrics
from operators.dedup import DedupConfig, SeenEvents, admit, shard_of
from operators.validation import Accepted, DeadLetter

__all__ = ["DedupStreams", "deduplicate"]


@dataclass(frozen=True)
class DedupStreams:
    oks: Stream[Accepted]
    """First messages of their ids."""
    dups: Stream[DeadLetter]
    """Later messages with an id already seen, as dead letters."""


class _Shard(StatefulBatchLogic[Accepted, "Accepted | DeadLetter", bytes]):
    def __init__(
        self, seen: SeenEvents, config: DedupConfig, clock: Callable[[], float], max_value_bytes: int
    ) -> None:
        self.seen, self.config, self.clock, self.max_value_bytes = seen, config, clock, max_value_bytes

    def on_batch(self, values: list[Accepted]) -> tuple[list[Accepted | DeadLetter], bool]:
        out, dups = admit(self.seen, values, self.clock(), self.config, self.max_value_bytes)
        if dups:
            metrics.EVENTS.labels("duplicate").inc(dups)
            metrics.DLQ_EVENTS.labels("event_id").inc(dups)
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return self.seen.snapshot()


@operator
def deduplicate(
    step_id: str,
    up: Stream[Accepted],
    config: DedupConfig,
    max_value_bytes: int,
    clock: Callable[[], float] = time.time,
) -> DedupStreams:
    """Let the first message of each ``event_id`` through; later ones become dead letters.

    Sharded by user, so each user's events leave in the order they came."""

    def build(resume: bytes | None) -> _Shard:
        seen = SeenEvents.restore(resume) if resume is not None else SeenEvents()
        return _Shard(seen, config, clock, max_value_bytes)

    keyed = op.key_on("shard", up, lambda acc: shard_of(acc.event.user_id))
    checked = op.key_rm("unshard", op.stateful_batch("seen", keyed, build))
    branch = op.branch("split", checked, lambda r: isinstance(r, Accepted))
    return DedupStreams(branch.trues, branch.falses)  # type: ignore[arg-type]
