from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.base import RULES_ONLY
from operators.ensemble import EnsembleConfig
from operators.events import Location, TransactionEvent
from operators.profiles import update_profile
from operators.rules import Blocklists, RulesConfig
from operators.scoring import ScoredEvent, score_batch
from operators.state import StateLimits, UserState
from operators.validation import Accepted

T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)


def scored_events(n: int, users: int = 3, prefix: str = "e") -> list[ScoredEvent]:
    """``n`` scored events over ``users`` users; every 5th is in a blocked country."""
    states = [UserState() for _ in range(users)]
    featured = []
    for i in range(n):
        ts = T0 + timedelta(minutes=i)
        country = "KP" if i % 5 == 4 else "US"
        ev = TransactionEvent(
            f"{prefix}{i}",
            f"user-{i % users}",
            10.0 + i + 0.005,
            ts,
            location=Location(40.7, -74.0, country, "City"),
            device_id="d1",
            merchant_name='O\'Hare "Café"\t\\x',
            attributes={"k": i},
        )
        featured.append(
            update_profile(
                states[i % users],
                Accepted(ev, ts.timestamp(), int(ts.timestamp() * 1000), ts.timestamp()),
                StateLimits(),
            )
        )
    return score_batch(
        featured,
        RULES_ONLY,
        RulesConfig(),
        Blocklists(),
        EnsembleConfig(),
        (T0 + timedelta(hours=1)).timestamp(),
    )
