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
...     w.add_event(1.0 * DAY + k)          # four events on day 1
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

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from operators.features import Featured
from operators.labels import KnownLabel

__all__ = ["DAY", "RiskConfig", "RiskWindow", "risk_feature_names", "update_window"]

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

    @property
    def retention_days(self) -> int:
        return self.label_delay_days + max(self.windows)


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


class RiskWindow(msgspec.Struct, dict=True, array_like=True):
    """One entity's daily event counts and labelled frauds (small; msgpack-able as is).

    ``version`` (bumped by every change that can alter features already
    computed, not by today's events) and ``cache`` (the last features computed,
    with their window end, version, prefix and bounding label times) are plain
    attributes, not fields: snapshots leave them out.
    """

    days: dict[int, int] = {}
    frauds: dict[int, dict[str, Timeline]] = {}
    """Day of the event -> event_id -> its labels, for events with a fraud label."""
    latest_day: int | None = None
    touched_at: float = 0.0
    """Wall-clock time of the last update, for idle eviction."""

    version = 0
    cache = cast("tuple[Any, ...] | None", None)

    def add_event(self, ts: float, config: RiskConfig = RiskConfig()) -> None:
        day = int(ts // DAY)
        self.days[day] = self.days.get(day, 0) + 1
        if self.latest_day is None or day > self.latest_day:
            self.latest_day = day
            self._evict(config)
        if self.cache is not None and day < self.cache[0]:
            self.version += 1  # a late event inside the window of the cached features

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
        if self.latest_day is not None and day < self.latest_day - config.retention_days:
            return False
        on_day = self.frauds.get(day)
        timeline = on_day.get(event_id) if on_day else None
        if timeline is None and not is_fraud:
            return False
        entry = (label_time, is_fraud)
        if timeline is not None and entry in timeline:
            return False
        self.frauds.setdefault(day, {})[event_id] = tuple(sorted((*(timeline or ()), entry)))
        self._cap(config)
        self.version += 1
        return True

    def features(
        self, ts: float, config: RiskConfig = RiskConfig(), prefix: str = ""
    ) -> dict[str, float | None]:
        """Counts and fraud share per window for an event at ``ts`` (shares ``None`` without events),
        named ``<prefix><name>``.

        The answer depends only on closed days and on which labels are known at
        ``ts``, so it is cached: events of the same day reuse it until a label
        time is crossed or a label or a late event changes the window. The
        returned dict is shared: do not change it.
        """
        end = int(ts // DAY) - config.label_delay_days
        c = self.cache
        if c is not None and c[0] == end and c[1] == self.version and c[2] <= ts < c[3] and c[4] == prefix:
            result: dict[str, float | None] = c[5]
            return result
        longest = max(config.windows)
        events = [0] * (longest + 1)
        frauds = [0] * (longest + 1)
        for day, n in self.days.items():
            back = end - day
            if 1 <= back <= longest:
                events[back] += n
        lo, hi = -math.inf, math.inf
        for day, labelled in self.frauds.items():
            back = end - day
            if 1 <= back <= longest:
                for timeline in labelled.values():
                    for label_time, _ in timeline:
                        if label_time <= ts:
                            lo = max(lo, label_time)
                        else:
                            hi = min(hi, label_time)
                    frauds[back] += _fraud_at(timeline, ts)
        out: dict[str, float | None] = {}
        for w in config.windows:
            n_events = sum(events[1 : w + 1])
            n_frauds = sum(frauds[1 : w + 1])
            out[f"{prefix}events_{w}d"] = n_events
            out[f"{prefix}frauds_{w}d"] = n_frauds
            out[f"{prefix}fraud_share_{w}d"] = n_frauds / n_events if n_events else None
        self.cache = (end, self.version, lo, hi, prefix, out)
        return out

    def _evict(self, config: RiskConfig) -> None:
        assert self.latest_day is not None
        oldest = self.latest_day - config.retention_days
        old = [d for d in self.days if d < oldest]
        for day in old:
            del self.days[day]
        old_frauds = [d for d in self.frauds if d < oldest]
        for day in old_frauds:
            del self.frauds[day]
        if old or old_frauds:
            self.version += 1

    def _cap(self, config: RiskConfig) -> None:
        while sum(len(v) for v in self.frauds.values()) > config.max_frauds and len(self.frauds) > 1:
            del self.frauds[min(self.frauds)]

    def snapshot(self) -> RiskWindow:
        """An independent copy for Bytewax's recovery store."""
        return RiskWindow(
            dict(self.days),
            {day: dict(v) for day, v in self.frauds.items()},
            self.latest_day,
            self.touched_at,
        )


def update_window(
    window: RiskWindow, items: Iterable[Featured | KnownLabel], kind: str, config: RiskConfig
) -> list[Featured]:
    """Apply labels, then events in event-time order; events come back with their risk features.

    Sorting matters: the step before (per user) hands over one activation's
    events grouped by user, so a merchant may see a later day before an
    earlier one within a batch. The risk features are added to each event's
    ``features.risk`` in place.
    """
    out = []
    ordered = sorted(items, key=lambda i: -math.inf if isinstance(i, KnownLabel) else i.accepted.ts)
    for item in ordered:
        if isinstance(item, KnownLabel):
            lab = item.label
            window.apply_label(lab.event_id, item.ref.event_ts, lab.is_fraud, lab.label_ts, config)
            continue
        ts = item.accepted.ts
        item.features.risk.update(window.features(ts, config, f"{kind}_"))
        window.add_event(ts, config)
        out.append(item)
    return out
