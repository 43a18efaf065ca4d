"""kill -9 of the whole job mid-stream, then a restart from the recovery directory:
nothing lost, nothing doubled, state and alerts as if nothing had happened."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

from apps.produce import produce_all
from apps.replay.workload import generate
from flows.config import Settings
from flows.launcher import start_job
from infra.topics import ensure_topics
from tests.support import consume
from tests.support import run_flow as run_in_process

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workload():
    w = generate(events=107_500, users=8_000, fraud_share=0.05, malformed=0, seed=17)
    assert w.valid >= 100_000
    return w


@pytest.fixture(scope="module")
def uninterrupted(workload) -> dict[str, tuple[Any, ...]]:
    """The same events through the same dataflow, in process, never interrupted."""
    out = run_in_process(workload.messages, batch_size=1000)
    assert not isinstance(out, KafkaSourceMessage)
    return {
        s.event.event_id: (
            s.verdict.fraud_score,
            s.verdict.risk_level,
            [h.rule for h in s.hits],
            s.features.events_24h,
            s.features.user_event_count,
        )
        for s in out["scored"]
    }


def rows(settings: Settings) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(settings.database_url) as conn:
        return {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                "SELECT event_id, fraud_score, risk_level, triggered_rules, (features->>'events_24h')::int, "
                "(features->>'user_event_count')::int FROM scored_events"
            )
        }


@pytest.mark.parametrize("processes", [1, 2])
def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(
    make_settings, tmp_path, workload, uninterrupted, processes
):
    settings = make_settings()
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: k.partitions})
    produce_all(k.bootstrap_servers, k.transactions_topic, workload.messages)
    env = {
        "FRAUDSTREAM_RECOVERY_DIR": str(tmp_path / "recovery"),
        "FRAUDSTREAM__RECOVERY__SNAPSHOT_INTERVAL_S": "0.5",
    }
    job = start_job(settings, processes, tmp_path, **env)
    try:
        partial = job.wait_rows(workload.valid // 3)
        assert partial < workload.valid, "the job finished before it could be killed"
    finally:
        job.kill9()
    time.sleep(0.5)
    job = start_job(settings, processes, tmp_path, **env)
    try:
        assert job.wait_rows(workload.valid, timeout_s=240) == workload.valid
        time.sleep(1.0)
    finally:
        job.stop()
    got = rows(settings)
    assert len(got) == workload.valid  # exactly one row per event_id (primary key)
    mismatched = [e for e, v in uninterrupted.items() if got.get(e) != (v[0], v[1], v[2], v[3], v[4])]
    assert not mismatched, f"{len(mismatched)} rows differ, e.g. {mismatched[:3]}"
    expected_alerts = {e: v[:3] for e, v in uninterrupted.items() if v[1] != "LOW"}
    seen = consume(k.bootstrap_servers, k.alerts_topic, k.partitions, len(expected_alerts), timeout_s=60)
    deduped: dict[str, tuple[Any, ...]] = {}
    for _, alert in seen:
        deduped.setdefault(
            alert["event_id"], (alert["fraud_score"], alert["risk_level"], alert["triggered_rules"])
        )
    assert deduped == expected_alerts
