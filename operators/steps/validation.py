"""The validate step: each polled batch of raw messages to a list of events and
its dead letters (see :mod:`operators.validation`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import bytewax.operators as op
from bytewax.dataflow import Stream, operator

from operators import kernels, metrics
from operators.events import ValidationLimits
from operators.validation import Accepted, DeadLetter, RawBatch, error_field

__all__ = ["ValidatedStreams", "validate"]


@dataclass(frozen=True)
class ValidatedStreams:
    oks: Stream[list[Accepted]]
    """One list of valid events per polled batch (in partition order)."""
    errs: Stream[DeadLetter]


@operator
def validate(
    step_id: str,
    up: Stream[RawBatch],
    limits: ValidationLimits,
    clock: Callable[[], float] = time.time,
) -> ValidatedStreams:
    """Split every batch into valid events and dead letters (nothing is dropped)."""

    def check(batch: RawBatch) -> tuple[list[Accepted], list[DeadLetter]]:
        started = time.perf_counter()
        accepted, dead = kernels.check_batch(batch, limits, clock())
        if dead:
            metrics.EVENTS.labels("dead_lettered").inc(len(dead))
            for field, n in Counter(error_field(d.error) for d in dead).items():
                metrics.DLQ_EVENTS.labels(field).inc(n)
        metrics.STAGE_SECONDS.labels("validate").observe(time.perf_counter() - started)
        return accepted, dead

    checked = op.map("check", up, check)
    oks = op.filter("has_events", op.map("events", checked, lambda c: c[0]), bool)
    errs = op.flat_map("dead_letters", checked, lambda c: c[1])
    return ValidatedStreams(oks, errs)
