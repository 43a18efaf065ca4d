"""Sinks receive the job's verdicts as lists (one per model call): this adapter
lets any sink of items take a stream of lists, writing each Bytewax batch of
lists as one batch of items."""

from __future__ import annotations

from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["Flattened"]

T = TypeVar("T")


class _Partition(StatelessSinkPartition[list[T]], Generic[T]):
    def __init__(self, inner: StatelessSinkPartition[T]) -> None:
        self.inner = inner

    def write_batch(self, items: list[list[T]]) -> None:
        flat = [x for batch in items for x in batch]
        if flat:
            self.inner.write_batch(flat)

    def close(self) -> None:
        self.inner.close()


class Flattened(DynamicSink[list[T]], Generic[T]):
    """``inner``, fed with the items of every list."""

    def __init__(self, inner: DynamicSink[T]) -> None:
        self.inner = inner

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition[T]:
        return _Partition(self.inner.build(step_id, worker_index, worker_count))
