"""A Kafka sink that confirms every delivery.

Bytewax's own ``KafkaSink`` registers no delivery callback and ignores what
``flush()`` returns, so failed sends vanish. This one records each message's
delivery report, re-sends the failed ones with backoff and raises
:class:`DeliveryError` when they still fail, so the job stops loudly rather
than losing alerts or dead letters. Delivery is at-least-once: a consumer
deduplicates on the message key plus ``event_id``.

A record the broker refuses for good (too large, invalid) is never retried: with
``drop_refused`` (the dead-letter sink) it is logged and counted in
``fraudstream_sink_refused_total`` and the job goes on; otherwise it fails loudly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from operators import metrics
from operators.sinks.retry import RetryPolicy, SinkError, retrying

__all__ = ["REFUSED", "DeliveredKafkaSink", "DeliveryError", "KafkaRecord"]

log = logging.getLogger(__name__)

T = TypeVar("T")
KafkaRecord = tuple[bytes | None, bytes, int | None]
"""Key, value and the broker timestamp (ms) of the input it came from."""


REFUSED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
"""Errors that no retry can fix: the broker refuses the record itself."""


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
        drop_refused: bool,
    ) -> None:
        self.name, self.topic, self.encode = name, topic, encode
        self.policy, self.timeout_s, self.drop_refused = policy, timeout_s, drop_refused
        self.producer = Producer(config)

    def _refused(self, record: KafkaRecord, err: KafkaError) -> bool:
        """True when ``err`` refuses ``record`` for good and this sink drops such records."""
        if not self.drop_refused or err.code() not in REFUSED:
            return False
        metrics.SINK_REFUSED.labels(self.name).inc()
        log.error(
            "%s: the broker refused a %d-byte record for good (%s); dropped and counted",
            self.name,
            len(record[1]),
            err.str(),
        )
        return True

    def _send(self, records: list[KafkaRecord]) -> tuple[list[KafkaRecord], KafkaError | None]:
        """Produce every record and wait for the broker's reports; the failed ones come back.

        One delivery callback for all records (no closure per message) and one
        latency histogram update per batch, once the broker acknowledged it."""
        failed: list[KafkaRecord] = []
        last_error: list[KafkaError] = []

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                record: KafkaRecord = (msg.key(), msg.value() or b"", None)
                if not self._refused(record, err):
                    failed.append(record)
                    last_error.append(err)

        produce, topic = self.producer.produce, self.topic
        for record in records:
            while True:
                try:
                    produce(topic, record[1], record[0], on_delivery=report)
                    break
                except BufferError:
                    self.producer.poll(0.05)
                except KafkaException as exc:
                    if not self._refused(record, exc.args[0]):
                        raise DeliveryError(
                            f"{self.name}: topic {self.topic!r} refused a record: {exc}"
                        ) from exc
                    break
        if self.producer.flush(self.timeout_s) > 0:
            self.producer.purge(in_queue=True, in_flight=False, blocking=True)
            self.producer.flush(1.0)
        if not failed:
            now = time.time()
            metrics.observe_many(
                metrics.END_TO_END_LATENCY.labels(self.name),
                [max(0.0, now - r[2] / 1000.0) for r in records if r[2] is not None],
            )
        return failed, (last_error[-1] if last_error else None)

    def write_batch(self, items: list[T]) -> None:
        began = time.perf_counter()
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
        metrics.STAGE_SECONDS.labels(f"sink_{self.name}").observe(time.perf_counter() - began)

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
        drop_refused: bool = False,
    ) -> None:
        self.name, self.topic, self.encode = name, topic, encode
        self.drop_refused = drop_refused
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
        return _Partition(
            self.name,
            self.topic,
            dict(self.config),
            self.encode,
            self.policy,
            self.timeout_s,
            self.drop_refused,
        )
