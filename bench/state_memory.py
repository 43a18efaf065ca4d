"""Bytes of per-user state, and the plateau the TTL gives.

    python -m bench.state_memory [--users 100000,1000000] [--events-per-user 3]

Runs each user's events (with a location and a device) through the job's own user
shards (state, user risk window, id memory) and measures the Python heap
(tracemalloc) per user: while the user's ids are remembered (``dedup.window_s``),
and idle, after they are forgotten, plus the bytes recovery stores for an idle
user. Memory is bounded by design: ``state.max_events`` recent events and
``state.max_devices`` devices per user, and a user idle for ``state.ttl_s`` is
dropped, so a process holds at most (users active within the TTL) x (bytes per
user). The plateau part streams users through a TTL of ``--ttl-users`` arrivals
and shows the live count and memory flattening. The snapshot part fills
``state.shards`` user shards (state, id memory, user risk window) with
``--snapshot-users`` users and times the first snapshot (every user encoded), then
what an epoch's snapshot costs after an epoch of traffic touched every shard (the
users and windows not touched since the last snapshot are copied as they were
encoded), with its bytes per user, and the restore.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from operators.dedup import SeenEvents
from operators.entity_risk import RiskConfig
from operators.events import Location, TransactionEvent
from operators.features import update_profile
from operators.shards import UserShard, UserShardConfig, shard_index
from operators.state import StateLimits, UserState
from operators.validation import Accepted

T0 = datetime(2025, 6, 2, tzinfo=UTC)


def _event(user: int, k: int) -> Accepted:
    ts = T0 + timedelta(minutes=user % 1440 + 37 * k)
    ev = TransactionEvent(
        f"e{user}-{k}",
        f"user-{user}",
        25.0 + k,
        ts,
        location=Location(40.7, -74.0, "US"),
        device_id=f"d{user % 3}",
    )
    return Accepted(ev, ts.timestamp(), None, ts.timestamp(), f"{user}-{k}".encode().ljust(32, b"."))


def shard_bytes_per_user(users: int, events: int, shards: int = 64) -> dict[str, float]:
    """Heap per user of what the job keeps for ``users`` users of ``events`` events each,
    in ``shards`` user shards: the state, the user's risk window and, while the ids are
    remembered (``dedup.window_s``, an hour), the id memory. ``idle``: once the ids are
    forgotten, what a user costs until ``state.ttl_s``; ``snapshot``: the bytes recovery
    stores for an idle user."""
    config = UserShardConfig(risk=RiskConfig())
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    # The events are made inside the measurement: the ids and strings the state keeps of
    # them (the user id as the key, the device id) count; the rest goes with the batches.
    batches: list[list[Accepted]] = [[] for _ in range(shards)]
    for u in range(users):
        batches[shard_index(f"user-{u}", shards)].extend(_event(u, k) for k in range(events))
    table = [UserShard(snapshots=True) for _ in range(shards)]
    for shard, batch in zip(table, batches, strict=True):
        shard.process(batch, [], 0.0, config)
    del batches
    gc.collect()
    active = tracemalloc.get_traced_memory()[0] - base
    for shard in table:
        shard.seen = SeenEvents()  # the ids expire after dedup.window_s
    gc.collect()
    idle = tracemalloc.get_traced_memory()[0] - base
    snapshot = sum(len(shard.snapshot()) for shard in table)
    gc.collect()
    cold = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "active": active / users,
        "idle": idle / users,
        "cold": cold / users,
        "snapshot": snapshot / users,
    }


def bytes_per_user(users: int, events: int) -> float:
    """What an idle user costs with recovery on: its heap once a snapshot left it encoded
    (``cold``) plus what recovery stores for it."""
    b = shard_bytes_per_user(users, events)
    return b["cold"] + b["snapshot"]


def plateau(arrivals: int, ttl_users: int) -> list[tuple[int, int, float]]:
    """Users arrive one after another; each stays ``ttl_users`` arrivals, then expires."""
    tracemalloc.start()
    states: dict[int, UserState] = {}
    limits, out = StateLimits(), []
    for u in range(arrivals):
        state = states.setdefault(u, UserState())
        update_profile(state, _event(u, 0), limits)
        states.pop(u - ttl_users, None)  # the TTL notification of the oldest user
        if (u + 1) % (arrivals // 8) == 0:
            out.append((u + 1, len(states), tracemalloc.get_traced_memory()[0] / 2**20))
    tracemalloc.stop()
    return out


def snapshots(users: int, events: int, shards: int = 64) -> dict[str, float]:
    """Every shard snapshot once (an epoch in which each shard was touched): seconds and bytes per user."""
    config = UserShardConfig(risk=RiskConfig())
    table = [UserShard(snapshots=True) for _ in range(shards)]
    batches: list[list[Accepted]] = [[] for _ in range(shards)]
    for u in range(users):
        batches[shard_index(f"user-{u}", shards)].extend(_event(u, k) for k in range(events))
    for shard, batch in zip(table, batches, strict=True):
        shard.process(batch, [], 0.0, config)
    began = time.perf_counter()
    blobs = [shard.snapshot() for shard in table]
    first = time.perf_counter() - began
    # an epoch of traffic (EPOCH_EVENTS, one event each for as many users) touches every shard
    touched: list[list[Accepted]] = [[] for _ in range(shards)]
    for u in range(0, users, max(1, users // EPOCH_EVENTS)):
        touched[shard_index(f"user-{u}", shards)].append(_event(u, events))
    for shard, batch in zip(table, touched, strict=True):
        shard.process(batch, [], 1.0, config)
    began = time.perf_counter()
    blobs = [shard.snapshot() for shard in table]
    took = time.perf_counter() - began
    began = time.perf_counter()
    for blob in blobs:
        UserShard.restore(blob)
    restored = time.perf_counter() - began
    size = sum(len(b) for b in blobs)
    return {
        "first_snapshot_s": first,
        "snapshot_s": took,
        "restore_s": restored,
        "snapshot_bytes_per_user": size / users,
    }


EPOCH_EVENTS = 65_000
"""Events of one recovery epoch in :func:`snapshots`: 5 s (``recovery.snapshot_interval_s``)
at 13,000 events/s, a job process's rate on the 2-core machine."""


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", default="100000,1000000")
    parser.add_argument("--events-per-user", type=int, default=3)
    parser.add_argument("--ttl-users", type=int, default=100_000)
    parser.add_argument("--snapshot-users", default="100000,1000000")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"events_per_user": args.events_per_user, "bytes_per_user": {}}
    for n in (int(x) for x in args.users.split(",")):
        b = shard_bytes_per_user(n, args.events_per_user)
        result["bytes_per_user"][n] = b  # type: ignore[index]
        print(
            f"{n:>9,} users x {args.events_per_user} events, idle: with recovery {b['cold']:,.0f} "
            f"bytes/user on the heap (encoded since the last snapshot) + {b['snapshot']:,.0f} in "
            f"recovery = {b['cold'] + b['snapshot']:,.0f} ({(b['cold'] + b['snapshot']) * n / 2**20:,.0f} "
            f"MiB); without recovery {b['idle']:,.0f} on the heap; "
            f"{b['active']:,.0f} on the heap while its ids are remembered",
            flush=True,
        )
    arrivals = args.ttl_users * 8
    result["plateau"] = plateau(arrivals, args.ttl_users)
    for seen, live, mib in result["plateau"]:  # type: ignore[attr-defined]
        print(f"after {seen:>9,} users: {live:>8,} live states, {mib:7.1f} MiB")
    result["snapshots"] = {}
    for n in (int(x) for x in args.snapshot_users.split(",")):
        snap = snapshots(n, args.events_per_user)
        result["snapshots"][n] = snap  # type: ignore[index]
        print(
            f"{n:>9,} users in 64 shards: first snapshot of every shard "
            f"{snap['first_snapshot_s'] * 1000:,.0f} ms; after an epoch of {EPOCH_EVENTS:,} events "
            f"{snap['snapshot_s'] * 1000:,.0f} ms, {snap['snapshot_bytes_per_user']:,.0f} bytes/user; "
            f"restore {snap['restore_s'] * 1000:,.0f} ms",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
