"""Map raw anomaly scores to 0-100 by their rank among held-out normal traffic.

``score = 100 * F(raw)``, where ``F`` is the empirical distribution of raw
scores on held-out data (after training), kept as 1,001 quantile knots and
interpolated linearly. Equal knots (ties, common for tree models) collapse to
one point at the middle of their level range. A score of 99 means "more
anomalous than 99% of the held-out traffic"; raw scores below the smallest
knot give 0 and above the largest give 100. The same mapping runs in NumPy and,
for scorers that keep their data on a GPU, in PyTorch (``transform_tensor``).

>>> c = QuantileCalibrator.fit(np.arange(1001, dtype=np.float64))
>>> c.transform(np.array([-5.0, 500.0, 990.0, 5000.0])).tolist()
[0.0, 50.0, 99.0, 100.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["QuantileCalibrator"]

_LEVELS = np.linspace(0.0, 1.0, 1001)


@dataclass(frozen=True)
class QuantileCalibrator:
    knots: np.ndarray
    points: np.ndarray = field(init=False, repr=False)
    levels: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        points, inverse = np.unique(self.knots, return_inverse=True)
        levels = np.bincount(inverse, weights=_LEVELS) / np.bincount(inverse)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "levels", levels)

    @classmethod
    def fit(cls, raw: np.ndarray) -> QuantileCalibrator:
        raw = np.asarray(raw, dtype=np.float64)
        raw = raw[np.isfinite(raw)]
        if len(raw) < 10:
            raise ValueError("need at least 10 held-out scores to calibrate")
        return cls(np.quantile(raw, _LEVELS))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        level = np.interp(raw, self.points, self.levels)
        level = np.where(raw < self.points[0], 0.0, np.where(raw > self.points[-1], 1.0, level))
        return (100.0 * level).astype(np.float32)

    def transform_tensor(self, raw: torch.Tensor) -> torch.Tensor:
        """:meth:`transform` on a tensor, on the tensor's device."""
        points = torch.as_tensor(self.points, dtype=raw.dtype, device=raw.device)
        levels = torch.as_tensor(self.levels, dtype=raw.dtype, device=raw.device)
        if len(points) == 1:
            level = torch.full_like(raw, float(levels[0]))
        else:
            hi = torch.searchsorted(points, raw, right=True).clamp(1, len(points) - 1)
            x0, x1, y0, y1 = points[hi - 1], points[hi], levels[hi - 1], levels[hi]
            level = y0 + ((raw - x0) / (x1 - x0)).clamp(0.0, 1.0) * (y1 - y0)
        level = torch.where(raw < points[0], 0.0, torch.where(raw > points[-1], 1.0, level))
        return 100.0 * level

    def to_json(self) -> dict[str, Any]:
        return {"method": "empirical-quantile", "knots": self.knots.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuantileCalibrator:
        if data.get("method") != "empirical-quantile":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        knots = np.asarray(data["knots"], dtype=np.float64)
        if len(knots) != len(_LEVELS) or np.any(np.diff(knots) < 0) or not np.all(np.isfinite(knots)):
            raise ValueError("calibration knots must be 1001 finite non-decreasing values")
        return cls(knots)
