"""Sinks with a contract: batch writes, idempotent on ``event_id``, delivery
failures retried with backoff and then raised (never swallowed), and blocking
(backpressure) instead of unbounded buffering."""

from operators.sinks.kafka import DeliveredKafkaSink, DeliveryError, KafkaRoute
from operators.sinks.postgres import PostgresSink
from operators.sinks.redis import RiskSink
from operators.sinks.retry import SinkError

__all__ = ["DeliveredKafkaSink", "DeliveryError", "KafkaRoute", "PostgresSink", "RiskSink", "SinkError"]
