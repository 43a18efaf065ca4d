"""Shard routing: stable indices (a restart or another process must route a key the same
way, or a user's state would be found in the wrong shard) and parcels in arrival order."""

from __future__ import annotations

from operators.routing import shard_index, split_lists


def test_the_index_of_a_key_never_changes():
    """Pinned values: state snapshots are laid out by these indices."""
    assert [shard_index(k, 64) for k in ("u1", "user-000000", "é", "")] == [54, 25, 62, 0]


def test_items_keep_their_order_within_a_shard_and_keyless_ones_go_under_the_empty_name():
    lists = [[("a", 1), (None, 2)], [("a", 3), ("b", 4), (None, 5)]]
    parts = dict(split_lists(lists, lambda kv: kv[0], ("x", "y", "z"), list))
    assert parts[""] == [(None, 2), (None, 5)]
    a = parts[("x", "y", "z")[shard_index("a", 3)]]
    assert [v for k, v in a if k == "a"] == [1, 3]
