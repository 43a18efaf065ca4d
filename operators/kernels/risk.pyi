from operators.scoring import ScoredEvent

SOURCE_DIGEST: str

def risk_commands(
    items: list[tuple[str, ScoredEvent]],
    prefix: bytes,
    ttl: bytes,
    chunk: int,
    levels: dict[str, bytes],
    decisions: dict[str, bytes],
) -> list[tuple[int, bytes]]: ...
