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
