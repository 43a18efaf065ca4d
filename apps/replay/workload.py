"""A generated transaction workload with injected fraud patterns, one per rule.

Deterministic for a seed. Normal users shop in their home city during local
daytime, on one or two devices, with log-normal amounts and at least 20
minutes between purchases. A share of users also carry one injected pattern:

============== ======================================================== =====================
scenario       what happens                                             expected rules
============== ======================================================== =====================
card_testing   8 small charges within 4 minutes                         velocity_check
spending_spike one charge of 10x the user's usual amount                high_amount
cloned_card    a charge 5,000+ km away 20-40 minutes after a home one   impossible_travel
night_owl      a charge at 02:00-04:00 local time                       unusual_hours
takeover       new device, 20x amount, at 03:00 local                   new_device, high_amount, unusual_hours
blocked_country a charge located in KP, IR or SY                        country_blacklist
malformed      invalid payloads (bad JSON, types, ranges, currency)     (dead-letter topic)
============== ======================================================== =====================
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apps.replay.tlc import Trip

__all__ = ["CITIES", "SCENARIO_RULES", "Workload", "generate", "generate_trips"]


CITIES: tuple[tuple[str, str, float, float, float], ...] = (
    ("New York", "US", 40.7128, -74.0060, -5),
    ("Chicago", "US", 41.8781, -87.6298, -6),
    ("Toronto", "CA", 43.6532, -79.3832, -5),
    ("London", "GB", 51.5074, -0.1278, 0),
    ("Paris", "FR", 48.8566, 2.3522, 1),
    ("Berlin", "DE", 52.5200, 13.4050, 1),
    ("Tokyo", "JP", 35.6762, 139.6503, 9),
    ("Sydney", "AU", -33.8688, 151.2093, 10),
    ("Sao Paulo", "BR", -23.5505, -46.6333, -3),
    ("Mumbai", "IN", 19.0760, 72.8777, 5.5),
)
_BLOCKED = (
    ("Pyongyang", "KP", 39.0392, 125.7625, 9),
    ("Tehran", "IR", 35.6892, 51.3890, 3.5),
    ("Damascus", "SY", 33.5138, 36.2765, 3),
)
_MERCHANTS = (
    ("grocery", "FreshMart"),
    ("restaurant", "Luigi's"),
    ("transport", "MetroCab"),
    ("electronics", "Volt Store"),
    ("fuel", "GasGo"),
    ("pharmacy", "CarePlus"),
    ("travel", "SkyFly"),
    ("online", "ShopNow"),
)

SCENARIO_RULES: dict[str, frozenset[str]] = {
    "card_testing": frozenset({"velocity_check"}),
    "spending_spike": frozenset({"high_amount"}),
    "cloned_card": frozenset({"impossible_travel"}),
    "night_owl": frozenset({"unusual_hours"}),
    "takeover": frozenset({"new_device", "high_amount", "unusual_hours"}),
    "blocked_country": frozenset({"country_blacklist"}),
}
"""Rules each injected scenario is built to trigger."""

_MALFORMED = (
    b"{not json",
    b'{"event_id": "bad-1", "user_id": "u", "amount": "12", "timestamp": "2025-06-02T10:00:00Z"}',
    b'{"event_id": "bad-2", "user_id": "u", "amount": -5, "timestamp": "2025-06-02T10:00:00Z"}',
    b'{"event_id": "bad-3", "user_id": "u", "amount": 5, "timestamp": "2025-06-02T10:00:00"}',
    b'{"event_id": "bad-4", "user_id": "u", "amount": 5, "currency": "XYZ",'
    b' "timestamp": "2025-06-02T10:00:00Z"}',
    b'{"event_id": "bad-5", "user_id": "u", "amount": 5, "timestamp": "2025-06-02T10:00:00Z",'
    b' "location": {"latitude": 123.0, "longitude": 0}}',
    b'{"user_id": "u", "amount": 5, "timestamp": "2025-06-02T10:00:00Z"}',
    b"\xff\xfe\x00binary",
)


@dataclass
class Workload:
    """Messages to produce (in event-time order) and what was injected where."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    """event_id -> scenario, for injected events only."""
    malformed: int = 0

    @property
    def valid(self) -> int:
        return len(self.messages) - self.malformed


@dataclass
class _User:
    user_id: str
    city: tuple[str, str, float, float, float]
    devices: list[str]
    typical: float
    t: datetime


def _event(
    rng: random.Random,
    user: _User,
    ts: datetime,
    amount: float,
    *,
    city: tuple[str, str, float, float, float] | None = None,
    device: str | None = None,
    event_id: str,
) -> dict[str, object]:
    name, country, lat, lon, offset = city or user.city
    category, merchant = rng.choice(_MERCHANTS)
    local = ts.astimezone(timezone(timedelta(hours=offset)))
    return {
        "event_id": event_id,
        "user_id": user.user_id,
        "amount": round(amount, 2),
        "currency": "USD",
        "timestamp": local.isoformat(),
        "merchant_name": merchant,
        "merchant_category": category,
        "location": {
            "latitude": round(lat + rng.uniform(-0.05, 0.05), 5),
            "longitude": round(lon + rng.uniform(-0.05, 0.05), 5),
            "country": country,
            "city": name,
        },
        "device_id": device or rng.choice(user.devices),
        "ip_address": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
    }


def _daytime(rng: random.Random, user: _User, day: datetime) -> datetime:
    """A local time between 08:00 and 21:00 for the user's city, as UTC."""
    offset = user.city[4]
    local_hour = rng.uniform(8, 21)
    return day + timedelta(hours=local_hour - offset)


def generate(
    events: int = 20_000,
    users: int = 2_000,
    fraud_share: float = 0.05,
    malformed: int = 40,
    seed: int = 7,
    start: datetime = datetime(2025, 6, 2, tzinfo=UTC),
) -> Workload:
    """About ``events`` valid events from ``users`` users; every ``1/fraud_share``-th user
    carries one injected scenario, the scenarios taken in turn."""
    rng = random.Random(seed)
    people = [
        _User(
            f"user-{i:06d}",
            rng.choice(CITIES),
            [f"dev-{i:06d}-{d}" for d in range(rng.choice((1, 1, 2)))],
            rng.lognormvariate(3.3, 0.5),
            start,
        )
        for i in range(users)
    ]
    out: list[tuple[datetime, str, dict[str, object]]] = []
    labels: dict[str, str] = {}
    per_user = max(1, events // users)
    seq = 0

    def add(ts: datetime, user: _User, amount: float, scenario: str | None = None, **kw: object) -> None:
        nonlocal seq
        seq += 1
        eid = f"evt-{seed}-{seq:08d}"
        out.append((ts, user.user_id, _event(rng, user, ts, amount, event_id=eid, **kw)))  # type: ignore[arg-type]
        if scenario:
            labels[eid] = scenario

    scenarios = list(SCENARIO_RULES)
    injected = 0
    stride = max(1, round(1 / fraud_share)) if fraud_share > 0 else 0
    for idx, user in enumerate(people):
        # Normal history: distinct days so purchases are >= 20 minutes apart.
        injects = stride > 0 and idx % stride == stride - 1
        # Injected users get enough history for the history-based rules to apply.
        n = max(4 if injects else 1, int(rng.gauss(per_user, per_user / 4)))
        times = sorted(
            _daytime(rng, user, start + timedelta(days=d % 14))
            + timedelta(minutes=rng.choice((0, 25, 50)) * (d // 14))
            for d in range(n)
        )
        for ts in times:
            add(ts, user, rng.lognormvariate(0, 0.35) * user.typical)
        last = times[-1]
        if not injects:
            continue
        scenario = scenarios[injected % len(scenarios)]
        injected += 1
        base = last + timedelta(hours=2)
        if scenario == "card_testing":
            for k in range(8):
                add(
                    base + timedelta(seconds=30 * k),
                    user,
                    rng.uniform(1, 5),
                    "card_testing" if k >= 5 else None,
                )
        elif scenario == "spending_spike":
            add(base, user, user.typical * 10, "spending_spike")
        elif scenario == "cloned_card":
            far = max(CITIES, key=lambda c: abs(c[3] - user.city[3]) + abs(c[2] - user.city[2]))
            add(base, user, user.typical)
            add(base + timedelta(minutes=rng.uniform(20, 40)), user, user.typical, "cloned_card", city=far)
        elif scenario in ("night_owl", "takeover"):
            day = (base + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            night = day + timedelta(hours=rng.uniform(2, 4) if scenario == "night_owl" else 3)
            night -= timedelta(hours=user.city[4])
            if scenario == "night_owl":
                add(night, user, user.typical, "night_owl")
            else:
                add(night, user, max(user.typical * 20, 1500.0), "takeover", device=f"dev-new-{idx}")
        else:
            add(base, user, user.typical, "blocked_country", city=rng.choice(_BLOCKED))
    out.sort(key=lambda item: item[0])
    messages = [(uid.encode(), json.dumps(ev).encode()) for _, uid, ev in out]
    for k in range(malformed):
        pos = rng.randrange(len(messages) + 1)
        messages.insert(pos, (b"malformed", _MALFORMED[k % len(_MALFORMED)]))
    return Workload(messages, labels, malformed)


def generate_trips(
    count: int, seed: int = 0, start: datetime = datetime(2025, 6, 2, tzinfo=UTC)
) -> list[Trip]:
    """TLC-shaped yellow-taxi trips inside New York, for demos and tests without TLC files.

    Fares follow the standard meter (2.50 + 2.50/mile + 0.50/minute, 20% tips on
    cards); pickups are spread over one week, dropoffs within Manhattan-ish bounds.
    """
    from apps.replay.tlc import NEW_YORK, Trip

    rng = random.Random(seed)
    trips = []
    for row in range(1, count + 1):
        pickup = (start + timedelta(seconds=rng.uniform(0, 7 * 86_400))).astimezone(NEW_YORK)
        miles = round(max(0.1, rng.lognormvariate(0.6, 0.7)), 2)
        minutes = max(1.0, miles * rng.uniform(2.5, 6.0))
        fare = round(2.5 + 2.5 * miles + 0.5 * minutes, 2)
        card = rng.random() < 0.7
        tip = round(fare * 0.2, 2) if card else 0.0
        trips.append(
            Trip(
                source=f"synthetic-{seed}",
                row=row,
                taxi="yellow",
                vendor_id=rng.choice((1, 2)),
                pickup=pickup,
                dropoff=pickup + timedelta(minutes=minutes),
                passenger_count=rng.choice((1, 1, 1, 2, 3)),
                trip_distance=miles,
                fare_amount=fare,
                tip_amount=tip,
                total_amount=round(fare + tip + 0.8, 2),
                payment_type=1 if card else 2,
                pickup_zone=None,
                dropoff_zone=None,
                latitude=round(rng.uniform(40.70, 40.80), 6),
                longitude=round(rng.uniform(-74.02, -73.93), 6),
                place="New York",
            )
        )
    return trips
