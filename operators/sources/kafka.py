"""The Kafka source of the job: Bytewax's ``KafkaSource``, hardened."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from bytewax.connectors.kafka import KafkaSource
from bytewax.connectors.kafka import _KafkaSourcePartition as _BytewaxPartition

__all__ = ["KafkaEventSource"]


def _never() -> bool:
    return False


class _Partition(_BytewaxPartition):
    stopping: Callable[[], bool] = staticmethod(_never)

    def next_batch(self) -> list[Any]:
        # A stop request ends this partition's input: the dataflow then finishes
        # what is in flight and returns (a quiet shutdown, with no exception
        # raised inside Bytewax's Rust loop).
        if self.stopping():
            raise StopIteration
        return super().next_batch()

    def _process_stats(self, json_stats: str) -> None:
        # Bytewax indexes the statistics by topic and partition without checking
        # they are there yet; right after (re)assignment they may not be, and the
        # KeyError then escapes from consume() and kills the worker thread.
        with contextlib.suppress(KeyError, ValueError):
            super()._process_stats(json_stats)


class KafkaEventSource(KafkaSource):
    """Bytewax's ``KafkaSource`` (offsets kept by Bytewax recovery), hardened:
    statistics arriving before the partition is known no longer crash the
    worker, and an offset beyond a (re-created) topic's end restarts from its
    beginning instead of skipping what was produced meanwhile. ``stopping``,
    when it returns True, ends every partition: the job drains and stops."""

    def __init__(self, *args: Any, stopping: Callable[[], bool] = _never, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = stopping

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        idx, topic = for_part.split("-", 1)
        config = {
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
            "auto.offset.reset": "earliest",
        }
        config.update(self._add_config)
        part = _Partition(
            step_id,
            config,
            topic,
            int(idx),
            self._starting_offset,
            resume_state,
            self._batch_size,
            self._raise_on_errors,
        )
        part.stopping = self._stopping
        return part
