"""Micro-batching in front of the models: up to ``max_size`` events or
``max_wait_ms``, whichever comes first.

``max_wait_ms = 0`` (the default) adds no wait and does not use this step: a
batch is whatever Bytewax hands over in one activation, cut to ``max_size``
(see :func:`operators.steps.scoring.score`). With ``max_wait_ms > 0`` events are held per
shard (``crc32(user_id) % shards``, one shard per worker is a good choice) until
the batch fills or the wait expires: fewer, larger model calls at the cost of up
to ``max_wait_ms`` latency and one more exchange between workers.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from operators.features import Featured

__all__ = ["BatchLogic", "micro_batch"]


class BatchLogic(StatefulBatchLogic[Featured, list[Featured], list[Featured]]):
    """Hold one shard's pending events until the batch is full or the wait expires."""

    def __init__(
        self, pending: list[Featured], max_size: int, max_wait_s: float, clock: Callable[[], float]
    ) -> None:
        self.pending, self.max_size, self.max_wait_s, self.clock = pending, max_size, max_wait_s, clock
        self.deadline: float | None = clock() + max_wait_s if pending else None

    def on_batch(self, values: list[Featured]) -> tuple[list[list[Featured]], bool]:
        if not self.pending:
            self.deadline = self.clock() + self.max_wait_s
        self.pending.extend(values)
        out = []
        while len(self.pending) >= self.max_size:
            out.append(self.pending[: self.max_size])
            del self.pending[: self.max_size]
        if not self.pending:
            self.deadline = None
        return out, StatefulBatchLogic.RETAIN

    def _flush(self) -> tuple[list[list[Featured]], bool]:
        out = [self.pending] if self.pending else []
        self.pending, self.deadline = [], None
        return out, StatefulBatchLogic.DISCARD

    def on_notify(self) -> tuple[list[list[Featured]], bool]:
        return self._flush()

    def on_eof(self) -> tuple[list[list[Featured]], bool]:
        return self._flush()

    def notify_at(self) -> datetime | None:
        return None if self.deadline is None else datetime.fromtimestamp(self.deadline, UTC)

    def snapshot(self) -> list[Featured]:
        return list(self.pending)


def micro_batch(
    step_id: str,
    up: Stream[Featured],
    max_size: int,
    max_wait_ms: float = 0.0,
    shards: int = 1,
    clock: Callable[[], float] = time.time,
) -> Stream[list[Featured]]:
    """Group events into batches for the models, held up to ``max_wait_ms`` per shard."""
    keyed = op.key_on(
        f"{step_id}_shard", up, lambda f: str(zlib.crc32(f.accepted.event.user_id.encode()) % max(1, shards))
    )
    batched = op.stateful_batch(
        step_id, keyed, lambda resume: BatchLogic(resume or [], max_size, max_wait_ms / 1000.0, clock)
    )
    return op.key_rm(f"{step_id}_unkey", batched)
