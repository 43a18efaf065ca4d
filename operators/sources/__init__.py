"""Bytewax sources and live inputs of the job: Kafka, and the Redis blocklists read per batch."""

from operators.sources.kafka import KafkaEventSource

__all__ = ["KafkaEventSource"]
