"""Reach the broker, and create the job's topics when they are missing (idempotent).

A broker that does not answer is one clear error, within seconds, naming the
address and librdkafka's reason, instead of a minute of client log lines:

>>> reach_kafka("127.0.0.1:1", timeout_s=0.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
infra.topics.KafkaUnreachable: cannot reach Kafka at 127.0.0.1:1 (...)
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["KafkaUnreachable", "ensure_topics", "quiet_client_log", "reach_kafka"]

REACH_TIMEOUT_S = 5.0
"""How long a command waits for the broker to answer before it gives up."""


class KafkaUnreachable(RuntimeError):
    """No broker answered: ``cannot reach Kafka at HOST:PORT (reason)``."""


def quiet_client_log() -> logging.Logger:
    """A logger for librdkafka's own lines that keeps them out of the terminal:
    while a broker is unreachable a client logs every reconnect attempt; the
    caller reports the one error that matters instead."""
    logger = logging.getLogger("fraudstream.librdkafka")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


_BROKER_PREFIX = re.compile(r"^\S+/(bootstrap|\d+): ")
_AFTER = re.compile(r" \(after \d+ms in state \w+\)$")


def _reason(err: KafkaError) -> str:
    """librdkafka's error without the broker prefix and the timing suffix."""
    return _AFTER.sub("", _BROKER_PREFIX.sub("", err.str()))


def reach_kafka(
    bootstrap: str, client_config: dict[str, str] | None = None, timeout_s: float = REACH_TIMEOUT_S
) -> AdminClient:
    """An admin client once a broker answers a metadata request; :class:`KafkaUnreachable`
    after ``timeout_s`` (librdkafka retries the connection meanwhile)."""
    last: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        last[:] = [err]

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        **(client_config or {}),
        "logger": quiet_client_log(),
        "error_cb": on_error,
    }
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks: the connection's own reason
        reason = _reason(last[0]) if last else exc.args[0].str()
        raise KafkaUnreachable(f"cannot reach Kafka at {bootstrap} ({reason})") from exc
    return admin


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    client_config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    reach_s: float = REACH_TIMEOUT_S,
) -> list[str]:
    """Create each missing ``topic -> partitions``; return the names created.

    Raises :class:`KafkaUnreachable` when no broker answers within ``reach_s``."""
    admin = reach_kafka(bootstrap, client_config, reach_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = set(admin.list_topics(timeout=5).topics)
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaUnreachable(f"cannot reach Kafka at {bootstrap} ({exc.args[0].str()})") from exc
            time.sleep(0.5)
    missing = [
        NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items() if t not in existing
    ]
    created = []
    for name, future in admin.create_topics(missing).items() if missing else []:
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"cannot create topic {name!r}: {exc}") from exc
    # Wait until metadata shows the new topics with their partitions.
    while created and time.monotonic() < deadline:
        md = admin.list_topics(timeout=5).topics
        if all(t in md and len(md[t].partitions) == topics[t] for t in created):
            break
        time.sleep(0.1)
    return created
