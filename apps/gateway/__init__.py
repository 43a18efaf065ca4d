"""The HTTP gateway: ingestion into the stream and synchronous score calls
(``fraudstream gateway``; see docs/gateway.md)."""

from apps.gateway.app import create_app, run_gateway
from apps.gateway.replies import CONFLICT, DecisionRouter, DeliveringProducer

__all__ = ["CONFLICT", "DecisionRouter", "DeliveringProducer", "create_app", "run_gateway"]
