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
import struct
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

__all__ = [
    "AMOUNT_BINS",
    "FIELDS",
    "HABIT_CAP",
    "HOUR_BANDS",
    "LARGE",
    "MIN_HABIT",
    "ODD_HOUR",
    "LegacyUserState",
    "Seen",
    "StateLimits",
    "UserState",
    "amount_bin",
    "columns",
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
    """What the state keeps of one past event (event time in epoch seconds); stored
    packed (:attr:`UserState.recent`)."""

    ts: float
    amount: float
    lat: float | None = None
    lon: float | None = None
    flags: int = 0
    """``LARGE`` | ``ODD_HOUR``: how the event stood against the user's habits when made."""


FIELDS = len(Seen._fields)
"""Doubles per event in :attr:`UserState.recent`: ``ts, amount, lat, lon, flags``."""
_PACK = struct.Struct(f"={FIELDS}d")
_NAN = math.nan


def _pack(seen: Seen) -> bytes:
    """One event as :attr:`UserState.recent` holds it (a missing location as NaN)."""
    lat, lon = seen.lat, seen.lon
    return _PACK.pack(
        seen.ts, seen.amount, _NAN if lat is None else lat, _NAN if lon is None else lon, seen.flags
    )


def columns(
    recent: bytes,
) -> tuple[memoryview[float], memoryview[float], memoryview[float], memoryview[float], memoryview[float]]:
    """Views of packed ``recent`` events, one per :class:`Seen` field (a missing location is
    NaN). No copy: a view slices and sums as a list of floats does, in C.

    >>> s = UserState()
    >>> s.push(Seen(60.0, 30.0)); s.push(Seen(0.0, 10.0, 40.7, -74.0, 1))
    >>> [c.tolist() for c in columns(s.recent)]
    [[0.0, 60.0], [10.0, 30.0], [40.7, nan], [-74.0, nan], [1.0, 0.0]]
    """
    v = memoryview(recent).cast("d")
    return v[0::FIELDS], v[1::FIELDS], v[2::FIELDS], v[3::FIELDS], v[4::FIELDS]


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

    recent: bytes = b""
    """The recent events in event-time order, packed: :data:`FIELDS` doubles each (40 bytes;
    a missing location is NaN), read through :func:`columns`. A list of ``Seen`` tuples took
    about 180 bytes an event in memory."""
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    devices: tuple[str, ...] = ()
    """The devices used, least recently used first (a tuple: one object, rebuilt only when
    the order changes)."""
    first_seen: float | None = None
    touched_at: float = 0.0
    """Wall-clock time of the last update, for idle eviction."""
    habits: bytes = b""
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
        h = bytearray(self.habits or AMOUNT_BINS + HOUR_BANDS)
        h[amount_bin(amount)] += 1
        h[AMOUNT_BINS + hour // 3] += 1
        self.habits = bytes((c + 1) >> 1 for c in h) if sum(h) > 2 * HABIT_CAP else bytes(h)

    def history(self) -> list[Seen]:
        """The recent events, oldest first (a missing location is None)."""
        return [
            Seen(ts, amount, None if math.isnan(lat) else lat, None if math.isnan(lon) else lon, int(flags))
            for ts, amount, lat, lon, flags in _PACK.iter_unpack(self.recent)
        ]

    def push(self, seen: Seen, device_id: str | None = None, limits: StateLimits = StateLimits()) -> None:
        """Add one event; keeps ``recent`` sorted by event time even when out of order."""
        rec = self.recent
        times = memoryview(rec).cast("d")[0::FIELDS]
        n = len(times) + 1
        at = bisect.bisect_right(times, seen.ts)
        if at == n - 1:  # the usual case: the latest event, appended; it bounds the window
            keep_from = max(bisect.bisect_left(times, seen.ts - limits.window_s), n - limits.max_events)
            del times
            rec += _pack(seen)
        else:
            del times
            at *= _PACK.size
            rec = rec[:at] + _pack(seen) + rec[at:]
            times = memoryview(rec).cast("d")[0::FIELDS]
            keep_from = max(bisect.bisect_left(times, times[n - 1] - limits.window_s), n - limits.max_events)
            del times
        self.recent = rec[keep_from * _PACK.size :] if keep_from > 0 else rec
        self.count += 1
        delta = seen.amount - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (seen.amount - self.mean)
        if self.first_seen is None or seen.ts < self.first_seen:
            self.first_seen = seen.ts
        devices = self.devices
        if device_id is not None and (not devices or devices[-1] != device_id):
            self.devices = (*(d for d in devices if d != device_id), device_id)[-limits.max_devices :]

    def snapshot(self) -> UserState:
        """An independent copy, safe to hand to Bytewax's recovery store."""
        return UserState(
            self.recent,
            self.count,
            self.mean,
            self.m2,
            self.devices,
            self.first_seen,
            self.touched_at,
            self.habits,
        )


class LegacyUserState(msgspec.Struct, array_like=True):
    """:class:`UserState` as snapshots before the packed ``recent`` hold it (a list of
    ``Seen``); :meth:`upgrade` turns one into the current layout."""

    recent: list[Seen] = []
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    devices: list[str] = []
    first_seen: float | None = None
    touched_at: float = 0.0
    habits: bytearray = bytearray()

    def upgrade(self) -> UserState:
        packed = b"".join(map(_pack, self.recent))
        return UserState(
            packed,
            self.count,
            self.mean,
            self.m2,
            tuple(self.devices),
            self.first_seen,
            self.touched_at,
            bytes(self.habits),
        )
