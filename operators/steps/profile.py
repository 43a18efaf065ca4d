"""The per-user stateful step: features from each user's state, then update it
(the logic is :func:`operators.features.update_profile` over :mod:`operators.state`).

State is keyed by ``user_id`` (Bytewax routes each user to one worker) and
dropped after ``ttl_s`` of wall-clock idleness, so memory stays bounded however
many users appear.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import bytewax.operators as op
from bytewax.operators import KeyedStream

from operators import metrics
from operators.features import Featured, update_profile
from operators.state import StateLimits, UserState
from operators.steps.expiring import ExpiringLogic
from operators.validation import Accepted

__all__ = ["profile_users"]


def profile_users(
    step_id: str,
    up: KeyedStream[Accepted],
    limits: StateLimits,
    ttl_s: float,
    clock: Callable[[], float] = time.time,
) -> KeyedStream[Featured]:
    """Attach per-user features to every event, keeping each user's state."""

    def apply(state: UserState, values: list[Accepted]) -> list[Featured]:
        return [update_profile(state, acc, limits) for acc in values]

    def build(resume: UserState | None) -> ExpiringLogic[Accepted, Featured, UserState]:
        metrics.USER_STATES.inc()
        state = resume if resume is not None else UserState(touched_at=clock())
        return ExpiringLogic(state, apply, ttl_s, clock, metrics.USER_STATES)

    return op.stateful_batch(step_id, up, build)
