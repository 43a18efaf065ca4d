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
