from collections.abc import Sequence

import numpy as np

from operators.features import Featured

SOURCE_DIGEST: str

def featured_matrix(batch: Sequence[Featured], columns: Sequence[str]) -> np.ndarray: ...
