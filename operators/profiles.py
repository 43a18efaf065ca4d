"""The per-user stateful step: features from each user's state, then update it.

State is keyed by ``user_id`` (Bytewax routes each user to one worker) and
dropped after ``ttl_s`` of wall-clock idleness, so memory stays bounded however
many users appear.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import bytewax.operators as op
from bytewax.operators import KeyedStream, StatefulBatchLogic

from operators import metrics
from operators.features import Features, compute_features
from operators.state import Seen, StateLimits, UserState
from operators.validation import Accepted

__all__ = ["Featured", "UserProfileLogic", "profile_users"]


@dataclass(frozen=True, slots=True)
class Featured:
    accepted: Accepted
    features: Features


def update_profile(state: UserState, acc: Accepted, limits: StateLimits) -> Featured:
    """Features of ``acc`` against ``state``, then ``acc`` pushed into ``state``."""
    ev = acc.event
    features = compute_features(state, ev, acc.ts)
    loc = ev.location
    state.push(
        Seen(acc.ts, ev.amount, loc.latitude if loc else None, loc.longitude if loc else None),
        ev.device_id,
        limits,
    )
    return Featured(acc, features)


class UserProfileLogic(StatefulBatchLogic[Accepted, Featured, UserState]):
    def __init__(
        self, state: UserState, limits: StateLimits, ttl_s: float, clock: Callable[[], float]
    ) -> None:
        self.state = state
        self.limits = limits
        self.ttl_s = ttl_s
        self.clock = clock

    def on_batch(self, values: list[Accepted]) -> tuple[list[Featured], bool]:
        out = [update_profile(self.state, acc, self.limits) for acc in values]
        self.state.touched_at = self.clock()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Featured], bool]:
        metrics.USER_STATES.dec()
        return [], StatefulBatchLogic.DISCARD

    def notify_at(self) -> datetime:
        return datetime.fromtimestamp(self.state.touched_at + self.ttl_s, UTC)

    def snapshot(self) -> UserState:
        return self.state.snapshot()


def profile_users(
    step_id: str,
    up: KeyedStream[Accepted],
    limits: StateLimits,
    ttl_s: float,
    clock: Callable[[], float] = time.time,
) -> KeyedStream[Featured]:
    """Attach per-user features to every event, keeping each user's state."""

    def build(resume: UserState | None) -> UserProfileLogic:
        metrics.USER_STATES.inc()
        state = resume if resume is not None else UserState(touched_at=clock())
        return UserProfileLogic(state, limits, ttl_s, clock)

    return op.stateful_batch(step_id, up, build)
