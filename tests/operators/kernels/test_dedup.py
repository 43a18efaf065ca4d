"""The compiled ``admit`` against :func:`operators.dedup.admit`: the same events and dead
letters, in order, and the same id memory after every batch (ids, digest prefixes, times,
head), for re-sent and re-used ids, ids forgotten by the window and by the cap, and ids
that are not plain UTF-8."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.dedup import DedupConfig, SeenEvents, _id_hash, admit
from operators.events import TransactionEvent
from operators.validation import Accepted
from tests.operators.kernels.conftest import compiled

T0 = datetime(2025, 6, 2, tzinfo=UTC)


def _acc(event_id: str, payload: int, received_at: float) -> Accepted:
    ev = TransactionEvent(event_id, "u", 5.0, T0)
    digest = hashlib.sha256(str(payload).encode()).digest()
    return Accepted(ev, T0.timestamp(), None, received_at, digest, None, ("t", 0, payload))


def _memory(seen: SeenEvents) -> tuple[object, ...]:
    h = seen.head
    return seen.digests, list(seen.ids[h:]), list(seen.prefixes[h:]), list(seen.times[h:])


def test_the_id_hash_is_hashlibs_blake2b_for_every_length():
    kernel = compiled("dedup")
    ids = ["", "e", "evt-7-00003078", "é" * 70, "x" * 127, "x" * 128, "x" * 129, "y" * 300, "\ud800lone"]
    assert [kernel.id_hash(i) for i in ids] == [_id_hash(i) for i in ids]


_batches = st.lists(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]), st.integers(0, 3)), max_size=12),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(_batches, st.integers(1, 5), st.sampled_from([5.0, 30.0]))
def test_batches_give_the_reference_letters_and_memory(batches, cap, window):
    kernel = compiled("dedup")
    config = DedupConfig(window_s=window, max_ids=cap, shards=1)
    mine, ref = SeenEvents(), SeenEvents()
    for step, batch in enumerate(batches):
        now = 10.0 * step
        items = [_acc(f"id-{name}", payload, now + i) for i, (name, payload) in enumerate(batch)]
        got = kernel.admit(mine, items, now, config, 4096)
        want = admit(ref, items, now, config, 4096)
        assert got == want
        assert _memory(mine) == _memory(ref)


def test_a_full_memory_compacts_as_the_reference_does():
    kernel = compiled("dedup")
    config = DedupConfig(window_s=1e9, max_ids=5_000, shards=1)
    mine, ref = SeenEvents(), SeenEvents()
    counts = []
    for step in range(4):
        items = [_acc(f"e{step}-{i}", i, float(step)) for i in range(4_000)] + [_acc("e0-1", 7, float(step))]
        got, dups = kernel.admit(mine, items, float(step), config, 4096)
        assert (got, dups) == admit(ref, items, float(step), config, 4096)
        assert _memory(mine) == _memory(ref) and mine.head == ref.head
        counts.append(dups)
    assert counts == [
        1,
        0,
        1,
        0,
    ]  # e0-1: re-used in its own batch, forgotten at the cap, remembered, forgotten
    assert len(mine) == 5_000
