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

One sink can write several topics (``also``: more :class:`KafkaRoute` s) through one
producer, waiting for the broker once per batch: the job's decisions and alerts go
together, one acknowledged round trip per cycle instead of two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from operators import metrics
from operators.sinks.retry import RetryPolicy, SinkError, retrying

__all__ = ["REFUSED", "DeliveredKafkaSink", "DeliveryError", "KafkaRecord", "KafkaRoute"]

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


@dataclass(frozen=True)
class KafkaRoute(Generic[T]):
    """The items of a sink bound for one topic: ``encode(item)`` of each that ``select``
    keeps (None: every item), counted in the metrics under ``name``."""

    name: str
    topic: str
    encode: Callable[[T], KafkaRecord]
    select: Callable[[T], bool] | None = None


class DeliveryError(SinkError):
    """Messages were not acknowledged by the broker after all retries."""


class _Undelivered(Exception):
    """Some messages of an attempt were not acknowledged (retried by :func:`retrying`)."""


class _Partition(StatelessSinkPartition[T], Generic[T]):
    def __init__(
        self,
        name: str,
        routes: Sequence[KafkaRoute[T]],
        config: dict[str, str | int | bool],
        policy: RetryPolicy,
        timeout_s: float,
        drop_refused: bool,
    ) -> None:
        self.name, self.routes = name, tuple(routes)
        self.by_topic = {route.topic: route for route in self.routes}
        self.policy, self.timeout_s, self.drop_refused = policy, timeout_s, drop_refused
        self.producer = Producer(config)

    def _refused(self, route: KafkaRoute[T], record: KafkaRecord, err: KafkaError) -> bool:
        """True when ``err`` refuses ``record`` for good and this sink drops such records."""
        if not self.drop_refused or err.code() not in REFUSED:
            return False
        metrics.SINK_REFUSED.labels(route.name).inc()
        log.error(
            "%s: the broker refused a %d-byte record for good (%s); dropped and counted",
            route.name,
            len(record[1]),
            err.str(),
        )
        return True

    def _send(self, batch: Batch[T]) -> tuple[Batch[T], KafkaError | None]:
        """Produce every record of every route and wait once for the broker's reports; the
        failed ones come back, by route."""
        return self._settle(batch, self._produce(batch))

    def _produce(self, batch: Batch[T]) -> _Reports:
        """Hand every record of every route to the producer (no wait for the broker); the
        failures :meth:`_settle` finds are collected in the reports.

        One delivery callback for all records (no closure per message)."""
        failed: dict[str, list[KafkaRecord]] = {}
        last_error: list[KafkaError] = []
        by_topic = self.by_topic

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                route = by_topic[msg.topic() or ""]
                record: KafkaRecord = (msg.key(), msg.value() or b"", None)
                if not self._refused(route, record, err):
                    failed.setdefault(route.topic, []).append(record)
                    last_error.append(err)

        produce = self.producer.produce
        for route, records in batch:
            topic = route.topic
            for record in records:
                while True:
                    try:
                        produce(topic, record[1], record[0], on_delivery=report)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                    except KafkaException as exc:
                        if not self._refused(route, record, exc.args[0]):
                            raise DeliveryError(
                                f"{route.name}: topic {topic!r} refused a record: {exc}"
                            ) from exc
                        break
        return failed, last_error

    def _settle(self, batch: Batch[T], reports: _Reports) -> tuple[Batch[T], KafkaError | None]:
        """Wait for the broker's reports of what :meth:`_produce` handed over; the failed
        records come back, by route. One latency histogram update per route and batch,
        once the broker acknowledged it."""
        failed, last_error = reports
        if self.producer.flush(self.timeout_s) > 0:
            self.producer.purge(in_queue=True, in_flight=False, blocking=True)
            self.producer.flush(1.0)
        if not failed:
            now = time.time()
            for route, records in batch:
                metrics.observe_many(
                    metrics.END_TO_END_LATENCY.labels(route.name),
                    [max(0.0, now - r[2] / 1000.0) for r in records if r[2] is not None],
                )
        left = [(route, failed[route.topic]) for route, _ in batch if route.topic in failed]
        return left, (last_error[-1] if last_error else None)

    def write_batch(self, items: list[T]) -> None:
        self.begin(items)()

    def begin(self, items: list[T]) -> Callable[[], None]:
        """Encode and produce ``items``; the returned call waits for the broker, re-sends what
        failed (with backoff) and raises :class:`DeliveryError` when it still fails. Between
        the two the broker works while the caller does something else
        (:class:`~operators.sinks.fanout.Fanout`)."""
        began = time.perf_counter()
        pending: Batch[T] = [
            (route, [route.encode(item) for item in items])
            if route.select is None
            else (route, [route.encode(item) for item in items if route.select(item)])
            for route in self.routes
        ]
        reports = self._produce(pending)
        produced_s = time.perf_counter() - began

        def finish() -> None:
            resumed = time.perf_counter()
            self._confirm(pending, self._settle(pending, reports))
            metrics.STAGE_SECONDS.labels(f"sink_{self.name}").observe(
                produced_s + time.perf_counter() - resumed
            )

        return finish

    def _confirm(self, pending: Batch[T], first: tuple[Batch[T], KafkaError | None]) -> None:
        """Count what the first attempt (``first``: its failures) delivered; send the
        failures again until they are delivered or the retry policy gives up."""
        attempts = 0
        outcome: tuple[Batch[T], KafkaError | None] | None = first

        def attempt() -> None:
            nonlocal pending, attempts, outcome
            attempts += 1
            failed, err = outcome if outcome is not None else self._send(pending)
            outcome = None
            lost = {route.topic: len(records) for route, records in failed}
            for route, records in pending:
                metrics.SINK_RECORDS.labels(route.name).inc(len(records) - lost.get(route.topic, 0))
            pending = failed
            if failed:
                raise _Undelivered(f"{_count(failed)} messages to {_topics(failed)} not delivered: {err}")

        try:
            retrying(self.name, self.policy, attempt, (_Undelivered,))
        except SinkError as exc:
            raise DeliveryError(
                f"{self.name}: {_count(pending)} messages to {_topics(pending)} not delivered after "
                f"{attempts} attempts: {exc.__cause__}"
            ) from exc

    def close(self) -> None:
        self.producer.flush(self.timeout_s)


Batch = list[tuple[KafkaRoute[T], list[KafkaRecord]]]
"""One write's records, by the route (topic) they go by."""

_Reports = tuple[dict[str, list[KafkaRecord]], list[KafkaError]]
"""What the delivery callback collects during one attempt: failed records by topic, and
the errors."""


def _count(batch: Batch[T]) -> int:
    return sum(len(records) for _, records in batch)


def _topics(batch: Batch[T]) -> str:
    names = [route.topic for route, records in batch if records]
    return f"topic {names[0]!r}" if len(names) == 1 else f"topics {names!r}"


class DeliveredKafkaSink(DynamicSink[T], Generic[T]):
    """Produce ``encode(item)`` for every item to ``topic``, confirming delivery; and, through
    the same producer and the same wait, what each route of ``also`` selects to its topic."""

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
        also: Sequence[KafkaRoute[T]] = (),
    ) -> None:
        self.name = name
        self.routes = (KafkaRoute(name, topic, encode), *also)
        if len({route.topic for route in self.routes}) < len(self.routes):
            raise ValueError(f"{name}: two routes write the same topic")
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
            self.name, self.routes, dict(self.config), self.policy, self.timeout_s, self.drop_refused
        )
