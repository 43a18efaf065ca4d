"""Create the job's topics when they are missing (idempotent)."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["ensure_topics"]


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    client_config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create each missing ``topic -> partitions``; return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(client_config or {})})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            existing = set(admin.list_topics(timeout=5).topics)
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
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
