"""Producing to Kafka with confirmed delivery (demo workloads, `fraudstream produce`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from confluent_kafka import KafkaError, Message, Producer

__all__ = ["produce_all"]


def produce_all(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    client_config: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Produce every ``(key, value)``; raise if any is not acknowledged. Returns the count."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 10,
            "acks": "all",
            "compression.type": "lz4",
            **(client_config or {}),
        }
    )
    errors: list[KafkaError] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    sent = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
            if progress:
                progress(1000)
    remaining = producer.flush(60)
    if progress:
        progress(sent % 1000)
    if remaining or errors:
        raise RuntimeError(
            f"{len(errors) + remaining} of {sent} messages to {topic!r} were not "
            f"delivered (first error: {errors[0] if errors else 'timeout'})"
        )
    return sent
