"""Features of one event given the user's state before it.

One definition serves the stream job and model training, so what a model was
trained on is what it scores (no train/serve skew). Missing values (first
event, no location) are ``None`` here and ``NaN`` in the model matrix.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from math import isnan
from operator import attrgetter

import msgspec
import numpy as np

from operators.events import TransactionEvent
from operators.geo import haversine_km
from operators.state import LARGE, ODD_HOUR, Seen, StateLimits, UserState, columns
from operators.validation import Accepted

__all__ = [
    "DERIVED_ATTRIBUTES",
    "FEATURE_NAMES",
    "Featured",
    "Features",
    "attribute_value",
    "compute_features",
    "feature_matrix",
    "featured_matrix",
    "is_risk_feature",
    "update_profile",
]


class Features(msgspec.Struct, frozen=True, omit_defaults=False):
    """Everything the rules and the models know about one event."""

    amount: float
    hour_of_day: int
    day_of_week: int
    days_since_last_event: float | None
    amount_mean_10: float | None
    amount_std_10: float | None
    events_10m: int
    events_1h: int
    events_24h: int
    velocity_events: int
    """Events in the ``velocity_check`` rule's window (``rules.velocity_check.window_s``),
    this one included: ``events_10m`` with the default window of 600 s."""
    distance_km: float | None
    seconds_since_last_location: float | None
    speed_kmh: float | None
    amount_zscore: float | None
    user_mean_amount: float | None
    user_event_count: int
    device_known: bool | None
    known_devices: int
    spend_24h: float = 0.0
    """Money spent by the user in the last 24 hours, this event included."""
    spend_ratio_24h: float | None = None
    """``spend_24h`` over the user's usual spend per day (all amounts seen before this
    event over the days since first seen, at least one day); None before any history."""
    amount_rank: float | None = None
    """Share of the user's past amounts below this one (histogram in powers of two, recent
    habits weighted more); None before five events."""
    hour_share: float | None = None
    """Share of the user's past events in this event's 3-hour band of the local day; None
    before five events."""
    large_48h: int = 0
    """Events of the last 48 hours (within ``state.window_s``), this one included, that were
    in the top decile of the user's amounts when made (``amount_rank`` >= 0.9)."""
    odd_hour_48h: int = 0
    """Events of the last 48 hours (within ``state.window_s``), this one included, made in an
    hour band holding under 1/12 of the user's events then (``hour_share`` < 1/12)."""
    risk: dict[str, float | None] = {}
    """Entity risk windows (``merchant_fraud_share_7d``, ...), added by the entity steps."""


FEATURE_NAMES: tuple[str, ...] = (
    "amount",
    "hour_of_day",
    "day_of_week",
    "days_since_last_event",
    "amount_mean_10",
    "amount_std_10",
    "events_10m",
    "events_1h",
    "events_24h",
    "distance_km",
    "speed_kmh",
    "amount_zscore",
    "device_novelty",
    "spend_24h",
    "spend_ratio_24h",
    "amount_rank",
    "hour_share",
    "large_48h",
    "odd_hour_48h",
)
"""Columns of the unsupervised models' matrix, in order."""

LARGE_RANK = 0.9
"""``amount_rank`` from which an event counts as large for its user."""
ODD_SHARE = 1.0 / 12.0
"""``hour_share`` under which an event's hour counts as odd for its user."""
RECENT_S = 172_800.0
"""Look-back of ``large_48h`` and ``odd_hour_48h``."""

_RISK_NAME = re.compile(r"(merchant|device|user)_(events|frauds|fraud_share)_[0-9]+d")


def compute_features(
    state: UserState, event: TransactionEvent, ts: float, velocity_window_s: float = 600.0
) -> Features:
    """Features of ``event`` (event time ``ts``, epoch seconds) against ``state``.

    Window counts include the event itself; history statistics exclude it.
    ``velocity_window_s`` is the window of ``velocity_events`` (the velocity rule's).
    """
    times, amounts_all, lats, lons, flag_col = columns(state.recent)
    n = bisect.bisect_right(times, ts)  # the events before this one (at or before ts)
    amounts = amounts_all[max(0, n - 10) : n].tolist()
    distance = since_loc = speed = None
    if event.location is not None:
        for i in range(n - 1, -1, -1):
            lat, lon = lats[i], lons[i]
            if not (isnan(lat) or isnan(lon)):  # the event had a location
                distance = haversine_km(lat, lon, event.location.latitude, event.location.longitude)
                since_loc = ts - times[i]
                speed = distance / max(since_loc / 3600.0, 1.0 / 60.0)
                break
    std = state.std
    local = event.timestamp
    mean = sum(amounts) / len(amounts) if amounts else None
    day_start = bisect.bisect_right(times, ts - 86_400.0, 0, n)
    spend = event.amount + sum(amounts_all[day_start:n])
    rank = state.amount_rank(event.amount)
    share = state.hour_share(local.hour)
    recent_start = bisect.bisect_right(times, ts - RECENT_S, 0, n)
    flags = _habit_flags(rank, share) + int(sum(flag_col[recent_start:n]))
    last_ts = times[n - 1] if n else None
    # positional, in field order (a struct built by keyword cost 0.77 us, by position 0.12)
    return Features(
        event.amount,  # amount
        local.hour,  # hour_of_day
        local.weekday(),  # day_of_week
        (ts - last_ts) / 86_400.0 if last_ts is not None else None,  # days_since_last_event
        mean,  # amount_mean_10
        _pstdev(amounts, mean) if mean is not None and len(amounts) > 1 else None,  # amount_std_10
        n - bisect.bisect_right(times, ts - 600.0, 0, n) + 1,  # events_10m
        n - bisect.bisect_right(times, ts - 3600.0, 0, n) + 1,  # events_1h
        n - day_start + 1,  # events_24h
        n - bisect.bisect_right(times, ts - velocity_window_s, 0, n) + 1,  # velocity_events
        distance,  # distance_km
        since_loc,  # seconds_since_last_location
        speed,  # speed_kmh
        (event.amount - state.mean) / std if std > 0 else None,  # amount_zscore
        state.mean if state.count else None,  # user_mean_amount
        state.count,  # user_event_count
        state.knows_device(event.device_id) if event.device_id else None,  # device_known
        len(state.devices),  # known_devices
        spend,  # spend_24h
        _spend_ratio(state, spend, ts),  # spend_ratio_24h
        rank,  # amount_rank
        share,  # hour_share
        flags & 0xFFFF,  # large_48h
        flags >> 16,  # odd_hour_48h
        {},  # risk
    )


def _habit_flags(rank: float | None, share: float | None) -> int:
    """``Seen.flags`` of an event with this ``amount_rank`` and ``hour_share``."""
    return (LARGE if rank is not None and rank >= LARGE_RANK else 0) | (
        ODD_HOUR if share is not None and share < ODD_SHARE else 0
    )


def _spend_ratio(state: UserState, spend: float, ts: float) -> float | None:
    """``spend`` over the user's usual daily spend (see ``Features.spend_ratio_24h``)."""
    if not state.count or state.first_seen is None or state.mean <= 0:
        return None
    days = max(1.0, (ts - state.first_seen) / 86_400.0)
    usual = state.count * state.mean / days
    # a mean of a few denormal amounts (5e-324 is a valid amount) over days rounds to 0
    return spend / usual if usual > 0 else None


class Featured(msgspec.Struct, frozen=True, gc=False):
    """An accepted event with its features (the user's, then the entity risk windows');
    a struct for the reasons :class:`~operators.validation.Accepted` is one."""

    accepted: Accepted
    features: Features


def update_profile(state: UserState, acc: Accepted, limits: StateLimits) -> Featured:
    """Features of ``acc`` against ``state``, then ``acc`` pushed into ``state``."""
    ev = acc.event
    features = compute_features(state, ev, acc.ts, limits.velocity_window_s)
    loc = ev.location
    state.push(
        Seen(
            acc.ts,
            ev.amount,
            loc.latitude if loc else None,
            loc.longitude if loc else None,
            _habit_flags(features.amount_rank, features.hour_share),
        ),
        ev.device_id,
        limits,
    )
    state.learn_habits(ev.amount, features.hour_of_day)
    return Featured(acc, features)


def _pstdev(values: Sequence[float], mean: float) -> float:
    """Population standard deviation in floats (``statistics.pstdev`` is exact,
    through fractions, and was the job's biggest single cost per event)."""
    total = 0.0
    for v in values:
        d = v - mean
        total += d * d
    return math.sqrt(total / len(values))


def is_risk_feature(name: str) -> bool:
    """``<merchant|device|user>_<events|frauds|fraud_share>_<days>d`` (see :mod:`operators.entity_risk`)."""
    return _RISK_NAME.fullmatch(name) is not None


def _plain_column(name: str) -> str:
    """The ``Features`` field a plain matrix column reads (``device_novelty``: ``device_known``)."""
    return "device_known" if name == "device_novelty" else name


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 and math.isfinite(num) else math.nan


DERIVED_ATTRIBUTES: dict[str, Callable[[TransactionEvent], float]] = {
    "fare_per_mile": lambda ev: _ratio(
        _number(ev.attributes.get("fare_amount", ev.amount)), _number(ev.attributes.get("trip_distance"))
    ),
    "trip_speed_mph": lambda ev: _ratio(
        60.0 * _number(ev.attributes.get("trip_distance")), _number(ev.attributes.get("duration_minutes"))
    ),
}
"""Domain features computed from ``attributes`` (taxi trips), by column name."""


def attribute_value(event: TransactionEvent, column: str) -> float:
    """Column ``attr:<name>``: a numeric attribute or a derived one (NaN if absent)."""
    name = column.removeprefix("attr:")
    derived = DERIVED_ATTRIBUTES.get(name)
    return derived(event) if derived else _number(event.attributes.get(name))


def feature_matrix(
    rows: Sequence[Features],
    events: Sequence[TransactionEvent] | None = None,
    columns: Sequence[str] = FEATURE_NAMES,
) -> np.ndarray:
    """Stack features into a ``float32`` matrix (NaN = missing; beyond float32's range: ±inf).

    ``columns`` are ``FEATURE_NAMES`` entries or ``attr:<name>`` domain
    attributes of the events (e.g. ``attr:trip_distance``, ``attr:fare_per_mile``).
    """
    if events is None and (attr := next((c for c in columns if c.startswith("attr:")), None)):
        raise ValueError(f"column {attr!r} needs the events")
    with np.errstate(over="ignore"):  # beyond float32's range is ±inf, as the models expect
        return _stack(rows, events, columns)


def _stack(
    rows: Sequence[Features], events: Sequence[TransactionEvent] | None, columns: Sequence[str]
) -> np.ndarray:
    n = len(rows)
    matrix = np.empty((n, len(columns)), dtype=np.float32)
    if n == 0:
        return matrix
    risk = [j for j, name in enumerate(columns) if is_risk_feature(name)]
    plain = [j for j, name in enumerate(columns) if not name.startswith("attr:") and j not in risk]
    if plain:
        # one C call per row reads every field; float64 first, as float() of each value
        # would (None -> NaN, bools -> 0/1), then rounded to float32 like an assignment
        get = attrgetter(*(_plain_column(columns[j]) for j in plain))
        block = np.array([get(f) for f in rows], dtype=np.float64).reshape(n, len(plain))
        for k, j in enumerate(plain):
            if columns[j] == "device_novelty":
                block[:, k] = 1.0 - block[:, k]  # unknown device = 1; NaN stays NaN
        matrix[:, plain] = block
    if risk:
        names = [columns[j] for j in risk]
        matrix[:, risk] = np.array([tuple(map(f.risk.get, names)) for f in rows], dtype=np.float64).reshape(
            n, len(risk)
        )
    for j, name in enumerate(columns):
        if name.startswith("attr:") and events is not None:
            matrix[:, j] = [attribute_value(ev, name) for ev in events]
    return matrix


def featured_matrix(batch: Sequence[Featured], columns: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """:func:`feature_matrix` of a batch of featured events: their features and their events."""
    return feature_matrix([f.features for f in batch], [f.accepted.event for f in batch], columns)
