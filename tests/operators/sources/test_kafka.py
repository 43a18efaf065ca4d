import pytest

from infra.topics import ensure_topics
from operators.sources import KafkaEventSource


def test_statistics_before_the_partition_is_known_do_not_crash_the_worker():
    part = KafkaEventSource(["127.0.0.1:1"], ["t"]).build_part("in", "0-t", None)
    try:
        part._process_stats('{"topics": {}}')  # Bytewax's own raises KeyError here
        part._process_stats('{"topics": {"t": {"partitions": {}}}}')
        assert part.snapshot() == -2  # OFFSET_BEGINNING until something is read
    finally:
        part.close()


def test_resume_state_is_the_next_offset_to_read():
    part = KafkaEventSource(["127.0.0.1:1"], ["t"]).build_part("in", "0-t", 41)
    try:
        assert part.snapshot() == 41
    finally:
        part.close()


def test_the_admin_client_gets_no_consumer_settings():
    from operators.sources.kafka import admin_config

    assert admin_config({"fetch.wait.max.ms": "10", "group.id": "g", "sasl.username": "u"}) == {
        "sasl.username": "u"
    }


@pytest.mark.integration
def test_listing_partitions_does_not_warn_about_consumer_settings(make_settings, capfd):
    """Bytewax's own source hands ``fetch.wait.max.ms`` to the AdminClient that lists
    partitions, and librdkafka warns (CONFWARN) on every job start."""
    s = make_settings(partitions=2)
    k = s.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: 2})
    capfd.readouterr()
    source = KafkaEventSource(
        [k.bootstrap_servers], [k.transactions_topic], add_config={"fetch.wait.max.ms": "10"}
    )
    assert sorted(source.list_parts()) == [f"0-{k.transactions_topic}", f"1-{k.transactions_topic}"]
    part = source.build_part("in", f"0-{k.transactions_topic}", None)  # the consumer still gets it
    part.close()
    assert "CONFWARN" not in capfd.readouterr().err


@pytest.mark.integration
def test_message_mode_emits_plain_messages_and_never_blocks_on_an_empty_partition(make_settings):
    """The labels source reads one item per message; an empty poll returns at once and
    asks to be woken a millisecond later (Bytewax's own source blocked the worker 1 ms
    on every quiet partition it polled, four times per cycle with four partitions)."""
    import time

    from confluent_kafka import Producer

    from operators.validation import Message

    k = make_settings(partitions=1).kafka
    ensure_topics(k.bootstrap_servers, {k.labels_topic: 1})
    source = KafkaEventSource([k.bootstrap_servers], [k.labels_topic], add_config={"fetch.wait.max.ms": "10"})
    part = source.build_part("labels", f"0-{k.labels_topic}", None)
    try:
        assert part.next_batch() == []
        assert part.next_awake() is not None
        producer = Producer({"bootstrap.servers": k.bootstrap_servers})
        for i in range(3):
            producer.produce(k.labels_topic, f"v{i}".encode(), f"k{i}".encode(), partition=0)
        producer.flush(10)
        got: list[Message] = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            got += part.next_batch()
        assert [type(m) for m in got] == [Message] * 3
        assert [(m.key, m.value, m.offset, m.partition) for m in got] == [
            (f"k{i}".encode(), f"v{i}".encode(), i, 0) for i in range(3)
        ]
        assert part.next_awake() is None  # the last poll had messages: polled again at once
        assert part.snapshot() == 3
    finally:
        part.close()
