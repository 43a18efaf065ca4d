import json

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY

from infra.stack import free_port
from infra.topics import ensure_topics
from operators.records import encode_alert, encode_decision
from operators.sinks import DeliveredKafkaSink, DeliveryError, KafkaRoute
from operators.sinks.retry import RetryPolicy
from tests.support import scored_events

pytestmark = pytest.mark.integration


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[tuple[bytes, dict]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    for _ in range(100):
        out += [(m.key(), json.loads(m.value())) for m in consumer.consume(500, 0.1) if m.error() is None]
        if len(out) >= expected:
            break
    consumer.close()
    return out


def test_every_message_is_confirmed_and_readable(make_settings):
    s = make_settings()
    ensure_topics(s.kafka.bootstrap_servers, {s.kafka.alerts_topic: 2})
    part = DeliveredKafkaSink("alerts", s.kafka.bootstrap_servers, s.kafka.alerts_topic, encode_alert).build(
        "a", 0, 1
    )
    events = scored_events(40)
    timed = REGISTRY.get_sample_value("fraudstream_stage_seconds_count", {"stage": "sink_alerts"}) or 0
    part.write_batch(events)
    part.close()
    assert REGISTRY.get_sample_value("fraudstream_stage_seconds_count", {"stage": "sink_alerts"}) == timed + 1
    got = read_all(s.kafka.bootstrap_servers, s.kafka.alerts_topic, 2, 40)
    assert sorted(a["event_id"] for _, a in got) == sorted(e.event.event_id for e in events)
    key, alert = next((k, a) for k, a in got if a["event_id"] == "e4")
    assert key == b"user-1"
    assert set(alert) == {
        "event_id",
        "user_id",
        "fraud_score",
        "risk_level",
        "decision",
        "is_blocked",
        "triggered_rules",
        "reasons",
        "scores",
        "model_version",
        "rules_version",
        "event",
        "scored_at",
    }
    assert alert["triggered_rules"] == ["country_blacklist"]
    assert alert["scores"] == {
        "rules": 85.0,
        "isolation_forest": None,
        "autoencoder": None,
        "supervised": None,
    }
    assert alert["event"]["location"]["country"] == "KP"


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_one_sink_writes_decisions_and_alerts_through_one_producer(make_settings):
    """The job's decisions (every verdict) and alerts (the selected ones) in one write:
    one flush per batch; each topic counted under its own name, the time under the sink's."""
    s = make_settings()
    k = s.kafka
    ensure_topics(k.bootstrap_servers, {k.decisions_topic: 2, k.alerts_topic: 2})
    alerts = KafkaRoute("alerts", k.alerts_topic, encode_alert, lambda e: e.is_alert)
    sink = DeliveredKafkaSink(
        "decisions", k.bootstrap_servers, k.decisions_topic, encode_decision, also=[alerts]
    )
    part = sink.build("d", 0, 1)
    events = scored_events(40)
    flagged = sorted(e.event.event_id for e in events if e.is_alert)
    assert 0 < len(flagged) < len(events)
    before = {
        name: _sample("fraudstream_sink_records_total", {"sink": name}) for name in ("decisions", "alerts")
    }
    timed = {
        stage: _sample("fraudstream_stage_seconds_count", {"stage": stage})
        for stage in ("sink_decisions", "sink_alerts")
    }
    part.write_batch(events)
    part.close()
    decisions = read_all(k.bootstrap_servers, k.decisions_topic, 2, 40)
    assert sorted(d["event_id"] for _, d in decisions) == sorted(e.event.event_id for e in events)
    got = read_all(k.bootstrap_servers, k.alerts_topic, 2, len(flagged))
    assert sorted(a["event_id"] for _, a in got) == flagged
    assert _sample("fraudstream_sink_records_total", {"sink": "decisions"}) == before["decisions"] + 40
    assert _sample("fraudstream_sink_records_total", {"sink": "alerts"}) == before["alerts"] + len(flagged)
    assert (
        _sample("fraudstream_stage_seconds_count", {"stage": "sink_decisions"}) == timed["sink_decisions"] + 1
    )
    assert _sample("fraudstream_stage_seconds_count", {"stage": "sink_alerts"}) == timed["sink_alerts"]


def test_two_routes_to_one_topic_are_refused():
    with pytest.raises(ValueError, match="same topic"):
        DeliveredKafkaSink("a", "127.0.0.1:1", "t", encode_alert, also=[KafkaRoute("b", "t", encode_alert)])


def test_undeliverable_messages_fail_loudly_instead_of_vanishing():
    dead = f"127.0.0.1:{free_port()}"
    sleeps: list[float] = []
    sink = DeliveredKafkaSink(
        "alerts",
        dead,
        "alerts",
        encode_alert,
        RetryPolicy(max_retries=1, backoff_s=0.01, sleep=sleeps.append),
        timeout_s=1.0,
    )
    part = sink.build("a", 0, 1)
    with pytest.raises(
        DeliveryError, match=r"alerts: 3 messages to topic 'alerts' not delivered after 2 attempts"
    ):
        part.write_batch(scored_events(3))
    assert sleeps == [0.01]
