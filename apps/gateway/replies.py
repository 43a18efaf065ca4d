"""How a score call gets the job's decision: one consumer per replica reads the
decisions topic and completes the waiting request whose token the job echoed;
a producer that returns once the broker acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from operators.validation import REQUEST_ID_HEADER

__all__ = ["CONFLICT", "DecisionRouter", "DeliveringProducer"]

CONFLICT = "__conflict__"
"""Marks a decision for the same ``event_id`` made on another request's payload."""


class DecisionRouter:
    """Reads every partition of the decisions topic from its end and completes
    the future registered for each ``event_id`` (one consumer per replica, not
    one per request). Replies are matched by the request token the job echoes
    (``request_id``): a decision made on another request's payload never
    answers this one."""

    def __init__(self, bootstrap: str, topic: str, client_config: dict[str, str]) -> None:
        self.topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "fraudstream-gateway",  # unused: partitions are assigned, offsets never committed
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                **client_config,
            }
        )
        self._waiting: dict[str, tuple[str, asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        md = self._consumer.list_topics(self.topic, timeout=10)
        parts = md.topics[self.topic].partitions if self.topic in md.topics else {}
        if not parts:
            raise RuntimeError(f"decisions topic {self.topic!r} has no partitions (is the job bootstrapped?)")
        assignment = []
        for p in parts:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            assignment.append(TopicPartition(self.topic, p, max(high, 0)))
        self._consumer.assign(assignment)
        self.ready.set()
        self._thread.start()

    def expect(self, event_id: str) -> tuple[str, asyncio.Future[dict[str, Any]]] | None:
        """A fresh request token and the future its decision completes; None when
        a score call for ``event_id`` is already waiting here (the caller answers 409)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        token = uuid.uuid4().hex
        with self._lock:
            if event_id in self._waiting:
                return None
            self._waiting[event_id] = (token, loop, fut)
        return token, fut

    def forget(self, event_id: str, token: str) -> None:
        with self._lock:
            if self._waiting.get(event_id, ("",))[0] == token:
                del self._waiting[event_id]

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, 0.05):
                if msg.error() is not None or msg.key() is None:
                    continue
                with self._lock:
                    waiter = self._waiting.pop(msg.key().decode(errors="replace"), None)  # type: ignore[union-attr]
                if waiter is None:
                    continue
                token, loop, fut = waiter
                with contextlib.suppress(ValueError):
                    record = json.loads(msg.value() or b"{}")
                    if record.get("request_id") != token:
                        record = {CONFLICT: record.get("request_id")}
                    loop.call_soon_threadsafe(_resolve, fut, record)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._consumer.close()


def _resolve(fut: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(value)


class DeliveringProducer:
    """A producer whose ``send`` returns once the broker acknowledged the record."""

    def __init__(self, bootstrap: str, client_config: dict[str, str]) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 1,
                "message.timeout.ms": 10_000,
                **client_config,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes, request_id: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_deliver, fut, err)

        headers: list[tuple[str, str | bytes | None]] | None = (
            [(REQUEST_ID_HEADER, request_id.encode())] if request_id else None
        )
        self._producer.produce(topic, value, key, on_delivery=delivered, headers=headers)
        await fut

    def ready(self) -> bool:
        try:
            self._producer.list_topics(timeout=2)
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._producer.flush(10)
        self._stop.set()
        self._thread.join(5)


def _deliver(fut: asyncio.Future[None], err: KafkaError | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(RuntimeError(f"not delivered: {err.str()}"))
