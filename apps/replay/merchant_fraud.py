"""Compromised merchants: the fraud that rules and anomaly models cannot see.

A compromised terminal (a skimmer, a breached shop) makes every card used
there fraudulent for a few weeks, with amounts, times, places and devices that
look perfectly normal. Only labels that come back later (chargebacks) reveal
it, merchant by merchant. This follows scenario 2 of the fraud-detection
handbook (Le Borgne et al.): terminals drawn at random are compromised for 28
days, and their transactions are fraud.

:func:`generate_merchant_fraud` builds a synthetic card workload (tests,
demos), deterministic for a seed.

Labels come back in weekly batches (:func:`label_releases`): every
``every_days`` the frauds at least ``min_age_days`` old are released with
``label_time`` = the release time, as a card network's chargeback cycle does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from operators.labels import Label

__all__ = [
    "MerchantFraudConfig",
    "MerchantFraudWorkload",
    "generate_merchant_fraud",
    "label_releases",
]

DAY = 86_400.0


@dataclass(frozen=True)
class MerchantFraudConfig:
    days: int = 56
    users: int = 500
    merchants: int = 100
    purchases_per_user_day: float = 0.8
    compromised_per_day: float = 0.15
    """Expected newly compromised merchants per day."""
    compromise_days: tuple[int, int] = (14, 28)
    background_fraud: float = 0.002
    """Share of ordinary, isolated frauds (stolen card numbers): labelled, unrelated to merchants."""
    seed: int = 0
    start: datetime = datetime(2025, 3, 3, tzinfo=UTC)


@dataclass
class MerchantFraudWorkload:
    events: list[dict[str, Any]] = field(default_factory=list)
    """In event-time order."""
    frauds: dict[str, str] = field(default_factory=dict)
    """event_id -> scenario (``compromised_merchant`` or ``stolen_card``)."""
    compromised: dict[str, tuple[float, float]] = field(default_factory=dict)
    """merchant_id -> (from, until) epoch seconds."""


def generate_merchant_fraud(config: MerchantFraudConfig = MerchantFraudConfig()) -> MerchantFraudWorkload:
    """Users buy at a few usual merchants; compromised merchants turn those purchases into fraud."""
    rng = random.Random(config.seed)
    start = config.start.timestamp()
    merchants = [f"m-{k:04d}" for k in range(config.merchants)]
    compromised: dict[str, tuple[float, float]] = {}
    for day in range(config.days):
        for _ in range(_poisson(rng, config.compromised_per_day)):
            m = rng.choice(merchants)
            if m not in compromised:
                begin = start + (day + rng.random()) * DAY
                compromised[m] = (begin, begin + rng.uniform(*config.compromise_days) * DAY)
    out = MerchantFraudWorkload(compromised=compromised)
    rows: list[tuple[float, dict[str, Any]]] = []
    for u in range(config.users):
        user = f"card-{u:05d}"
        usual = rng.sample(merchants, 6)
        typical = rng.lognormvariate(3.4, 0.5)
        device = f"{user}-d0"
        n = 0
        for day in range(config.days):
            for _ in range(_poisson(rng, config.purchases_per_user_day)):
                n += 1
                ts = start + day * DAY + rng.uniform(8, 21) * 3600.0
                m = rng.choice(usual)
                eid = f"mf-{config.seed}-{u:05d}-{n:05d}"
                event = {
                    "event_id": eid,
                    "user_id": user,
                    "amount": round(rng.lognormvariate(0, 0.4) * typical, 2),
                    "timestamp": datetime.fromtimestamp(ts, UTC).isoformat(),
                    "merchant_id": m,
                    "merchant_name": f"Shop {m[2:]}",
                    "merchant_category": "retail",
                    "device_id": device,
                }
                window = compromised.get(m)
                if window is not None and window[0] <= ts < window[1]:
                    out.frauds[eid] = "compromised_merchant"
                elif rng.random() < config.background_fraud:
                    out.frauds[eid] = "stolen_card"
                rows.append((ts, event))
    rows.sort(key=lambda r: (r[0], r[1]["event_id"]))
    out.events = [e for _, e in rows]
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def label_releases(
    events: Iterable[dict[str, Any]],
    frauds: dict[str, str],
    every_days: float = 7.0,
    min_age_days: float = 2.0,
    source: str = "chargeback",
) -> list[Label]:
    """Fraud labels released in batches: at each release, every fraud at least
    ``min_age_days`` old and not yet released, with ``label_time`` = the release."""
    times = {e["event_id"]: datetime.fromisoformat(e["timestamp"]).timestamp() for e in events}
    fraud_times = sorted((times[eid], eid) for eid in frauds if eid in times)
    if not fraud_times:
        return []
    first = fraud_times[0][0]
    out = []
    for ts, eid in fraud_times:
        ready = ts + min_age_days * DAY
        k = math.ceil((ready - first) / (every_days * DAY))
        release = first + max(k, 1) * every_days * DAY
        out.append(Label(eid, True, datetime.fromtimestamp(release, UTC), source))
    return sorted(out, key=lambda lab: (lab.label_time, lab.event_id))
