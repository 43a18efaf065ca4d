"""The id memory: first message wins, bounded by time and count, compact snapshots."""

from __future__ import annotations

import hashlib

from operators.dedup import DedupConfig, SeenEvents
from operators.shards import shard_of

SHARDS = 64


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def test_first_message_wins_and_later_ones_report_the_first_digest():
    seen, cfg = SeenEvents(), DedupConfig(window_s=60.0, max_ids=SHARDS * 1000)
    assert seen.first("e1", digest("a"), 0.0, cfg) is None
    again = seen.first("e1", digest("b"), 1.0, cfg)
    assert again is not None and again.to_bytes(8, "big", signed=True) == digest("a")[:8]
    assert seen.first("e2", digest("b"), 1.0, cfg) is None and len(seen) == 2


def test_ids_are_forgotten_after_the_window_and_beyond_the_cap():
    cfg = DedupConfig(window_s=10.0, max_ids=SHARDS * 1000)
    seen = SeenEvents()
    for i in range(5):
        seen.first(f"e{i}", digest("x"), float(i), cfg)
    seen.evict(now=13.5, config=cfg)  # e0..e3 are older than 10 s
    assert len(seen) == 1 and seen.first("e4", digest("x"), 14.0, cfg) is not None
    assert seen.first("e0", digest("x"), 14.0, cfg) is None
    capped = SeenEvents()
    small = DedupConfig(window_s=1e9, max_ids=SHARDS * 1000)
    for i in range(small.max_per_shard + 10):
        capped.first(f"c{i}", digest("x"), 0.0, small)
    assert len(capped) == small.max_per_shard
    assert capped.first("c0", digest("x"), 0.0, small) is None  # the oldest went first


def test_snapshot_is_compact_and_restores_the_same_memory():
    cfg = DedupConfig()
    seen = SeenEvents()
    for i in range(1000):
        seen.first(f"event-{i}", digest(str(i)), float(i), cfg)
    data = seen.snapshot()
    assert isinstance(data, bytes) and len(data) < 1000 * 24 + 64
    back = SeenEvents.restore(data)
    assert len(back) == 1000
    assert back.first("event-7", digest("other"), 2000.0, cfg) == seen.first(
        "event-7", digest("x"), 2000.0, cfg
    )
    back.evict(now=cfg.window_s + 500.5, config=cfg)
    assert len(back) == 499


def test_shards_spread_users_and_are_stable():
    shards = {shard_of(f"user-{i}", SHARDS) for i in range(2000)}
    assert len(shards) == SHARDS and shard_of("u1", SHARDS) == shard_of("u1", SHARDS)
