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
    def __init__(
        self,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2**attempt))


def retrying(
    sink: str,
    policy: RetryPolicy,
    attempt: Callable[[], T],
    errors: tuple[type[BaseException], ...],
    reset: Callable[[], None] = lambda: None,
) -> T:
    """Run ``attempt`` until it succeeds; after ``max_retries`` failures raise :class:`SinkError`.

    ``reset`` runs after each failure (e.g. drop a broken connection).
    """
    for n in range(policy.max_retries + 1):
        try:
            result = attempt()
        except errors as exc:
            reset()
            if n >= policy.max_retries:
                raise SinkError(
                    f"{sink}: giving up after {n + 1} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            metrics.SINK_RETRIES.labels(sink).inc()
            metrics.SINK_UNAVAILABLE.labels(sink).set(1)
            log.warning(
                "%s: write failed (%s: %s); retry %d/%d in %.1fs",
                sink,
                type(exc).__name__,
                str(exc).strip()[:200],
                n + 1,
                policy.max_retries,
                policy.delay(n),
            )
            policy.sleep(policy.delay(n))
        else:
            metrics.SINK_UNAVAILABLE.labels(sink).set(0)
            return result
    raise AssertionError("unreachable")
