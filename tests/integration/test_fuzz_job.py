"""The fuzz corpus against the real job: zero crashes, every bad event in the DLQ with
a reason, every good event scored and stored byte for byte."""

import os

import psycopg
import pytest

from apps.produce import produce_all
from flows.launcher import start_job
from infra.topics import ensure_topics
from operators.events import TransactionEvent, decode_event
from tests.fuzz_corpus import corpus
from tests.support import consume

pytestmark = pytest.mark.integration
SIZE = int(os.environ.get("FRAUDSTREAM_FUZZ_EVENTS", "3000"))


def test_real_job_survives_the_fuzz_corpus(make_settings, tmp_path):
    settings = make_settings()
    k = settings.kafka
    payloads = corpus(seed=99, n=SIZE)
    decoded = [decode_event(v) for _, v in payloads]
    valid = {e.event_id: e for e in decoded if isinstance(e, TransactionEvent)}
    invalid = len(payloads) - len(valid)
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: k.partitions})
    produce_all(k.bootstrap_servers, k.transactions_topic, payloads)
    job = start_job(settings, 1, tmp_path)
    try:
        assert job.wait_rows(len(valid)) == len(valid)
        dead = consume(k.bootstrap_servers, k.dlq_topic, k.partitions, invalid)
        job.check_alive()
    finally:
        job.stop()
    assert len(dead) == invalid
    assert all(d["error"] and ": " in d["error"] for _, d in dead)
    with psycopg.connect(settings.database_url) as conn:
        stored = dict(conn.execute("SELECT event_id, merchant_name FROM scored_events").fetchall())
    assert set(stored) == set(valid)
    assert all(stored[e] == ev.merchant_name for e, ev in valid.items())
