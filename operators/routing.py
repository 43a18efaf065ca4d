"""Which shard an item goes to: the key's CRC-32 modulo the shard count, and a batch's
lists split into one parcel per shard. Pure; compiled in ``operators.kernels.routing``."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["shard_index", "split_lists"]

T = TypeVar("T")


def shard_index(key: str, shards: int) -> int:
    """The shard of ``key``, 0 to ``shards - 1``: stable across processes and restarts.

    >>> shard_index("u1", 64)
    54
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % shards


def split_lists(
    lists: Sequence[Sequence[T]],
    key_of: Callable[[T], str | None],
    shards: Sequence[str],
    parcel: Callable[[], list[T]],
) -> list[tuple[str, list[T]]]:
    """Every item of ``lists`` into one ``parcel()`` per shard name
    (``shards[shard_index(key)]``), in order; items whose key is None go under ``""``.

    >>> split_lists([["u1", "a"], ["u2", None]], lambda k: k, ("x", "y"), list)
    [('x', ['u1', 'u2']), ('y', ['a']), ('', [None])]
    """
    count = len(shards)
    parts: dict[str, list[T]] = {}
    for items in lists:
        for item in items:
            key = key_of(item)
            shard = "" if key is None else shards[shard_index(key, count)]
            part = parts.get(shard)
            if part is None:
                part = parts[shard] = parcel()
            part.append(item)
    return list(parts.items())
