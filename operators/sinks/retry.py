"""Bounded retries with exponential backoff for sink writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from operators import metrics

__all__ = ["RetryPolicy", "SinkError", "retrying"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class SinkError(RuntimeError):
    """A sink could not deliver a batch within its retry budget."""


class RetryPolicy:
    """Exponential backoff (capped), for as long as an outage may last.

    A failed write is retried after ``backoff_s``, doubling up to
    ``max_backoff_s``, until ``give_up_after_s`` have passed since the first
    failure or ``max_retries`` retries were made (either may be None: no limit).
    Meanwhile the dataflow waits (backpressure): nothing is buffered beyond the
    batch in hand.
    """

    def __init__(
        self,
        max_retries: int | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        give_up_after_s: float | None = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.sleep = sleep
        self.clock = clock

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** min(attempt, 30)))

    def retry_after(self, failures: int, first_failure: float) -> float | None:
        """Seconds to wait before the next try, or None to give up."""
        if self.max_retries is not None and failures > self.max_retries:
            return None
        wait = self.delay(failures - 1)
        if self.give_up_after_s is not None and self.clock() + wait - first_failure > self.give_up_after_s:
            return None
        return wait


def retrying(
    sink: str,
    policy: RetryPolicy,
    attempt: Callable[[], T],
    errors: tuple[type[BaseException], ...],
    reset: Callable[[], None] = lambda: None,
) -> T:
    """Run ``attempt`` until it succeeds or the policy gives up (then raise :class:`SinkError`).

    ``reset`` runs after each failure (e.g. drop a broken connection).
    """
    failures, first = 0, 0.0
    while True:
        try:
            result = attempt()
        except errors as exc:
            reset()
            failures += 1
            first = first or policy.clock()
            wait = policy.retry_after(failures, first)
            if wait is None:
                metrics.SINK_UNAVAILABLE.labels(sink).set(0)
                raise SinkError(
                    f"{sink}: giving up after {failures} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            metrics.SINK_RETRIES.labels(sink).inc()
            if failures == 1:
                log.warning(
                    "%s: write failed (%s: %s); retrying with backoff",
                    sink,
                    type(exc).__name__,
                    str(exc).strip()[:200],
                )
            metrics.SINK_UNAVAILABLE.labels(sink).set(1)
            policy.sleep(wait)
        else:
            if failures:
                log.info("%s: write succeeded after %d failed attempts", sink, failures)
            metrics.SINK_UNAVAILABLE.labels(sink).set(0)
            return result
