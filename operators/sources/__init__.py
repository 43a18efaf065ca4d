"""Where events come from: Kafka for the job, files and Postgres for training and replay."""

from operators.sources.files import EventReadReport, read_events, row_to_event
from operators.sources.kafka import KafkaEventSource

__all__ = ["EventReadReport", "KafkaEventSource", "read_events", "row_to_event"]
