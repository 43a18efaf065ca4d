"""`fraudstream dlq` against the real broker: dead letters as the job writes them
(its own validation and encoding), listed, followed and re-submitted."""

import os
import subprocess
import sys
import time

import msgspec
import pytest
from confluent_kafka import Consumer, TopicPartition

from apps.produce import produce_all
from infra.topics import ensure_topics
from operators.events import ValidationLimits
from operators.validation import Accepted, Message, check_message
from tests.support import encode, event

pytestmark = pytest.mark.integration

NOW = time.time()
NEGATIVE = encode(event("neg", "alice", amount=-5.0))
BINARY = b"\xff\xfe binary \x00"
BIG = encode(event("big", "bob", amount=-1.0, attributes={"pad": "x" * 600}))


def cli(args, settings, **popen):
    k = settings.kafka
    env = {
        **{key: v for key, v in os.environ.items() if key != "FRAUDSTREAM_CONFIG"},
        "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "COLUMNS": "250",
        "FRAUDSTREAM__KAFKA__TRANSACTIONS_TOPIC": k.transactions_topic,
        "FRAUDSTREAM__KAFKA__DLQ_TOPIC": k.dlq_topic,
    }
    args = [sys.executable, "-m", "apps.cli", "dlq", *args]
    if popen:
        return subprocess.Popen(args, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=90)


def dead_letters(settings, rejected):
    """Dead letters of ``(key, value, partition, offset)`` as the job writes them to the DLQ."""
    k = settings.kafka
    out = []
    for key, value, partition, offset in rejected:
        limits = ValidationLimits(dead_letter_bytes=256)
        d = check_message(Message(key, value, k.transactions_topic, partition, offset), limits, NOW)
        assert not isinstance(d, Accepted)
        out.append((key, msgspec.json.encode(d)))
    produce_all(k.bootstrap_servers, k.dlq_topic, out)


def transactions(settings, expected):
    k = settings.kafka
    consumer = Consumer(
        {"bootstrap.servers": k.bootstrap_servers, "group.id": "t", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(k.transactions_topic, p, 0) for p in range(k.partitions)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < expected and time.monotonic() < deadline:
        got += [(m.key(), m.value()) for m in consumer.consume(100, 0.2) if m.error() is None]
    time.sleep(0.5)
    got += [(m.key(), m.value()) for m in consumer.consume(100, 0.2) if m.error() is None]
    consumer.close()
    return got


@pytest.fixture
def dlq_settings(make_settings):
    s = make_settings(partitions=2)
    k = s.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: 2, k.dlq_topic: 2})
    dead_letters(
        s,
        [
            (b"alice", NEGATIVE, 1, 5),
            (None, b"not json", 0, 6),
            (b"carol", BINARY, 0, 7),
            (b"bob", BIG, 1, 8),  # kept truncated: 256 bytes of ~700
        ],
    )
    return s


def test_dlq_lists_reason_source_payload_and_counts_by_field(dlq_settings):
    result = cli(["--limit", "10"], dlq_settings)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    tx = dlq_settings.kafka.transactions_topic
    assert f"{tx}/1@5" in out and "amount: " in out and '"event_id": "neg"' in out
    assert f"{tx}/0@6" in out and "payload: JSON is malformed" in out
    assert "(binary, " in out and "[truncated]" in out
    assert "4 dead letters in" in out
    assert "by field: amount 2, payload 2" in out
    last = cli(["--limit", "1", "--field", "amount"], dlq_settings)
    assert "2 dead letters in" in last.stdout and "(the last 1 shown)" in last.stdout
    assert "Traceback" not in result.stderr + last.stderr


def test_dlq_resubmits_the_original_payload_with_its_key_and_refuses_truncated_ones(dlq_settings):
    amount = cli(["--resubmit", "--field", "amount"], dlq_settings)
    assert amount.returncode == 1, amount.stdout + amount.stderr  # one of the two was truncated
    assert "cannot re-submit" in amount.stderr and "truncated: the dead letter kept 256 of" in amount.stderr
    tx = dlq_settings.kafka.transactions_topic
    assert f"re-submitted {tx}/1@5 (dlq " in amount.stdout and "key 'alice'" in amount.stdout
    assert f"re-submitted 1 dead letters to {tx}; 1 could not be" in amount.stdout
    binary = cli(["--resubmit", "--offset", "0:7"], dlq_settings)
    assert binary.returncode == 0, binary.stdout + binary.stderr
    got = transactions(dlq_settings, 2)
    assert sorted(got) == sorted([(b"alice", NEGATIVE), (b"carol", BINARY)])
    none = cli(["--resubmit", "--offset", "1:999"], dlq_settings)
    assert none.returncode == 1 and "no dead letter in" in none.stderr
    unsafe = cli(["--resubmit"], dlq_settings)
    assert unsafe.returncode == 2 and "--resubmit needs --field or --offset" in unsafe.stderr


def test_dlq_follow_prints_new_dead_letters_as_they_come(dlq_settings):
    proc = cli(["--follow", "--timeout", "8", "--limit", "0"], dlq_settings, popen=True)
    time.sleep(4)
    dead_letters(dlq_settings, [(b"dave", encode(event("late", "dave", amount=-2.0)), 1, 42)])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "4 dead letters in" in out
    assert f"{dlq_settings.kafka.transactions_topic}/1@42" in out and '"event_id": "late"' in out
    assert "by field: amount 3, payload 2" in out
