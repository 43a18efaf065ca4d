"""Outages of Postgres, Redis and the broker while the job runs: it waits, says so in
its metrics, and resumes without loss or a crash loop."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from apps.produce import produce_all
from flows.config import Settings, load_settings
from flows.launcher import JobProcess as Job
from flows.launcher import start_job
from infra.stack import EmbeddedStack, StackInfo
from infra.topics import ensure_topics
from tests.support import encode, event

pytestmark = pytest.mark.integration
OUTAGE_S = 20


@pytest.fixture
def own_stack(tmp_path) -> Iterator[tuple[EmbeddedStack, StackInfo]]:
    """A stack of its own: these tests stop its services."""
    stack = EmbeddedStack(tmp_path / "stack", {"kafka": 0, "postgres": 0, "redis": 0})
    info = stack.start()
    yield stack, info
    stack.stop()


def settings_for(info: StackInfo) -> Settings:
    return load_settings(env={**info.env(), "METRICS_PORT": "0"})


def batch(prefix: str, n: int, hour: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            f"u{i % 50}".encode(),
            encode(
                event(f"{prefix}{i}", f"u{i % 50}", ts=f"2025-06-02T{hour:02d}:{i % 60:02d}:{i % 59:02d}Z")
            ),
        )
        for i in range(n)
    ]


def gauge(job: Job, name: str, sink: str) -> float:
    return job.metrics().get((name, (("sink", sink),)), 0.0)


def count(settings: Settings) -> int:
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute("SELECT count(*) FROM scored_events").fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize("service", ["postgres", "redis"])
def test_store_outage_is_waited_out_without_loss(own_stack, tmp_path, service):
    stack, info = own_stack
    settings = settings_for(info)
    k = settings.kafka
    job = start_job(settings, 1, tmp_path, FRAUDSTREAM__SINKS__MAX_BACKOFF_S="1")
    try:
        produce_all(k.bootstrap_servers, k.transactions_topic, batch("a", 500, 10))
        assert job.wait_rows(500) == 500
        stack.stop_service(service)
        time.sleep(1.5)  # past the blocklist refresh interval
        produce_all(k.bootstrap_servers, k.transactions_topic, batch("b", 500, 11))
        deadline = time.monotonic() + OUTAGE_S
        seen_outage = False
        while time.monotonic() < deadline:
            job.check_alive()
            seen_outage = seen_outage or gauge(job, "fraudstream_sink_unavailable", service) == 1
            time.sleep(1)
        assert seen_outage, f"fraudstream_sink_unavailable{{sink={service}}} never showed the outage"
        if service == "redis":
            # Redis is a cache here: scoring goes on meanwhile, with the last known blocklists
            assert count(settings) == 1000
            assert job.metrics()[("fraudstream_blocklist_stale", ())] == 1
        stack.start_service(service)
        assert job.wait_rows(1000, timeout_s=60) == 1000
        if service == "redis":  # the risk kept meanwhile is written once Redis answers
            produce_all(k.bootstrap_servers, k.transactions_topic, batch("c", 50, 12))
            assert job.wait_rows(1050, timeout_s=30) == 1050
            time.sleep(2)
        job.check_alive()
        m = job.metrics()
        # Postgres blocks and retries with backoff; Redis retries on the next batch after retry_s
        assert m[("fraudstream_sink_retries_total", (("sink", service),))] >= (
            3 if service == "postgres" else 1
        )
        assert m[("fraudstream_sink_unavailable", (("sink", service),))] == 0
    finally:
        job.stop()
    assert count(settings) == (1050 if service == "redis" else 1000)
    if service == "redis":
        import redis

        assert redis.Redis.from_url(settings.redis_url).hget("fraud:risk:u3", "event_id") is not None


def test_broker_unreachable_for_a_while_loses_nothing(own_stack, tmp_path):
    """The broker hangs for 20 s (SIGSTOP: no answers, data kept), then comes back."""
    stack, info = own_stack
    settings = settings_for(info)
    k = settings.kafka
    job = start_job(settings, 1, tmp_path)
    try:
        produce_all(k.bootstrap_servers, k.transactions_topic, batch("a", 300, 10))
        assert job.wait_rows(300) == 300
        stack.pause_service("kafka")
        time.sleep(OUTAGE_S)
        job.check_alive()
        stack.resume_service("kafka")
        produce_all(k.bootstrap_servers, k.transactions_topic, batch("b", 300, 11))
        assert job.wait_rows(600, timeout_s=90) == 600
        job.check_alive()
    finally:
        job.stop()


def test_broker_restart_mid_stream_is_survived(own_stack, tmp_path):
    """The embedded broker is memory-only: a restart brings back empty topics and the
    offsets start again from 0, while the job resumes at the offsets it had reached.
    It must not crash, and it must consume what lands beyond those offsets. (A real
    Kafka/Redpanda keeps its log across restarts, so nothing is skipped there.)"""
    stack, info = own_stack
    settings = settings_for(info)
    k = settings.kafka
    job = start_job(settings, 1, tmp_path)
    try:
        produce_all(k.bootstrap_servers, k.transactions_topic, batch("a", 300, 10))
        assert job.wait_rows(300) == 300
        stack.stop_service("kafka")
        time.sleep(5)
        job.check_alive()
        stack.start_service("kafka")
        ensure_topics(
            k.bootstrap_servers,
            {t: k.partitions for t in (k.transactions_topic, k.alerts_topic, k.dlq_topic)},
        )
        produce_all(k.bootstrap_servers, k.transactions_topic, batch("b", 1200, 11))
        # every partition now holds far more than the ~75 records each had before the restart
        assert job.wait_rows(300 + 600, timeout_s=90) >= 900
        job.check_alive()
    finally:
        job.stop()
