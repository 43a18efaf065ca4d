"""Per-user state: small, picklable, bounded by time and by count.

The state knows a user's recent events (for velocity, travel and recent-amount
features), running amount statistics over the whole history (Welford), the
devices the user has used (least recently used first out) and when the user was
first seen. It holds no clients and no models, so Bytewax can snapshot it.

>>> s = UserState()
>>> s.push(Seen(ts=0.0, amount=10.0), device_id="d1")
>>> s.push(Seen(ts=60.0, amount=30.0), device_id="d1")
>>> s.count, s.mean, s.knows_device("d1")
(2, 20.0, True)
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

__all__ = ["Seen", "StateLimits", "UserState"]


class Seen(NamedTuple):
    """What the state keeps of one past event (event time in epoch seconds)."""

    ts: float
    amount: float
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class StateLimits:
    """Bounds on one user's state.

    ``window_s`` is the longest look-back any feature or rule needs;
    ``max_events`` caps a burst inside it; ``max_devices`` caps the device set;
    ``velocity_window_s`` is the look-back of the ``velocity_check`` rule's count
    (``rules.velocity_check.window_s``, at most ``window_s``).
    """

    window_s: float = 86_400.0
    max_events: int = 64
    max_devices: int = 16
    velocity_window_s: float = 600.0


class UserState(msgspec.Struct, array_like=True):
    """One user's history, as the features and rules need it (a msgspec struct:
    a shard's snapshot encodes it natively)."""

    recent: list[Seen] = []
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    devices: list[str] = []
    first_seen: float | None = None
    touched_at: float = 0.0
    """Wall-clock time of the last update, for idle eviction."""

    @property
    def std(self) -> float:
        """Sample standard deviation of all amounts seen (0 with < 2)."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def knows_device(self, device_id: str) -> bool:
        return device_id in self.devices

    def before(self, ts: float) -> list[Seen]:
        """Recent events at or before ``ts``, oldest first."""
        return self.recent[: bisect.bisect_right(self.recent, ts, key=lambda s: s.ts)]

    def push(self, seen: Seen, device_id: str | None = None, limits: StateLimits = StateLimits()) -> None:
        """Add one event; keeps ``recent`` sorted by event time even when out of order."""
        bisect.insort(self.recent, seen, key=lambda s: s.ts)
        self.count += 1
        delta = seen.amount - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (seen.amount - self.mean)
        if self.first_seen is None or seen.ts < self.first_seen:
            self.first_seen = seen.ts
        if device_id is not None:
            if device_id in self.devices:
                self.devices.remove(device_id)
            self.devices.append(device_id)
            del self.devices[: -limits.max_devices]
        self.evict_before(self.recent[-1].ts - limits.window_s)
        del self.recent[: -limits.max_events]

    def evict_before(self, ts: float) -> None:
        """Forget recent events older than ``ts`` (running stats are kept)."""
        cut = bisect.bisect_left(self.recent, ts, key=lambda s: s.ts)
        del self.recent[:cut]

    def snapshot(self) -> UserState:
        """An independent copy, safe to hand to Bytewax's recovery store."""
        return UserState(
            list(self.recent),
            self.count,
            self.mean,
            self.m2,
            list(self.devices),
            self.first_seen,
            self.touched_at,
        )
