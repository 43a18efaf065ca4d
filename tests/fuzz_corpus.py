"""Hostile payloads: malformed, truncated, huge, wrongly typed, wrongly encoded and
adversarial events, mixed with valid ones. Used by the in-process hypothesis test
and by the real-job fuzz test (deterministic from a seed)."""

from __future__ import annotations

import json
import random
from typing import Any

ADVERSARIAL_STRINGS = [
    "'); DROP TABLE scored_events;--",
    '" OR 1=1 --',
    "\x07\x1b[31mred\x1b[0m",
    "\t\r\n",
    "\\",
    "\\N",
    "ᚠᛇᚻ᛫ᛒᛦᚦ",
    "💳💸",
    "\u202eevil",
    "A" * 600,
    "",
    " ",
    "null",
    "<script>alert(1)</script>",
    "%s%s%n",
]
TIMESTAMPS = [
    "2025-06-02T12:00:00Z",
    "2025-06-02T12:00:00+14:00",
    "2025-06-02T12:00:00-12:00",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "2025-06-02T12:00:00",
    "2025-13-45T25:61:00Z",
    "yesterday",
    "1717329600",
]


def valid_event(rng: random.Random, n: int) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": f"fz-{n}",
        "user_id": f"fu-{rng.randrange(40)}",
        "amount": round(rng.uniform(0, 5000), 2),
        "timestamp": f"2025-06-02T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
    }
    if rng.random() < 0.7:
        ev["location"] = {
            "latitude": rng.uniform(-90, 90),
            "longitude": rng.uniform(-180, 180),
            "country": rng.choice(["US", "GB", "KP", "FR"]),
            "city": rng.choice(ADVERSARIAL_STRINGS),
        }
    if rng.random() < 0.5:
        ev["merchant_name"] = rng.choice(ADVERSARIAL_STRINGS)[:512]
    if rng.random() < 0.5:
        ev["device_id"] = rng.choice(ADVERSARIAL_STRINGS)[:512]
    if rng.random() < 0.3:
        ev["attributes"] = {rng.choice(["a", "b", "ß", "k" * 64]): rng.choice([1, 2.5, "x", True, None])}
    return ev


def mutate(rng: random.Random, ev: dict[str, Any]) -> bytes:
    kind = rng.randrange(14)
    raw = json.dumps(ev).encode()
    if kind == 0:
        return raw[: rng.randrange(len(raw))]  # truncated
    if kind == 1:
        return raw.replace(b'"amount": ', b'"amount": NaN, "x": ', 1)  # NaN token
    if kind == 2:
        ev["amount"] = rng.choice(["12", None, [], {}, True, -1, 1e20, "Infinity"])
    elif kind == 3:
        ev["timestamp"] = rng.choice(TIMESTAMPS[3:])
    elif kind == 4:
        ev["event_id"] = rng.choice([None, 5, "", "x" * 300, "a\x00b"])
    elif kind == 5:
        return raw[:10] + bytes([rng.randrange(128, 256)]) + raw[10:]  # invalid UTF-8
    elif kind == 6:
        return raw + b" " * 70_000  # oversized
    elif kind == 7:
        ev["location"] = {"latitude": rng.choice([91, -91, "N", None]), "longitude": 0}
    elif kind == 8:
        ev["currency"] = rng.choice(["usd", "XYZ", "", "US", 3])
    elif kind == 9:
        return json.dumps([ev]).encode()
    elif kind == 10:
        ev["attributes"] = {f"k{i}": i for i in range(50)}
    elif kind == 11:
        return b"\xef\xbb\xbf" + raw  # BOM
    elif kind == 12:
        ev["merchant_name"] = "nul\x00byte"
    else:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # noise
    return json.dumps(ev).encode()


def corpus(seed: int, n: int, hostile_share: float = 0.5) -> list[tuple[bytes | None, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n):
        ev = valid_event(rng, i)
        payload = mutate(rng, ev) if rng.random() < hostile_share else json.dumps(ev).encode()
        out.append((rng.choice([None, b"k", str(ev.get("user_id")).encode()]), payload))
    return out
