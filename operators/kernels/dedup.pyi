from operators.dedup import DedupConfig, SeenEvents
from operators.validation import Accepted, DeadLetter

SOURCE_DIGEST: str

def id_hash(event_id: str) -> int: ...
def admit(
    seen: SeenEvents, batch: list[Accepted], now: float, config: DedupConfig, max_value_bytes: int
) -> tuple[list[Accepted | DeadLetter], int]: ...
