"""A Kafka sink that confirms every delivery.

Bytewax's own ``KafkaSink`` registers no delivery callback and ignores what
``flush()`` returns, so failed sends vanish. This one records each message's
delivery report, re-sends the failed ones with backoff and raises
:class:`DeliveryError` when they still fail, so the job stops loudly rather
than losing alerts or dead letters. Delivery is at-least-once: a consumer
deduplicates on the message key plus ``event_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from operators import metrics
from operators.sinks.retry import RetryPolicy, SinkError, retrying

__all__ = ["DeliveredKafkaSink", "DeliveryError", "KafkaRecord"]

T = TypeVar("T")
KafkaRecord = tuple[bytes | None, bytes, int | None]
"""Key, value and the broker timestamp (ms) of the input it came from."""


class DeliveryError(SinkError):
    """Messages were not acknowledged by the broker after all retries."""


class _Undelivered(Exception):
    """Some messages of an attempt were not acknowledged (retried by :func:`retrying`)."""


class _Partition(StatelessSinkPartition[T], Generic[T]):
    def __init__(
        self,
        name: str,
        topic: str,
        config: dict[str, str | int | bool],
        encode: Callable[[T], KafkaRecord],
        policy: RetryPolicy,
        timeout_s: float,
    ) -> None:
        self.name, self.topic, self.encode = name, topic, encode
        self.policy, self.timeout_s = policy, timeout_s
        self.producer = Producer(config)

    def _send(self, records: list[KafkaRecord]) -> tuple[list[KafkaRecord], KafkaError | None]:
        failed: list[KafkaRecord] = []
        last_error: list[KafkaError] = []

        def report(record: KafkaRecord, err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failed.append(record)
                last_error.append(err)
            elif record[2] is not None:
                metrics.END_TO_END_LATENCY.labels(self.name).observe(
                    max(0.0, time.time() - record[2] / 1000.0)
                )

        for record in records:
            while True:
                try:
                    self.producer.produce(
                        self.topic, key=record[0], value=record[1], on_delivery=partial(report, record)
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
        if self.producer.flush(self.timeout_s) > 0:
            self.producer.purge(in_queue=True, in_flight=False, blocking=True)
            self.producer.flush(1.0)
        return failed, (last_error[-1] if last_error else None)

    def write_batch(self, items: list[T]) -> None:
        pending = [self.encode(item) for item in items]
        attempts = 0

        def attempt() -> None:
            nonlocal pending, attempts
            attempts += 1
            failed, err = self._send(pending)
            metrics.SINK_RECORDS.labels(self.name).inc(len(pending) - len(failed))
            pending = failed
            if failed:
                raise _Undelivered(f"{len(failed)} messages to topic {self.topic!r} not delivered: {err}")

        try:
            retrying(self.name, self.policy, attempt, (_Undelivered,))
        except SinkError as exc:
            raise DeliveryError(
                f"{self.name}: {len(pending)} messages to topic {self.topic!r} not delivered after "
                f"{attempts} attempts: {exc.__cause__}"
            ) from exc

    def close(self) -> None:
        self.producer.flush(self.timeout_s)


class DeliveredKafkaSink(DynamicSink[T], Generic[T]):
    """Produce ``encode(item)`` for every item to ``topic``, confirming delivery."""

    def __init__(
        self,
        name: str,
        brokers: str,
        topic: str,
        encode: Callable[[T], KafkaRecord],
        policy: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        client_config: dict[str, str] | None = None,
    ) -> None:
        self.name, self.topic, self.encode = name, topic, encode
        self.policy = policy or RetryPolicy()
        self.timeout_s = timeout_s
        self.config: dict[str, str | int | bool] = {
            "bootstrap.servers": brokers,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(timeout_s * 1000),
            "compression.type": "lz4",
        }
        self.config.update(client_config or {})

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition[T]:
        return _Partition(self.name, self.topic, dict(self.config), self.encode, self.policy, self.timeout_s)
