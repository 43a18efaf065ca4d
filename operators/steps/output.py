"""The verdicts' output step, each large write stored while the job computes the next batch.

A plain Bytewax output step writes a batch and returns: while Postgres stores the rows
(on the other core), the worker waits. Here the output is a ``stateful_batch`` step, for
its epoch hook: a batch of at least ``min_events`` verdicts is begun (rows sent, records
produced, Redis scripts sent; :class:`operators.sinks.fanout.Fanout`) and finished later,
by whichever comes first:

- the next batch, which finishes it before it begins its own (one write pending per worker);
- ``hold_s`` of wall time with no next batch (a timer, so the last batch is never stuck);
- the close of the epoch: Bytewax calls ``snapshot`` on every key the epoch woke before the
  epoch's snapshots and offsets are committed, so nothing an epoch records as read is
  unwritten (the guarantee a plain output step gives; kill -9 recovery relies on it);
- the end of the input.

Smaller batches (low traffic, where latency counts) are written before the step returns.

The step is keyed by :func:`operators.steps.home.here`, a key the job's previous keyed
step ran on this worker, so Bytewax routes every batch back to the worker that scored it:
nothing is pickled to another process. The sinks' partitions are built once per worker
thread and shared by the keys it runs (``worker_index`` is the thread's order of first
use in its process: the verdict sinks must not depend on it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators.sinks.fanout import Fanout, FanoutPartition
from operators.steps import home

__all__ = ["Writer", "overlapped_output"]

T = TypeVar("T")


class Writer(Generic[T]):
    """One worker's sink partitions and its pending write (pure of Bytewax: tested alone)."""

    def __init__(
        self, part: FanoutPartition[T], min_events: int, hold_s: float, wall: Callable[[], float] = time.time
    ) -> None:
        self.part, self.min_events, self.hold_s, self.wall = part, min_events, hold_s, wall
        self.pending: Callable[[], None] | None = None
        self.due: float | None = None

    def write(self, items: list[T]) -> None:
        """Finish the pending write, then write ``items``: begun only where large enough."""
        self.finish()
        if not items:
            return
        if len(items) < self.min_events:
            self.part.begin(items)()
            return
        self.pending = self.part.begin(items)
        self.due = self.wall() + self.hold_s

    def finish(self) -> None:
        """Finish the pending write, if any (raises what the sinks raise)."""
        pending, self.pending, self.due = self.pending, None, None
        if pending is not None:
            pending()

    def finish_due(self) -> None:
        """Finish the pending write if its hold is over.

        Bytewax keeps a key's last notify time until it fires, even after ``on_batch``
        replaced the write it was set for: that stale time must not finish the new write
        the moment it is begun (it fires in the same activation).
        """
        if self.due is not None and self.wall() >= self.due:
            self.finish()

    def close(self) -> None:
        try:
            self.finish()
        finally:
            self.part.close()


class _Writers(Generic[T]):
    """Each worker thread's :class:`Writer`, built on its first use."""

    def __init__(self, step_id: str, sink: Fanout[T], workers: int, make: Callable[[Any], Writer[T]]) -> None:
        self.step_id, self.sink, self.workers, self.make = step_id, sink, workers, make
        self.by_thread: dict[int, Writer[T]] = {}
        self.lock = threading.Lock()

    def here(self) -> Writer[T]:
        thread = threading.get_ident()
        writer = self.by_thread.get(thread)
        if writer is None:
            with self.lock:
                index = len(self.by_thread)
                writer = self.by_thread[thread] = self.make(
                    self.sink.build(self.step_id, index, self.workers)
                )
        return writer

    def existing(self) -> Writer[T] | None:
        """This thread's writer where it has one (built by :meth:`here`)."""
        return self.by_thread.get(threading.get_ident())

    def close_here(self) -> None:
        writer = self.by_thread.pop(threading.get_ident(), None)
        if writer is not None:
            writer.close()


class _Logic(StatefulBatchLogic[list[T], None, None], Generic[T]):
    def __init__(self, writers: _Writers[T]) -> None:
        self.writers = writers

    def on_batch(self, values: list[list[T]]) -> tuple[list[None], bool]:
        self.writers.here().write([x for batch in values for x in batch])
        return [], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[None], bool]:
        self.writers.here().finish_due()
        return [], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[None], bool]:
        self.writers.close_here()
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        writer = self.writers.existing()
        due = None if writer is None else writer.due
        return None if due is None else datetime.fromtimestamp(due, UTC)

    def snapshot(self) -> None:
        writer = self.writers.existing()
        if writer is not None:
            writer.finish()


def _keyed(lists: list[list[T]]) -> list[tuple[str, list[T]]]:
    """Every list of one activation under a key that routes back here (``on_batch`` gets
    them together and joins them once)."""
    key = home.here()
    return [(key, items) for items in lists if items]


@operator
def overlapped_output(
    step_id: str,
    up: Stream[list[T]],
    sink: Fanout[T],
    min_events: int,
    hold_s: float,
    workers: int = 1,
    wall: Callable[[], float] = time.time,
) -> None:
    """Write every list of ``up`` to ``sink``, a batch of ``min_events`` or more finished
    after the next one is computed (at most ``hold_s`` later, always before its epoch
    closes); ``min_events = 0`` is a plain output step."""
    if min_events <= 0:
        op.output("write", up, sink)
        return
    writers: _Writers[T] = _Writers(
        step_id, sink, workers, lambda part: Writer(part, min_events, hold_s, wall)
    )
    keyed: op.KeyedStream[list[T]] = op.flat_map_batch("home", up, _keyed)
    done = op.stateful_batch("write", keyed, lambda _resume: _Logic(writers))
    op.inspect("written", done, _nothing)  # emits nothing; Bytewax wants a flow to end in an output


def _nothing(step_id: str, item: object) -> None:
    return None
