from operators.features import Featured
from operators.state import StateLimits, UserState
from operators.validation import Accepted

SOURCE_DIGEST: str

def update_profile(state: UserState, acc: Accepted, limits: StateLimits) -> Featured: ...
