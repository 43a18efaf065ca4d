import numpy as np

SOURCE_DIGEST: str

def path_lengths(
    x: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    leaf_value: np.ndarray,
    roots: np.ndarray,
    depth: int,
    out: np.ndarray,
) -> None: ...
