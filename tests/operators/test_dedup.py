"""The id memory: first message wins, bounded by time and count, compact snapshots."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import dedup
from operators.dedup import DedupConfig, SeenEvents
from operators.shards import shard_index

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
    shards = {shard_index(f"user-{i}", SHARDS) for i in range(2000)}
    assert shards == set(range(SHARDS)) and shard_index("u1", SHARDS) == shard_index("u1", SHARDS)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("see"), st.integers(0, 30), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.integers(1, 5), st.just(0)),
        st.tuples(st.just("restart"), st.just(0), st.just(0)),
    ),
    max_size=150,
)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_the_memory_is_an_ordered_dict_bounded_by_window_and_count_across_restarts(ops):
    """Against a plain model (ids in arrival order, forgotten past the window or the cap),
    with restarts from snapshots in between and the arrays cut at every few drops."""
    cfg = DedupConfig(window_s=12.0, max_ids=SHARDS * 6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dedup, "_COMPACT_FROM", 2)
        seen, model, now = SeenEvents(), {}, 0.0
        for op, a, b in ops:
            if op == "tick":
                now += a
            elif op == "restart":
                seen = SeenEvents.restore(seen.snapshot())
            else:
                seen.evict(now, cfg)
                model = {k: v for k, v in model.items() if v[1] >= now - cfg.window_s}
                got = seen.first(f"e{a}", digest(str(b)), now, cfg)
                if f"e{a}" in model:
                    assert got is not None
                    assert got.to_bytes(8, "big", signed=True) == digest(str(model[f"e{a}"][0]))[:8]
                else:
                    assert got is None
                    model[f"e{a}"] = (b, now)
                    while len(model) > cfg.max_per_shard:
                        del model[next(iter(model))]
            assert len(seen) == len(model)
