import time

import pytest

from infra.stack import free_port
from infra.topics import KafkaUnreachable, ensure_topics, reach_kafka


def test_an_unreachable_broker_is_one_error_within_seconds_and_no_client_log(capfd):
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    with pytest.raises(KafkaUnreachable) as err:
        ensure_topics(address, {"t": 1}, reach_s=1.0)
    assert time.monotonic() - began < 5
    assert (
        str(err.value)
        == f"cannot reach Kafka at {address} (Connect to ipv4#{address} failed: Connection refused)"
    )
    assert "rdkafka" not in capfd.readouterr().err


def test_an_unknown_host_says_so():
    with pytest.raises(
        KafkaUnreachable, match=r"cannot reach Kafka at no-such-host\.invalid:9092 \(Failed to resolve"
    ):
        reach_kafka("no-such-host.invalid:9092", timeout_s=1.0)


@pytest.mark.integration
def test_topics_are_created_once_the_broker_answers(make_settings):
    k = make_settings().kafka
    assert ensure_topics(k.bootstrap_servers, {k.alerts_topic: 2}) == [k.alerts_topic]
    assert ensure_topics(k.bootstrap_servers, {k.alerts_topic: 2}) == []
    assert k.alerts_topic in reach_kafka(k.bootstrap_servers).list_topics(timeout=5).topics
