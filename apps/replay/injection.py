"""Labelled fraud injection into a stream of (taxi) payment events.

Every scenario has its own label and rate: the share of base events that seed
one instance of it, decided by hashing ``(seed, scenario, event_id)``, so the
same seed injects the same frauds into the same trips whatever the order.
Labels are returned beside the events, never inside them.

=================== ===================================================== ==========================
scenario            what is injected                                       rules/models aimed at
=================== ===================================================== ==========================
card_testing        7 charges of 1-3 USD, 20 s apart, 1 minute after a     velocity_check
                    trip, same rider and device
cloned_card         a charge 20-50 minutes after a trip in a city 1,000+   impossible_travel
                    km away, on another device
account_takeover    5-30 minutes after a trip: a new device, 10x the trip  new_device, high_amount
                    amount (at least 600 USD)
fare_manipulation   the trip itself rewritten: 15-40x its fare for the     models (fare per mile,
                    same distance and duration                             trip speed), high_amount
spending_spike      the trip itself rewritten: 8-20x its total             high_amount
night_run           a charge between 02:00 and 04:00 New York time on the  unusual_hours
                    trip's day
blocked_country     a charge 1-3 hours after a trip located in KP, IR or   country_blacklist
                    SY
=================== ===================================================== ==========================

**Compromised terminals** (``compromise_rate`` > 0, events with a
``merchant_id``, e.g. ``replay --terminals``) follow scenario 2 of the
fraud-detection handbook (Le Borgne et al.): time is cut into periods of
``compromise_days`` (with a phase per terminal, so periods do not all start
together) and a terminal is compromised for a whole period with probability
``compromise_rate``, decided by hashing ``(seed, terminal, period)``. Every
trip paid there meanwhile is labelled ``compromised_terminal`` and left
unchanged: amounts, places, devices and times look normal, so only labels
that come back (merchant risk windows, the supervised model) can reveal it.
About ``compromise_rate`` of all trips become such frauds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apps.replay.riders import unit_hash

__all__ = ["COMPROMISED", "DEFAULT_RATES", "SCENARIOS", "InjectionConfig", "compromised", "inject"]

NEW_YORK = ZoneInfo("America/New_York")
SCENARIOS = (
    "card_testing",
    "cloned_card",
    "account_takeover",
    "fare_manipulation",
    "spending_spike",
    "night_run",
    "blocked_country",
)
DEFAULT_RATES = dict.fromkeys(SCENARIOS, 0.002)
COMPROMISED = "compromised_terminal"
DAY = 86_400.0
_FAR = (
    ("Los Angeles", 34.0522, -118.2437),
    ("Miami", 25.7617, -80.1918),
    ("Chicago", 41.8781, -87.6298),
    ("London", 51.5074, -0.1278),
    ("Denver", 39.7392, -104.9903),
)
_BLOCKED = (
    ("Pyongyang", "KP", 39.0392, 125.7625),
    ("Tehran", "IR", 35.6892, 51.3890),
    ("Damascus", "SY", 33.5138, 36.2765),
)
_REWRITES = ("fare_manipulation", "spending_spike")


@dataclass(frozen=True)
class InjectionConfig:
    seed: int = 0
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    compromise_rate: float = 0.0
    """Probability that a terminal is compromised in one period (and the expected share of its trips)."""
    compromise_days: float = 28.0

    def __post_init__(self) -> None:
        if not 0 <= self.compromise_rate <= 1:
            raise ValueError(f"compromise_rate must be within [0, 1], got {self.compromise_rate}")
        if self.compromise_days <= 0:
            raise ValueError(f"compromise_days must be > 0, got {self.compromise_days}")
        unknown = set(self.rates) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
        bad = {k: v for k, v in self.rates.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"rates must be within [0, 1]: {bad}")


def _derived(base: dict[str, Any], suffix: str, ts: datetime, **changes: Any) -> dict[str, Any]:
    ev = copy.deepcopy(base)
    ev["event_id"] = f"{base['event_id']}-{suffix}"
    ev["timestamp"] = ts.isoformat()
    ev.update(changes)
    return ev


def _scenario(name: str, base: dict[str, Any], u: float) -> list[dict[str, Any]]:
    ts = datetime.fromisoformat(base["timestamp"])
    amount = float(base["amount"])
    if name == "card_testing":
        return [
            _derived(base, f"ct{k}", ts + timedelta(seconds=60 + 20 * k), amount=round(1 + 2 * u, 2))
            for k in range(7)
        ]
    if name == "cloned_card":
        city, lat, lon = _FAR[int(u * len(_FAR))]
        return [
            _derived(
                base,
                "cc",
                ts + timedelta(minutes=20 + 30 * u),
                location={
                    "latitude": lat,
                    "longitude": lon,
                    "country": "US" if city != "London" else "GB",
                    "city": city,
                },
                device_id=f"{base['user_id']}-clone",
            )
        ]
    if name == "account_takeover":
        return [
            _derived(
                base,
                "ato",
                ts + timedelta(minutes=5 + 25 * u),
                amount=round(max(600.0, 10 * amount), 2),
                device_id=f"{base['user_id']}-ato{int(u * 1000)}",
            )
        ]
    if name == "fare_manipulation":
        ev = copy.deepcopy(base)
        fare = float(ev["attributes"].get("fare_amount") or amount)
        ev["amount"] = round(max(amount, fare * (15 + 25 * u)), 2)
        ev["attributes"]["fare_amount"] = ev["amount"]
        return [ev]
    if name == "spending_spike":
        ev = copy.deepcopy(base)
        ev["amount"] = round(amount * (8 + 12 * u), 2)
        return [ev]
    if name == "night_run":
        local = ts.astimezone(NEW_YORK)
        night = local.replace(hour=2, minute=0, second=0, microsecond=0) + timedelta(minutes=120 * u)
        return [_derived(base, "night", night)]
    city, country, lat, lon = _BLOCKED[int(u * len(_BLOCKED))]
    return [
        _derived(
            base,
            "bc",
            ts + timedelta(hours=1 + 2 * u),
            location={"latitude": lat, "longitude": lon, "country": country, "city": city},
        )
    ]


def compromised(terminal: str, ts: float, config: InjectionConfig) -> bool:
    """Whether ``terminal`` is compromised at epoch second ``ts`` (pure, order-free).

    >>> cfg = InjectionConfig(seed=1, compromise_rate=0.5, compromise_days=28)
    >>> days = [compromised("term-00042", d * DAY, cfg) for d in range(0, 280)]
    >>> 0 < sum(days) < 280
    True
    >>> days == [compromised("term-00042", d * DAY + 60, cfg) for d in range(0, 280)]
    True
    """
    if config.compromise_rate <= 0:
        return False
    phase = unit_hash(config.seed, "phase", terminal) * config.compromise_days
    period = int((ts / DAY + phase) // config.compromise_days)
    return unit_hash(config.seed, "compromise", terminal, period) < config.compromise_rate


def inject(
    events: Iterable[dict[str, Any]], config: InjectionConfig
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Yield ``(event, scenario or None)``: the base events (some rewritten) and injected ones.

    Injected events are yielded right after their base event; their timestamps
    may be earlier or later, so sort by event time before producing.
    """
    for base in events:
        chosen = [
            s for s in SCENARIOS if unit_hash(config.seed, s, base["event_id"]) < config.rates.get(s, 0.0)
        ]
        rewrite = next((s for s in chosen if s in _REWRITES), None)
        if rewrite is None:
            terminal = base.get("merchant_id") if config.compromise_rate > 0 else None
            hit = terminal is not None and compromised(
                terminal, datetime.fromisoformat(base["timestamp"]).timestamp(), config
            )
            yield base, COMPROMISED if hit else None
        else:
            yield _scenario(rewrite, base, unit_hash(config.seed, "u", rewrite, base["event_id"]))[0], rewrite
        for name in chosen:
            if name in _REWRITES:
                continue
            for ev in _scenario(name, base, unit_hash(config.seed, "u", name, base["event_id"])):
                yield ev, name
