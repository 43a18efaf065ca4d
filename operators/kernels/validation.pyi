from operators.events import ValidationLimits
from operators.validation import Accepted, DeadLetter, RawBatch

SOURCE_DIGEST: str

def check_batch(
    batch: RawBatch, limits: ValidationLimits, now: float
) -> tuple[list[Accepted], list[DeadLetter]]: ...
