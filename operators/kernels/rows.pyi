from collections.abc import Sequence

from operators.scoring import ScoredEvent

SOURCE_DIGEST: str
SIGNATURE: bytes
TRAILER: bytes

def event_days(items: Sequence[ScoredEvent]) -> set[int]: ...
def copy_rows(items: Sequence[ScoredEvent], start: int = 0, stop: int = -1) -> bytes: ...
