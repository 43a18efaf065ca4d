"""Per-user state: small, picklable, bounded by time and by count.

The state knows a user's recent events (for velocity, travel and recent-amount
features), running amount statistics over the whole history (Welford), the
user's habits as two small histograms (amounts in powers of two, local hours in
3-hour bands; halved when each adds up to more than about ``HABIT_CAP``, so recent
habits weigh more), the devices the user has used (least recently used first
out) and when the user was first seen. It holds no clients and no models, so
Bytewax can snapshot it.

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

__all__ = [
    "AMOUNT_BINS",
    "HABIT_CAP",
    "HOUR_BANDS",
    "LARGE",
    "MIN_HABIT",
    "ODD_HOUR",
    "Seen",
    "StateLimits",
    "UserState",
    "amount_bin",
]

AMOUNT_BINS = 16
"""Amount histogram bins: ``[0, 1)``, ``[1, 2)``, ``[2, 4)``, ..., ``[2**14, inf)``."""
HOUR_BANDS = 8
"""Hour histogram bands of three local hours each: 00-03, 03-06, ..., 21-24."""
HABIT_CAP = 240
"""When a user's two histograms add up to more than twice this, all counts are halved,
rounding up (recent habits weigh more). Each histogram then adds up to about this at
most, so every count fits one byte."""
MIN_HABIT = 5
"""Histogram weight below which a user has no habits yet (rank and share are None)."""

LARGE = 1
"""``Seen.flags`` field: the amount was in the top decile of the user's amounts when made."""
ODD_HOUR = 1 << 16
"""``Seen.flags`` field: made in an hour band holding under 1/12 of the user's events then.
The two are 16 bits apart, so a plain sum of flags over a window (``max_events`` < 65,536)
counts both at once: ``total & 0xFFFF`` large ones, ``total >> 16`` odd-hour ones."""


class Seen(NamedTuple):
    """What the state keeps of one past event (event time in epoch seconds)."""

    ts: float
    amount: float
    lat: float | None = None
    lon: float | None = None
    flags: int = 0
    """``LARGE`` | ``ODD_HOUR``: how the event stood against the user's habits when made."""


def amount_bin(amount: float) -> int:
    """The amount histogram's bin of ``amount`` (see ``AMOUNT_BINS``).

    >>> [amount_bin(a) for a in (0.5, 1.0, 3.0, 64.0, 1e9)]
    [0, 1, 2, 7, 15]
    """
    if not amount >= 1.0:  # also NaN
        return 0
    return min(AMOUNT_BINS - 1, math.frexp(amount)[1])


@dataclass(frozen=True, slots=True)
class StateLimits:
    """Bounds on one user's state.

    ``window_s`` is the longest look-back any feature or rule needs;
    ``max_events`` caps a burst inside it; ``max_devices`` caps the device set;
    ``velocity_window_s`` is the look-back of the ``velocity_check`` rule's count
    (``rules.velocity_check.window_s``, at most ``window_s``).
    """

    window_s: float = 172_800.0
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
    habits: bytearray = bytearray()
    """Amount histogram (``AMOUNT_BINS`` counts) then local-hour histogram (``HOUR_BANDS``
    counts), one byte each, once the user has an event: 24 bytes in memory and snapshots."""

    @property
    def std(self) -> float:
        """Sample standard deviation of all amounts seen (0 with < 2)."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def knows_device(self, device_id: str) -> bool:
        return device_id in self.devices

    def amount_rank(self, amount: float) -> float | None:
        """Share of the user's past amounts below ``amount`` (half its own bin counted);
        None before ``MIN_HABIT`` events."""
        bins = self.habits[:AMOUNT_BINS]
        total = sum(bins)
        if total < MIN_HABIT:
            return None
        b = amount_bin(amount)
        return (sum(bins[:b]) + 0.5 * bins[b]) / total

    def hour_share(self, hour: int) -> float | None:
        """Share of the user's past events in ``hour``'s 3-hour band; None before ``MIN_HABIT``."""
        total = sum(self.habits[AMOUNT_BINS:])
        return self.habits[AMOUNT_BINS + hour // 3] / total if total >= MIN_HABIT else None

    def learn_habits(self, amount: float, hour: int) -> None:
        """Count one event in both histograms, halving both when together they pass
        twice ``HABIT_CAP``."""
        h = self.habits
        if not h:
            h = self.habits = bytearray(AMOUNT_BINS + HOUR_BANDS)
        h[amount_bin(amount)] += 1
        h[AMOUNT_BINS + hour // 3] += 1
        if sum(h) > 2 * HABIT_CAP:
            self.habits = bytearray((c + 1) >> 1 for c in h)

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
            bytearray(self.habits),
        )
