import json
import os
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, TopicPartition

from apps.replay.stream import LEGIT, ColumnMap, Replayer, generic_events, time_sorted
from infra.topics import ensure_topics
from tests.support import shared_data


def items(n):
    import random

    rng = random.Random(1)
    return [(rng.uniform(0, 1e6), i, b"k%d" % (i % 7), b'{"event_id":"e%d"}' % i, None) for i in range(n)]


def replay_cli(k, *args, partitions=1, timeout=120):
    """``fraudstream replay ARGS`` against the test broker's topics (k: the Kafka settings, or None)."""
    env = {**os.environ, "COLUMNS": "200"}
    if k is not None:
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "FRAUDSTREAM__KAFKA__TRANSACTIONS_TOPIC": k.transactions_topic,
            "FRAUDSTREAM__KAFKA__LABELS_TOPIC": k.labels_topic,
            "FRAUDSTREAM__KAFKA__PARTITIONS": str(partitions),
        }
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", "replay", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("chunk", [10_000, 97])
def test_time_sorted_orders_with_bounded_memory(chunk):
    data = items(2000)
    total, ordered = time_sorted(iter(data), chunk_size=chunk)
    out = list(ordered)
    assert total == 2000 and sorted(out) == sorted(data)
    assert [i[0] for i in out] == sorted(i[0] for i in data)


def test_pacing_follows_the_speed_factor():
    sleeps = []
    now = {"t": 0.0}
    r = Replayer.__new__(Replayer)
    r.topic, r.speed, r.clock, r.sleep, r.errors = "t", 10.0, (lambda: now["t"]), sleeps.append, []

    class FakeProducer:  # pacing only: delivery is tested against the real broker below
        def produce(self, *a, **k):
            pass

        def poll(self, *_):
            return 0

        def flush(self, *_):
            return 0

    r.producer = FakeProducer()
    r.run([(100.0, 0, b"k", b"{}", None), (110.0, 1, b"k", b"{}", None), (130.0, 2, b"k", b"{}", None)], None)
    assert sleeps == [1.0, 3.0]


@pytest.mark.integration
def test_replay_cli_produces_in_event_time_order_with_labels(make_settings, tmp_path):
    k = make_settings().kafka
    labels = tmp_path / "labels.jsonl"
    result = replay_cli(k, "--synthetic", 3000, "--seed", 3, "--inject-rate", 0.01, "--labels-out", labels)
    assert result.returncode == 0, result.stdout + result.stderr
    label_rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert label_rows and all(r["is_fraud"] for r in label_rows)
    consumer = Consumer(
        {"bootstrap.servers": k.bootstrap_servers, "group.id": "t", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(k.transactions_topic, 0, 0)])
    events = []
    for _ in range(200):
        events += [json.loads(m.value()) for m in consumer.consume(1000, 0.1) if m.error() is None]
        if len(events) >= 3000 + len(label_rows) - sum(
            r["scenario"] in {"fare_manipulation", "spending_spike"} for r in label_rows
        ):
            break
    consumer.close()
    from datetime import datetime

    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times)
    assert {r["event_id"] for r in label_rows} <= {e["event_id"] for e in events}
    assert f"replayed {len(events):,} of {len(events):,} events" in " ".join(result.stdout.split())


@pytest.mark.integration
def test_limit_stops_early(make_settings, tmp_path):
    s = make_settings()
    ensure_topics(s.kafka.bootstrap_servers, {s.kafka.transactions_topic: 1})
    r = Replayer(s.kafka.bootstrap_servers, s.kafka.transactions_topic)
    summary = r.run(iter(items(500)), None, limit=120)
    assert summary.produced == 120 and not summary.interrupted


def test_sparkov_sample_maps_with_labels():
    path = shared_data("sparkov_sample", "fraudTrain.csv")
    cols = ColumnMap.parse(
        "user=cc_num,time=trans_date_trans_time,amount=amt,label=is_fraud,id=trans_num,"
        "lat=merch_lat,lon=merch_long,merchant=merchant,category=category"
    )
    rows = list(generic_events([path], cols))
    assert len(rows) == 5039
    ev, label = rows[0]
    assert ev["event_id"] == "0b242abb623afc578575680df30655b9" and ev["user_id"] == "2703186189652095"
    assert ev["timestamp"] == "2019-01-01T00:00:18+00:00" and ev["location"]["latitude"] == pytest.approx(
        36.011293
    )
    assert label is False and sum(1 for _, lab in rows if lab) > 0
    assert LEGIT == "legit"


def test_column_map_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs \\['amount'\\]"):
        ColumnMap.parse("user=a,time=b")
    with pytest.raises(ValueError, match="unknown keys \\['colour'\\]"):
        ColumnMap.parse("user=a,time=b,amount=c,colour=d")


@pytest.mark.integration
def test_replay_sends_compromised_terminal_labels_to_the_labels_topic_late(make_settings, tmp_path):
    from datetime import datetime, timedelta

    from operators.labels import Label, decode_label

    k = make_settings().kafka
    labels = tmp_path / "labels.jsonl"
    result = replay_cli(
        k,
        *("--synthetic", 2000, "--seed", 5, "--inject-rate", 0.002, "--terminals", 30),
        *("--compromise-rate", 0.2, "--compromise-days", 1, "--emit-labels", "--label-delay-days", 0.25),
        *("--labels-out", labels),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {r["event_id"]: r["scenario"] for r in map(json.loads, labels.read_text().splitlines())}
    assert "compromised_terminal" in expected.values()
    assert f"sent {len(expected):,} fraud labels" in " ".join(result.stdout.split())
    assert "warning" not in result.stdout  # one partition: no skew to warn about

    def consume(topic, want):
        consumer = Consumer(
            {"bootstrap.servers": k.bootstrap_servers, "group.id": "t", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        for _ in range(300):
            batch = [m.value() for m in consumer.consume(1000, 0.2) if m.error() is None]
            got += batch
            if len(got) >= want and not batch:
                break
        consumer.close()
        return got

    sent = [decode_label(v) for v in consume(k.labels_topic, len(expected))]
    assert all(isinstance(lab, Label) and lab.is_fraud and lab.source == "chargeback" for lab in sent)
    assert sorted(lab.event_id for lab in sent) == sorted(expected)  # each fraud labelled exactly once
    events = {e["event_id"]: e for e in map(json.loads, consume(k.transactions_topic, 2000))}
    assert set(expected) <= set(events)
    for lab in sent:
        event_time = datetime.fromisoformat(events[lab.event_id]["timestamp"])
        assert lab.label_time == event_time + timedelta(hours=6)
        assert events[lab.event_id]["merchant_id"].startswith("term-")


def test_compromise_needs_terminals(tmp_path):
    result = replay_cli(None, "--synthetic", 10, "--compromise-rate", 0.1, timeout=60)
    assert result.returncode == 2 and "--terminals" in result.stdout + result.stderr


@pytest.mark.integration
def test_fast_label_replay_over_several_partitions_warns(make_settings, tmp_path):
    k = make_settings().kafka
    result = replay_cli(
        k,
        "--synthetic",
        50,
        "--terminals",
        5,
        "--emit-labels",
        "--labels-out",
        tmp_path / "l.jsonl",
        partitions=4,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: 4 partitions at full speed" in " ".join(result.stdout.split())
