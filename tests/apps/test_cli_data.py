"""`fraudstream produce` and `fraudstream alerts` against the real broker."""

import json
import os
import subprocess
import sys

import pytest

from apps.produce import produce_all
from infra.topics import ensure_topics
from tests.support import consume, encode, event

pytestmark = pytest.mark.integration


def cli(args, settings, stdin=None):
    k = settings.kafka
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "COLUMNS": "250",
        "FRAUDSTREAM__KAFKA__TRANSACTIONS_TOPIC": k.transactions_topic,
        "FRAUDSTREAM__KAFKA__ALERTS_TOPIC": k.alerts_topic,
    }
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_produce_reads_json_lines_from_stdin_keyed_by_user(make_settings):
    s = make_settings()
    k = s.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: 2})
    lines = "\n".join(
        [json.dumps(event("p1", "alice")), "not json at all", json.dumps(event("p2", "bob")), ""]
    )
    result = cli(["produce"], s, stdin=lines)
    assert result.returncode == 0, result.stderr
    assert "produced 3 events" in result.stdout
    assert "(1 not JSON with a user_id: the job dead-letters what it cannot decode)" in result.stdout
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": k.bootstrap_servers, "group.id": "t", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(k.transactions_topic, p, 0) for p in range(2)])
    got = []
    for _ in range(50):
        got += [(m.key(), m.value()) for m in consumer.consume(10, 0.1) if m.error() is None]
        if len(got) == 3:
            break
    consumer.close()
    assert sorted(key or b"" for key, _ in got) == [
        b"",
        b"alice",
        b"bob",
    ]  # unparseable: no key, DLQ'd by the job


def test_alerts_prints_a_readable_table(make_settings):
    s = make_settings()
    k = s.kafka
    ensure_topics(k.bootstrap_servers, {k.alerts_topic: 1})
    alert = {
        "event_id": "e9",
        "user_id": "carol",
        "fraud_score": 72.25,
        "risk_level": "HIGH",
        "decision": "block",
        "is_blocked": True,
        "triggered_rules": ["country_blacklist"],
        "reasons": ["transaction from KP, a blocked country"],
        "scores": {},
        "model_version": "v",
        "event": json.loads(encode(event("e9", "carol", amount=42.5))),
        "scored_at": "2025-06-02T12:00:01Z",
    }
    produce_all(k.bootstrap_servers, k.alerts_topic, [(b"carol", json.dumps(alert).encode())])
    assert consume(k.bootstrap_servers, k.alerts_topic, 1, 1)
    result = cli(["alerts", "--from-beginning", "--limit", "1", "--timeout", "10"], s)
    assert result.returncode == 0, result.stderr
    line = " ".join(result.stdout.split())
    assert "HIGH 72.2 carol 42.50 USD country_blacklist: transaction from KP, a blocked country" in line
