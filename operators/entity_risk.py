"""Entity risk windows: per merchant, device or user, how many events there were
and how many of them are known frauds, over day windows that end a label delay ago.

This is the handbook's "risk of a terminal" feature (Le Borgne et al., chapter
3): at an event on day ``D``, with delay ``d`` days, the window of ``w`` days is
``[D - d - w, D - d)``. Frauds count only if their label was known at the
event's time (``label_time <= t``), so an event never sees a label from its own
future, whatever order the stream delivers them in: the stream job and offline
training compute the same numbers from the same labels.

Labels are set-like: the same label twice changes nothing, a later
``confirmed_legit`` label clears a fraud from its ``label_time`` on, and a label
for an event older than the longest window is ignored.

>>> w = RiskWindow()
>>> for k in range(4):
...     _ = w.add_event(1.0 * DAY + k)      # four events on day 1
>>> w.apply_label("e1", 1.0 * DAY, True, label_time=3.5 * DAY)
True
>>> w.apply_label("e1", 1.0 * DAY, True, label_time=3.5 * DAY)   # a duplicate
False
>>> cfg = RiskConfig(label_delay_days=1, windows=(1,))
>>> w.features(3.2 * DAY, cfg)        # day 3: the window is day 1; its label is not known yet
{'events_1d': 4, 'frauds_1d': 0, 'fraud_share_1d': 0.0}
>>> w.features(3.6 * DAY, cfg)
{'events_1d': 4, 'frauds_1d': 1, 'fraud_share_1d': 0.25}
"""

from __future__ import annotations

import bisect
import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from operators.features import Featured
from operators.labels import KnownLabel

__all__ = ["DAY", "LegacyRiskWindow", "RiskConfig", "RiskWindow", "risk_feature_names", "update_window"]

DAY = 86_400.0

Timeline = tuple[tuple[float, bool], ...]
"""A labelled event's labels, ``(label_time, is_fraud)`` in time order."""


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Window lengths (days) and the label delay (days) the windows end at."""

    label_delay_days: int = 2
    windows: tuple[int, ...] = (1, 7, 30)
    max_frauds: int = 4096
    """Labelled frauds kept per entity; the oldest days go first beyond it."""
    retention_days: int = field(init=False, repr=False, compare=False)
    """Days kept: the label delay plus the longest window (set from the fields above)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "retention_days", self.label_delay_days + max(self.windows))


def risk_feature_names(kind: str, config: RiskConfig = RiskConfig()) -> tuple[str, ...]:
    """``<kind>_events_<w>d``, ``<kind>_frauds_<w>d``, ``<kind>_fraud_share_<w>d`` per window.

    >>> risk_feature_names("merchant", RiskConfig(windows=(7,)))
    ('merchant_events_7d', 'merchant_frauds_7d', 'merchant_fraud_share_7d')
    """
    return tuple(
        f"{kind}_{name}_{w}d" for w in config.windows for name in ("events", "frauds", "fraud_share")
    )


def _fraud_at(timeline: Timeline, ts: float) -> bool:
    status = False
    for label_time, is_fraud in timeline:
        if label_time > ts:
            break
        status = is_fraud
    return status


_DAY_COUNT = struct.Struct("=ii")
"""One day of :attr:`RiskWindow.days`: the day (since the epoch, UTC) and its event count."""


class RiskWindow(msgspec.Struct, array_like=True):
    """One entity's daily event counts and labelled frauds (small; msgpack-able as is).

    The days are packed, 8 bytes each, and the frauds dict exists only once a fraud
    label came: a user's window with events on one day takes about 120 bytes (a dict of
    days, an empty frauds dict and the last features kept for reuse took about 1,800;
    ``python -m bench.state_memory``).
    """

    days: bytes = b""
    """Event counts per day, packed as ``(day, count)`` pairs of native int32 in ascending
    day order (:meth:`day_counts` reads them)."""
    frauds: dict[int, dict[str, Timeline]] | None = None
    """Day of the event -> event_id -> its labels, for events with a fraud label."""
    touched_at: float = 0.0
    """Wall-clock time of the last update, for idle eviction."""

    @property
    def latest_day(self) -> int | None:
        """The latest day with an event (eviction never drops it)."""
        d = self.days
        return _DAY_COUNT.unpack_from(d, len(d) - _DAY_COUNT.size)[0] if d else None

    def day_counts(self) -> dict[int, int]:
        """Events per day, as a dict."""
        return dict(_DAY_COUNT.iter_unpack(self.days))

    def add_event(self, ts: float, config: RiskConfig = RiskConfig()) -> bool:
        """Count one event at ``ts``; True when older days were evicted."""
        day = int(ts // DAY)
        d = self.days
        size = _DAY_COUNT.size
        if d:  # the usual case: another event of the latest day
            last, count = _DAY_COUNT.unpack_from(d, len(d) - size)
            if last == day:
                self.days = d[: len(d) - size] + _DAY_COUNT.pack(day, count + 1)
                return False
        pairs = memoryview(d).cast("i")
        days = pairs[0::2]
        n = len(days)
        i = bisect.bisect_left(days, day)
        if i < n and days[i] == day:
            self.days = d[: i * size] + _DAY_COUNT.pack(day, pairs[2 * i + 1] + 1) + d[(i + 1) * size :]
            return False
        del days, pairs
        self.days = d[: i * size] + _DAY_COUNT.pack(day, 1) + d[i * size :]
        return i == n and self._evict(day, config)

    def apply_label(
        self,
        event_id: str,
        event_ts: float,
        is_fraud: bool,
        label_time: float,
        config: RiskConfig = RiskConfig(),
    ) -> bool:
        """Record one label; ``True`` if it changed anything.

        Legitimate labels matter only for events already labelled fraud (they
        clear them from ``label_time`` on); keeping every legitimate label would
        make the state grow with traffic.
        """
        day = int(event_ts // DAY)
        latest = self.latest_day
        if latest is not None and day < latest - config.retention_days:
            return False
        frauds = self.frauds
        on_day = frauds.get(day) if frauds else None
        timeline = on_day.get(event_id) if on_day else None
        if timeline is None and not is_fraud:
            return False
        entry = (label_time, is_fraud)
        if timeline is not None and entry in timeline:
            return False
        if frauds is None:
            frauds = self.frauds = {}
        frauds.setdefault(day, {})[event_id] = tuple(sorted((*(timeline or ()), entry)))
        self._cap(config)
        return True

    def features(
        self, ts: float, config: RiskConfig = RiskConfig(), prefix: str = ""
    ) -> dict[str, float | None]:
        """Counts and fraud share per window for an event at ``ts`` (shares ``None`` without events),
        named ``<prefix><name>``."""
        return self.features_until(ts, config, prefix)[2]

    def features_until(
        self, ts: float, config: RiskConfig, prefix: str
    ) -> tuple[float, float, dict[str, float | None]]:
        """:meth:`features`, and the event times ``[lo, hi)`` of ``ts``'s day over which they
        hold as long as the window does not change: the answer depends only on closed days
        and on which labels are known, so the events of one day share it until a label time
        is crossed (:func:`update_window` reuses it)."""
        end = int(ts // DAY) - config.label_delay_days
        windows = config.windows
        longest = max(windows)
        pairs = memoryview(self.days).cast("i")
        days = pairs[0::2]
        first = bisect.bisect_left(days, end - longest)
        stop = bisect.bisect_left(days, end, first)
        frauds = self.frauds
        if first == stop and not frauds:  # nothing in any window (a user's first days)
            return -math.inf, math.inf, _empty(prefix, windows)
        # window w holds the days [end - w, end): a tail of [first, stop), days ascending
        counts = pairs[1::2]
        events = [sum(counts[bisect.bisect_left(days, end - w, first, stop) : stop]) for w in windows]
        if not frauds:  # the usual case: no fraud labels, the answer depends on the counts alone
            return -math.inf, math.inf, _counted(prefix, windows, tuple(events))
        fraud_counts = [0] * len(windows)
        lo, hi = -math.inf, math.inf
        for day, labelled in frauds.items():
            back = end - day
            if 1 <= back <= longest:
                for timeline in labelled.values():
                    for label_time, _ in timeline:
                        if label_time <= ts:
                            lo = max(lo, label_time)
                        else:
                            hi = min(hi, label_time)
                    if _fraud_at(timeline, ts):
                        for j, w in enumerate(windows):
                            if back <= w:
                                fraud_counts[j] += 1
        out: dict[str, float | None] = {}
        for (events_name, frauds_name, share_name), n_events, n_frauds in zip(
            _names(prefix, windows), events, fraud_counts, strict=True
        ):
            out[events_name] = n_events
            out[frauds_name] = n_frauds
            out[share_name] = n_frauds / n_events if n_events else None
        return lo, hi, out

    def _evict(self, latest: int, config: RiskConfig) -> bool:
        oldest = latest - config.retention_days
        d = self.days
        pairs = memoryview(d).cast("i")
        evicted = False
        if pairs[0] < oldest:  # a day fell out of the retention (usually nothing did)
            cut = bisect.bisect_left(pairs[0::2], oldest)
            del pairs
            self.days = d[cut * _DAY_COUNT.size :]
            evicted = True
        if frauds := self.frauds:
            old = [day for day in frauds if day < oldest]
            for day in old:
                del frauds[day]
            evicted = evicted or bool(old)
        return evicted

    def _cap(self, config: RiskConfig) -> None:
        frauds = self.frauds
        while frauds and sum(len(v) for v in frauds.values()) > config.max_frauds and len(frauds) > 1:
            del frauds[min(frauds)]

    def snapshot(self) -> RiskWindow:
        """An independent copy for Bytewax's recovery store."""
        return RiskWindow(
            self.days,
            {day: dict(v) for day, v in self.frauds.items()} if self.frauds is not None else None,
            self.touched_at,
        )


class LegacyRiskWindow(msgspec.Struct, array_like=True):
    """:class:`RiskWindow` as snapshots before the packed days hold it; :meth:`upgrade`."""

    days: dict[int, int] = {}
    frauds: dict[int, dict[str, Timeline]] = {}
    latest_day: int | None = None
    touched_at: float = 0.0

    def upgrade(self) -> RiskWindow:
        packed = b"".join(_DAY_COUNT.pack(day, n) for day, n in sorted(self.days.items()))
        return RiskWindow(packed, self.frauds or None, self.touched_at)


@functools.cache
def _empty(prefix: str, windows: tuple[int, ...]) -> dict[str, float | None]:
    """The features of a window with nothing in it (shared: do not change it)."""
    return {
        name: (None if k == 2 else 0) for names in _names(prefix, windows) for k, name in enumerate(names)
    }


@functools.lru_cache(maxsize=4096)
def _counted(prefix: str, windows: tuple[int, ...], events: tuple[int, ...]) -> dict[str, float | None]:
    """The features of a window with ``events`` per window and no frauds (shared: do not
    change it); most entities have no fraud label, and their counts repeat."""
    out: dict[str, float | None] = {}
    for (events_name, frauds_name, share_name), n in zip(_names(prefix, windows), events, strict=True):
        out[events_name] = n
        out[frauds_name] = 0
        out[share_name] = 0 / n if n else None
    return out


@functools.cache
def _names(prefix: str, windows: tuple[int, ...]) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (f"{prefix}events_{w}d", f"{prefix}frauds_{w}d", f"{prefix}fraud_share_{w}d") for w in windows
    )


def update_window(
    window: RiskWindow, items: Sequence[Featured | KnownLabel], kind: str, config: RiskConfig
) -> list[Featured]:
    """Apply labels, then events in event-time order; events come back with their risk features.

    Sorting matters: the step before (per user) hands over one activation's
    events grouped by user, so a merchant may see a later day before an
    earlier one within a batch. The risk features are added to each event's
    ``features.risk`` in place.
    """
    out = []
    # labels first: the features reused below are computed after every label of the call
    ordered = (
        sorted(items, key=lambda i: -math.inf if isinstance(i, KnownLabel) else i.accepted.ts)
        if len(items) > 1
        else items
    )
    prefix = f"{kind}_"
    delay = config.label_delay_days
    end: int | None = None
    lo, hi = 0.0, 0.0
    features: dict[str, float | None] = {}
    for item in ordered:
        if isinstance(item, KnownLabel):
            lab = item.label
            window.apply_label(lab.event_id, item.ref.event_ts, lab.is_fraud, lab.label_ts, config)
            continue
        ts = item.accepted.ts
        day = int(ts // DAY)
        if end != day - delay or not lo <= ts < hi:
            lo, hi, features = window.features_until(ts, config, prefix)
            end = day - delay
        item.features.risk.update(features)
        if window.add_event(ts, config):
            end = None  # days were evicted: compute again
        out.append(item)
    return out
