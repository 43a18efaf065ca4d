"""No input can stop the job, and one event_id gets one verdict everywhere.

The real job (two processes, recovery on, killed with -9 halfway and restarted)
gets valid traffic mixed, on the same keys, with payloads that used to stop it
for good (invalid UTF-8 inside a string, deep nesting, 760 KB of 0xFF), random
bytes, huge and deep documents, lone surrogates, and re-used event ids. It must
stay up, score every valid event once, dead-letter every hostile payload in a
bounded record, and give each re-used id the first version's verdict in
Postgres, alerts, decisions and Redis.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from typing import Any

import psycopg
import pytest
import redis
from confluent_kafka import KafkaError, Message, Producer

from flows.launcher import start_job
from infra.topics import ensure_topics
from operators.redis_keys import RISK_KEY
from tests.support import consume, event

pytestmark = pytest.mark.integration

Sent = dict[tuple[int, int], bytes]
"""(partition, offset) -> the payload produced there."""


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> Sent:
    """Produce in order and return where each payload landed."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 2_000_000})
    landed: Sent = {}
    errors: list[KafkaError] = []

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            landed[(msg.partition(), msg.offset())] = msg.value() or b""  # type: ignore[index]

    for key, value in messages:
        producer.produce(topic, value, key, on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    return landed


def dead_letters(
    bootstrap: str, topic: str, partitions: int, wanted: set[tuple[int, int]]
) -> dict[tuple[int, int], dict[str, Any]]:
    """Dead letters by the (partition, offset) they came from, once ``wanted`` are all there
    (after a kill -9 some come twice: delivery is at-least-once)."""
    deadline = time.monotonic() + 90
    while True:
        records = {
            (d["partition"], d["offset"]): d for _, d in consume(bootstrap, topic, partitions, 10**6, 3)
        }
        if wanted <= set(records) or time.monotonic() > deadline:
            return records


def hostile(rng: random.Random) -> list[bytes | None]:
    ts = b'"timestamp":"2025-06-02T12:00:00Z"'
    base = b'{"event_id":"h-%d","user_id":"hu","amount":1,' + ts
    return [
        b'{"event_id":"h-utf8","user_id":"u\xff","amount":1,' + ts + b"}",
        base % 1 + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}",
        base % 2 + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        base % 3 + b',"x":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
        b"\xff" * 760_000,
        base % 4 + b',"merchant_name":"' + b"A" * 500_000 + b'"}',
        b'{"event_id":"h-sur","user_id":"u\\ud800","amount":1,' + ts + b"}",
        b'{"event_id":"h-sur2","user_id":"u\xed\xa0\x80","amount":1,' + ts + b"}",
        base % 5 + b',"attributes":{"big":' + b"9" * 40 + b"}}",
        base % 6 + b',"amount":1e400}',
        b"",
        None,
        b"\x00" * 64,
        *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2_000))) for _ in range(20)),
    ]


def test_no_input_stops_the_job_and_a_reused_id_gets_one_verdict(make_settings, tmp_path):
    tag = uuid.uuid4().hex[:6]
    settings = make_settings()
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {t: k.partitions for t in (k.transactions_topic, k.dlq_topic)})
    rng = random.Random(16)
    users = [f"hu-{tag}-{i}" for i in range(20)]

    def valid(n: int, prefix: str) -> list[dict[str, Any]]:
        return [
            event(f"{prefix}-{tag}-{i}", users[i % len(users)], round(rng.uniform(5, 200), 2))
            for i in range(n)
        ]

    first_half, second_half = valid(300, "a"), valid(200, "b")
    small = event(f"dup-{tag}", f"du-{tag}", 10.0)
    big = {**small, "amount": 5000.0, "location": {"latitude": 39.0, "longitude": 125.7, "country": "KP"}}
    other_user = event(f"x-{tag}", f"xu-{tag}", 20.0)
    bad = hostile(rng)

    def messages(evs: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
        return [(e["user_id"].encode(), json.dumps(e).encode()) for e in evs]

    def with_hostile(
        msgs: list[tuple[bytes | None, bytes | None]],
    ) -> list[tuple[bytes | None, bytes | None]]:
        out = list(msgs)
        for payload in bad:  # on the same keys as valid traffic
            out.insert(rng.randrange(len(out) + 1), (users[0].encode(), payload))
        return out

    first = produce(
        k.bootstrap_servers, k.transactions_topic, with_hostile(messages([*first_half, small, other_user]))
    )
    env = {
        "FRAUDSTREAM_RECOVERY_DIR": str(tmp_path / "recovery"),
        "FRAUDSTREAM__RECOVERY__SNAPSHOT_INTERVAL_S": "1",
    }
    job = start_job(settings, 2, tmp_path, **env)
    try:
        assert job.wait_rows(len(first_half) + 2) == len(first_half) + 2
        time.sleep(2.5)  # at least one snapshot of the id memory
    finally:
        job.kill9()

    resend = first_half[7]
    reused = [
        (big["user_id"].encode(), json.dumps(big).encode()),
        (resend["user_id"].encode(), json.dumps(resend).encode()),
        (b"xu-other-key", json.dumps({**other_user, "amount": 999.0}).encode()),
    ]
    second = produce(k.bootstrap_servers, k.transactions_topic, with_hostile(messages(second_half) + reused))
    duplicate_at = {where for where, payload in second.items() if payload in {v for _, v in reused}}
    assert len(duplicate_at) == 3
    job = start_job(settings, 2, tmp_path, **env)
    expected_rows = len(first_half) + len(second_half) + 2
    try:
        assert job.wait_rows(expected_rows) == expected_rows
        hostile_at = {where: p for where, p in {**first, **second}.items() if p in set(bad) or not p}
        records = dead_letters(k.bootstrap_servers, k.dlq_topic, k.partitions, set(hostile_at) | duplicate_at)
        job.check_alive()
        samples = job.metrics()
    finally:
        job.stop()
    stop_log = job.log.read_text()

    # every valid event is one row; each re-used id kept its first version
    with psycopg.connect(settings.database_url) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute("SELECT event_id, user_id, amount, risk_level FROM scored_events")
        }
    assert set(rows) == {e["event_id"] for e in [*first_half, *second_half, small, other_user]}
    assert rows[small["event_id"]][1:] == (10, "LOW")
    assert rows[other_user["event_id"]][1] == 20

    # every hostile payload is a bounded dead letter that describes it
    for where, payload in hostile_at.items():
        d = records[where]
        assert d["error"] and ": " in d["error"]
        assert d["value_bytes"] == len(payload) and d["value_sha256"] == hashlib.sha256(payload).hexdigest()
        assert len(json.dumps(d)) < settings.validation.max_dead_letter_bytes * 4 // 3 + 4096
        assert d["truncated"] == (len(payload) > settings.validation.max_dead_letter_bytes)
    reasons = {
        records[where]["error"] for where, p in hostile_at.items() if p.startswith(b'{"event_id":"h-utf8"')
    }
    assert reasons == {"payload: invalid UTF-8 at byte 33 (invalid start byte)"}

    # re-used ids: dead letters naming both payloads' hashes, no second verdict anywhere
    dups = {where: d for where, d in records.items() if d["error"].startswith("event_id: duplicate")}
    assert set(dups) == duplicate_at
    assert sorted("different payload" in d["error"] for d in dups.values()) == [False, True, True]
    alerts = consume(k.bootstrap_servers, k.alerts_topic, k.partitions, 10**6, timeout_s=3)
    assert small["event_id"] not in {a["event_id"] for _, a in alerts}
    decisions = consume(k.bootstrap_servers, k.decisions_topic, k.partitions, 10**6, timeout_s=3)
    assert {d["risk_level"] for _, d in decisions if d["event_id"] == small["event_id"]} == {"LOW"}
    risk = redis.Redis.from_url(settings.redis_url).hgetall(RISK_KEY.format(user_id=small["user_id"]))
    assert risk[b"event_id"].decode() == small["event_id"] and risk[b"level"] == b"LOW"
    assert samples[("fraudstream_events_total", (("outcome", "duplicate"),))] >= 3
    assert "panicked" not in stop_log


def test_a_dead_letter_the_broker_refuses_is_counted_and_the_job_goes_on(make_settings, tmp_path):
    """Dead letters allowed to 256 KiB against a 100 kB client limit: the broker
    refuses the record for good; the job drops it, counts it, and scores on."""
    tag = uuid.uuid4().hex[:6]
    settings = make_settings(validation__max_dead_letter_bytes=262_144)
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {t: k.partitions for t in (k.transactions_topic, k.dlq_topic)})
    evs = [event(f"r-{tag}-{i}", f"ru-{tag}-{i % 5}", 12.5) for i in range(50)]
    msgs: list[tuple[bytes | None, bytes | None]] = [
        (e["user_id"].encode(), json.dumps(e).encode()) for e in evs
    ]
    msgs.insert(25, (evs[0]["user_id"].encode(), b"\xff" * 760_000))
    produce(k.bootstrap_servers, k.transactions_topic, msgs)
    job = start_job(
        settings,
        1,
        tmp_path,
        FRAUDSTREAM__VALIDATION__MAX_DEAD_LETTER_BYTES="262144",
        FRAUDSTREAM__KAFKA__CLIENT_CONFIG='{"message.max.bytes": "100000"}',
    )
    try:
        assert job.wait_rows(len(evs)) == len(evs)
        deadline = time.monotonic() + 20
        while job.metrics().get(("fraudstream_sink_refused_total", (("sink", "dead_letters"),)), 0) < 1:
            assert time.monotonic() < deadline, "the refused dead letter was not counted"
            time.sleep(0.2)
        job.check_alive()
    finally:
        job.stop()
