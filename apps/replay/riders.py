"""Trips become payment events, with riders and devices assigned deterministically.

TLC records carry no rider or card id. Each trip gets a rider from a fixed pool
(``riders`` ids) by hashing ``(seed, trip key)``: the rider index is
``floor(riders * u**2)`` for a uniform ``u`` from the hash, so activity falls off
as ``1/sqrt(rank)``: a few daily riders, a long tail of occasional ones (with
100k riders the busiest rider takes about 0.3% of trips). Each rider has one
device, or two for a third of riders (the second used for one trip in five).
Same seed, same trip → same rider and device, whatever the order or subset.

With ``terminals`` set, each trip is also paid at the card terminal of one of
that many taxis (``merchant_id`` = ``term-NNNNN``, uniform by hash of
``(seed, trip key)``): the entity that merchant risk windows track, and that
:mod:`apps.replay.injection` can compromise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from apps.replay.tlc import Trip

__all__ = ["VENDORS", "RiderModel", "trip_to_event", "unit_hash"]

VENDORS = {1: "Creative Mobile Technologies", 2: "Curb Mobility", 6: "Myle Technologies", 7: "Helix"}
PAYMENT_TYPES = {1: "credit_card", 2: "cash", 3: "no_charge", 4: "dispute", 5: "unknown", 6: "voided"}


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts (stable across runs and machines)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(frozen=True)
class RiderModel:
    seed: int = 0
    riders: int = 100_000
    terminals: int = 0
    """0: no ``merchant_id`` (the vendor name stands for the merchant)."""

    def rider(self, key: str) -> str:
        index = int(self.riders * unit_hash(self.seed, "rider", key) ** 2)
        return f"rider-{index:07d}"

    def device(self, rider: str, key: str) -> str:
        devices = 2 if unit_hash(self.seed, "devices", rider) < 1 / 3 else 1
        second = devices == 2 and unit_hash(self.seed, "device", key) < 0.2
        return f"{rider}-dev{1 if second else 0}"

    def terminal(self, key: str) -> str | None:
        if self.terminals <= 0:
            return None
        return f"term-{int(self.terminals * unit_hash(self.seed, 'terminal', key)):05d}"


def trip_to_event(trip: Trip, riders: RiderModel) -> dict[str, Any]:
    """One trip as a contract event (amount = total, time = dropoff in New York time)."""
    key = f"{trip.source}:{trip.row}"
    rider = riders.rider(key)
    event: dict[str, Any] = {
        "event_id": f"tlc-{trip.source.rsplit('.', 1)[0]}-{trip.row}",
        "user_id": rider,
        "amount": round(trip.total_amount, 2),
        "currency": "USD",
        "timestamp": trip.dropoff.isoformat(),
        "merchant_name": VENDORS.get(trip.vendor_id or 0, f"vendor {trip.vendor_id}"),
        "merchant_category": "taxi",
        "device_id": riders.device(rider, key),
        "attributes": {
            "taxi": trip.taxi,
            "trip_distance": trip.trip_distance,
            "duration_minutes": round(trip.duration_minutes, 3),
            "passenger_count": trip.passenger_count,
            "payment_type": PAYMENT_TYPES.get(trip.payment_type or 0, "unknown"),
            "fare_amount": trip.fare_amount,
            "tip_amount": trip.tip_amount,
            "pickup_zone": trip.pickup_zone,
            "dropoff_zone": trip.dropoff_zone,
        },
    }
    terminal = riders.terminal(key)
    if terminal is not None:
        event["merchant_id"] = terminal
    if trip.latitude is not None and trip.longitude is not None:
        event["location"] = {
            "latitude": round(trip.latitude, 6),
            "longitude": round(trip.longitude, 6),
            "country": "US",
            "city": trip.place or "New York",
        }
    return event
