from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

SOURCE_DIGEST: str

def shard_index(key: str, shards: int) -> int: ...
def split_lists(
    lists: Sequence[Sequence[T]],
    key_of: Callable[[T], str | None],
    shards: Sequence[str],
    parcel: Callable[[], list[T]],
) -> list[tuple[str, list[T]]]: ...
