"""Cost per event of the user-state features (``update_profile``: features, then the push).

    python -m bench features [--events 200000] [--users 2000] [--repeats 5]

Events from the generated workload, decoded once, are run through
:func:`operators.features.update_profile` in event-time order against fresh
states: the per-event Python the user shard step runs for every event. Reported
as the median of the repeats in microseconds per event; compare two revisions
by running this in each (the machine is noisy: same machine, same run).
"""

from __future__ import annotations

import argparse
import statistics
import time

from apps.replay.workload import generate
from operators.events import TransactionEvent, decode_event
from operators.features import update_profile
from operators.state import StateLimits, UserState
from operators.validation import Accepted

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    events = [
        ev
        for _, raw in generate(args.events, args.users, malformed=0).messages
        if isinstance(ev := decode_event(raw), TransactionEvent)
    ]
    accepted = [Accepted(ev, ts := ev.timestamp.timestamp(), None, ts) for ev in events]
    limits = StateLimits()
    runs = []
    for _ in range(args.repeats):
        states: dict[str, UserState] = {}
        start = time.perf_counter()
        for acc in accepted:
            update_profile(states.setdefault(acc.event.user_id, UserState()), acc, limits)
        runs.append((time.perf_counter() - start) / len(accepted) * 1e6)
    result = {"events": float(len(accepted)), "us_per_event": statistics.median(runs)}
    n = len(accepted)
    print(f"update_profile: {result['us_per_event']:.2f} µs/event (median of {args.repeats}, {n:,} events)")
    return result
