"""Keyed state dropped after a wall-clock idle time: the one TTL logic under
the per-user and the per-entity steps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, Self, TypeVar

from bytewax.operators import StatefulBatchLogic

__all__ = ["ExpiringLogic", "Touched"]


class Touched(Protocol):
    """State that knows when it was last updated and copies itself for snapshots."""

    touched_at: float

    def snapshot(self) -> Self: ...


V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S", bound=Touched)


class ExpiringLogic(StatefulBatchLogic[V, W, S], Generic[V, W, S]):
    """``apply`` every batch to ``state``; drop it ``ttl_s`` after its last update,
    decrementing ``live`` (a gauge of the states held)."""

    def __init__(
        self,
        state: S,
        apply: Callable[[S, list[V]], list[W]],
        ttl_s: float,
        clock: Callable[[], float],
        live: Any,
    ) -> None:
        self.state, self.apply, self.ttl_s, self.clock, self.live = state, apply, ttl_s, clock, live

    def on_batch(self, values: list[V]) -> tuple[list[W], bool]:
        out = self.apply(self.state, values)
        self.state.touched_at = self.clock()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[W], bool]:
        self.live.dec()
        return [], StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime:
        return datetime.fromtimestamp(self.state.touched_at + self.ttl_s, UTC)

    def snapshot(self) -> S:
        return self.state.snapshot()
