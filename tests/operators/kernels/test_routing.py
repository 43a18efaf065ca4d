"""The compiled routing against :mod:`operators.routing`: the same shard for any key
(zlib's CRC-32 of its UTF-8, lone surrogates included) and the same parcels in order."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.parcels import Parcel
from operators.routing import shard_index, split_lists
from tests.operators.kernels.conftest import compiled

_KEYS = st.text(max_size=40) | st.text(st.characters(codec="ascii"), max_size=40)


@settings(max_examples=400, deadline=None)
@given(key=_KEYS | st.just("\ud800x"), shards=st.integers(1, 1000))
def test_any_key_goes_to_the_reference_shard(key, shards):
    kernel = compiled("routing")
    got = kernel.shard_index(key, shards)
    assert got == shard_index(key, shards) == zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


@settings(max_examples=200, deadline=None)
@given(
    lists=st.lists(st.lists(st.none() | _KEYS, max_size=30), max_size=6),
    shards=st.integers(1, 70),
)
def test_any_lists_split_into_the_reference_parcels(lists, shards):
    kernel = compiled("routing")
    names = tuple(f"s{i}" for i in range(shards))
    got = kernel.split_lists(lists, lambda k: k, names, Parcel)
    want = split_lists(lists, lambda k: k, names, Parcel)
    assert got == want
    assert all(type(part) is Parcel for _, part in got)
    assert sum(len(part) for _, part in got) == sum(map(len, lists))


def test_a_shard_count_of_zero_fails_as_the_reference_does():
    kernel = compiled("routing")
    for fn in (kernel.shard_index, shard_index):
        try:
            fn("u1", 0)
        except ZeroDivisionError:
            continue
        raise AssertionError("no error")
