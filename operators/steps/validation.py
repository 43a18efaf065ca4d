"""The validate step: raw Kafka messages to events and dead letters (see
:mod:`operators.validation`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError
from bytewax.dataflow import Stream

from operators import metrics
from operators.events import ValidationLimits
from operators.validation import Accepted, DeadLetter, RawMessage, check_message, error_field

__all__ = ["ValidatedStreams", "validate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidatedStreams:
    oks: Stream[Accepted]
    errs: Stream[DeadLetter]


def validate(
    step_id: str,
    up: Stream[RawMessage | KafkaError],
    limits: ValidationLimits,
    clock: Callable[[], float] = time.time,
) -> ValidatedStreams:
    """Split raw messages into valid events and dead letters (nothing is dropped).

    Consumer errors from the source carry no event: they are logged and counted.
    """

    def check_batch(batch: list[RawMessage | KafkaError]) -> list[Accepted | DeadLetter]:
        started = time.perf_counter()
        now = clock()
        out: list[Accepted | DeadLetter] = []
        for item in batch:
            if isinstance(item, KafkaError):
                log.warning("%s: consumer error: %s", step_id, item.err)
                metrics.EVENTS.labels("consumer_error").inc()
                continue
            result = check_message(item, limits, now)
            if isinstance(result, DeadLetter):
                metrics.EVENTS.labels("dead_lettered").inc()
                metrics.DLQ_EVENTS.labels(error_field(result.error)).inc()
            out.append(result)
        metrics.STAGE_SECONDS.labels("validate").observe(time.perf_counter() - started)
        return out

    checked = op.flat_map_batch("check", up, check_batch)
    branch = op.branch("split", checked, lambda r: isinstance(r, Accepted))
    return ValidatedStreams(branch.trues, branch.falses)  # type: ignore[arg-type]
