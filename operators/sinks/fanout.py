"""One output step for several sinks of the same verdicts, their waits overlapped.

Each sink partition that can split a write (``begin(items)`` returning the call that
finishes it: Postgres, Kafka) is begun in turn, then finished in reverse order, so
while the job packs the Redis commands and produces the decisions, Postgres stores the
rows it was sent and the broker acknowledges; one after another the job waited for
each. Every write is finished before ``write_batch`` returns, so what an epoch's
snapshot records as written is written (the guarantee the separate outputs gave).
Sinks without ``begin`` are written whole where they come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["Fanout", "FanoutPartition", "Splittable", "begin"]

T = TypeVar("T")


@runtime_checkable
class Splittable(Protocol[T]):
    """A sink partition whose write can be split: ``begin(items)()`` is ``write_batch(items)``."""

    def begin(self, items: list[T]) -> Callable[[], None]: ...


def _done() -> None:
    return None


def begin(part: StatelessSinkPartition[T], items: list[T]) -> Callable[[], None]:
    """Start writing ``items`` to ``part``; call the result to finish (a sink that cannot
    split its write has written them by then)."""
    if isinstance(part, Splittable):
        return part.begin(items)
    part.write_batch(items)
    return _done


class FanoutPartition(StatelessSinkPartition[list[T]], Generic[T]):
    def __init__(self, parts: Sequence[StatelessSinkPartition[T]]) -> None:
        self.parts = tuple(parts)

    def write_batch(self, items: list[list[T]]) -> None:
        flat = [x for batch in items for x in batch]
        if flat:
            self.begin(flat)()

    def begin(self, items: list[T]) -> Callable[[], None]:
        """Begin writing ``items`` to every sink, in order; the result finishes them in the
        reverse one and raises the first error (a sink that failed to begin fails it; what
        was begun before it is finished first)."""
        finishers: list[Callable[[], None]] = []
        error: BaseException | None = None
        try:
            for part in self.parts:
                finishers.append(begin(part, items))
        except BaseException as exc:  # finish what was begun, then fail
            error = exc

        def finish() -> None:
            failed = error
            for done in reversed(finishers):
                try:
                    done()
                except BaseException as exc:
                    failed = failed or exc
            if failed is not None:
                raise failed

        if error is not None:
            finish()
        return finish

    def close(self) -> None:
        error: BaseException | None = None
        for part in self.parts:
            try:
                part.close()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error


class Fanout(DynamicSink[list[T]], Generic[T]):
    """``sinks`` fed with the items of every list, begun in this order and finished in the
    reverse one (put the one that takes longest to finish first)."""

    def __init__(self, sinks: Sequence[DynamicSink[T]]) -> None:
        self.sinks = tuple(sinks)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> FanoutPartition[T]:
        parts: list[Any] = [sink.build(step_id, worker_index, worker_count) for sink in self.sinks]
        return FanoutPartition(parts)
