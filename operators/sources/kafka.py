"""The Kafka source of the job: Bytewax's ``KafkaSource``, hardened, and with
``batches=True`` emitting one :class:`~operators.validation.RawBatch` per poll of a
partition instead of one item per message (offsets are kept exactly as before,
so recovery resumes at the same message); without it, one plain
:class:`~operators.validation.Message` per message (the labels). Neither mode blocks
the worker on a partition with nothing to read."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.connectors.kafka import KafkaSource, _list_parts
from bytewax.connectors.kafka import _KafkaSourcePartition as _BytewaxPartition
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.admin import AdminClient

from operators import metrics
from operators.validation import RawBatch

__all__ = ["KafkaEventSource", "admin_config"]

log = logging.getLogger(__name__)


def _never() -> bool:
    return False


CONSUMER_ONLY = frozenset(
    {
        "group.id",
        "group.instance.id",
        "group.protocol",
        "group.remote.assignor",
        "partition.assignment.strategy",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "coordinator.query.interval.ms",
        "max.poll.interval.ms",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "enable.auto.offset.store",
        "auto.offset.reset",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "fetch.wait.max.ms",
        "fetch.queue.backoff.ms",
        "fetch.message.max.bytes",
        "max.partition.fetch.bytes",
        "fetch.max.bytes",
        "fetch.min.bytes",
        "fetch.error.backoff.ms",
        "offset.store.method",
        "isolation.level",
        "consume.callback.max.messages",
        "enable.partition.eof",
        "check.crcs",
    }
)
"""librdkafka consumer properties (``C`` in its CONFIGURATION.md) that a producer-type
client, such as an admin client, would warn about and ignore."""


def admin_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the consumer-only properties, for an admin client.

    >>> admin_config({"fetch.wait.max.ms": "10", "security.protocol": "SASL_SSL"})
    {'security.protocol': 'SASL_SSL'}
    """
    return {k: v for k, v in config.items() if k not in CONSUMER_ONLY}


EMPTY_POLL_PAUSE = timedelta(milliseconds=1)
"""How long a partition that had nothing waits before it is polled again."""


class _Partition(_BytewaxPartition):
    stopping: Callable[[], bool] = staticmethod(_never)
    batches: bool = False
    _awake: datetime | None = None

    def next_awake(self) -> datetime | None:
        return self._awake

    def next_batch(self) -> list[Any]:
        # A stop request ends this partition's input: the dataflow then finishes
        # what is in flight and returns (a quiet shutdown, with no exception
        # raised inside Bytewax's Rust loop).
        if self.stopping():
            raise StopIteration
        polled = self._raw_batch()
        if self.batches:
            return polled
        return [batch.message(i) for batch in polled for i in range(len(batch))]

    def _raw_batch(self) -> list[RawBatch]:
        if self._eof:
            raise StopIteration
        # What is already fetched, at once. An empty queue does not block the worker
        # (its other partitions and steps go on): this partition is polled again in
        # a millisecond (next_awake). Blocking 1 ms per poll, as Bytewax's source
        # does, stalled a worker 1 ms for every quiet partition it polled.
        msgs = self._consumer.consume(self._batch_size, 0)
        self._awake = None if msgs else datetime.now(UTC) + EMPTY_POLL_PAUSE
        offsets: list[int] = []
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        stamps: list[tuple[int, int] | None] = []
        headers: list[Any] = []
        last = None
        for msg in msgs:
            error = msg.error()
            if error is not None:
                if error.code() == ConfluentKafkaError._PARTITION_EOF:
                    self._eof = True
                    break
                log.warning("consumer error on %s[%d]: %s", self._topic, self._part_idx, error)
                metrics.EVENTS.labels("consumer_error").inc()
                continue
            last = msg.offset()
            offsets.append(last)  # type: ignore[arg-type]
            keys.append(msg.key())
            values.append(msg.value())
            stamps.append(msg.timestamp())
            headers.append(msg.headers())
        if last is not None:
            self._offset = last + 1
        if not values:
            return []
        return [RawBatch(self._topic, self._part_idx, offsets, keys, values, stamps, headers)]

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

    def __init__(
        self, *args: Any, stopping: Callable[[], bool] = _never, batches: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = stopping
        self._batches = batches

    def list_parts(self) -> list[str]:
        # Bytewax lists partitions with an AdminClient given ``add_config`` whole;
        # an admin client is a producer to librdkafka, which then warns on every
        # start that consumer settings (fetch.wait.max.ms, ...) will be ignored.
        config: dict[str, Any] = {"bootstrap.servers": ",".join(self._brokers)}
        config.update(admin_config(self._add_config))
        return list(_list_parts(AdminClient(config), self._topics))

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
        part.batches = self._batches
        return part
