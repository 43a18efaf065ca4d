"""Run the real job as subprocesses against the embedded stack (launching lives
in ``infra.jobproc``; here: waiting for rows and reading topics)."""

from __future__ import annotations

import json
import time

import psycopg
from confluent_kafka import Consumer, TopicPartition

from infra.jobproc import JobProcess as Job
from infra.jobproc import job_env, start_job

__all__ = ["Job", "consume", "job_env", "start_job", "wait_rows"]


def wait_rows(job: Job, expected: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    rows = 0
    with psycopg.connect(job.settings.database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            job.assert_alive()
            try:
                rows = conn.execute("SELECT count(*) FROM scored_events").fetchone()[0]  # type: ignore[index]
            except psycopg.errors.UndefinedTable:
                rows = 0
            if rows >= expected:
                return rows
            time.sleep(0.2)
    return rows


def consume(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 30
) -> list[tuple[bytes | None, dict]]:
    """Read a topic until ``expected`` records arrived (or the timeout), then 1 s more."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[bytes | None, dict]] = []
    deadline = time.monotonic() + timeout_s
    settle = None
    while time.monotonic() < deadline:
        out += [(m.key(), json.loads(m.value())) for m in consumer.consume(500, 0.2) if m.error() is None]
        if len(out) >= expected:
            settle = settle or time.monotonic() + 1.0
            if time.monotonic() > settle:
                break
    consumer.close()
    return out
