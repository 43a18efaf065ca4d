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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "CALIBRATIONS",
    "POINTS_PER_DECADE",
    "Calibrator",
    "QuantileCalibrator",
    "TailRarityCalibrator",
    "calibrator_from_json",
    "fit_calibrator",
]

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


_STEPS_PER_DECADE = 10
POINTS_PER_DECADE = 20.0
"""Tail-rarity scale: 20 points per factor of ten in rarity (1 in 10 → 20, 1 in 1,000 → 60,
1 in 100,000 → 100)."""


@dataclass(frozen=True)
class TailRarityCalibrator:
    """Map raw anomaly scores to how rare they are among held-out normal traffic.

    ``score = 20 * log10(1 / p)``, capped at 100, where ``p`` is the share of
    held-out traffic scoring at least ``raw``. Unlike a percentile, this keeps
    a 1-in-100,000 event (100) far above a 1-in-10 one (20). ``knots`` are the
    raw scores at ``p = 10^(-k/10)`` down to the rarest level the held-out data
    can tell (5 rows beyond it); past the last knot the tail is extrapolated as
    exponential, its scale the mean excess over the knot a decade earlier (~50 rows).

    >>> c = TailRarityCalibrator.fit(np.arange(100_000, dtype=np.float64))
    >>> c.transform(np.array([-1.0, 90_000.0, 99_900.0, 10**6])).round().tolist()
    [0.0, 20.0, 60.0, 100.0]
    """

    knots: np.ndarray
    tail_scale: float
    points: np.ndarray = field(init=False, repr=False)
    decades: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        decades = np.arange(len(self.knots), dtype=np.float64) / _STEPS_PER_DECADE
        points, first = np.unique(self.knots, return_index=True)  # ties: the least rare level
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "decades", decades[first])

    @classmethod
    def fit(cls, raw: np.ndarray) -> TailRarityCalibrator:
        raw = np.asarray(raw, dtype=np.float64)
        raw = np.sort(raw[np.isfinite(raw)])
        if len(raw) < 10:
            raise ValueError("need at least 10 held-out scores to calibrate")
        deepest = np.log10(len(raw) / 5.0)
        levels = np.arange(0, int(deepest * _STEPS_PER_DECADE) + 1) / _STEPS_PER_DECADE
        knots = np.quantile(raw, 1.0 - 10.0**-levels)
        knots[0] = raw[0]
        anchor = knots[max(0, len(knots) - 1 - _STEPS_PER_DECADE)]  # ~50 rows: a steadier mean excess
        excess = raw[raw > anchor] - anchor
        scale = float(excess.mean()) if len(excess) else 0.0
        return cls(knots, scale if scale > 0 else float(np.ptp(raw)) / len(raw) or 1e-9)

    def rarity(self, raw: np.ndarray) -> np.ndarray:
        """``log10(1 / p)``: decades of rarity of each raw score (uncapped)."""
        raw = np.asarray(raw, dtype=np.float64)
        inside = np.interp(raw, self.points, self.decades)
        beyond = self.decades[-1] + (raw - self.points[-1]) / (self.tail_scale * np.log(10.0))
        return np.where(raw > self.points[-1], beyond, np.where(raw < self.points[0], 0.0, inside))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return np.minimum(100.0, POINTS_PER_DECADE * self.rarity(raw)).astype(np.float32)

    def transform_tensor(self, raw: torch.Tensor) -> torch.Tensor:
        """:meth:`transform` on a tensor, on the tensor's device."""
        points = torch.as_tensor(self.points, dtype=raw.dtype, device=raw.device)
        decades = torch.as_tensor(self.decades, dtype=raw.dtype, device=raw.device)
        if len(points) == 1:
            inside = torch.zeros_like(raw)
        else:
            hi = torch.searchsorted(points, raw.contiguous(), right=True).clamp(1, len(points) - 1)
            x0, x1, y0, y1 = points[hi - 1], points[hi], decades[hi - 1], decades[hi]
            inside = y0 + ((raw - x0) / (x1 - x0)).clamp(0.0, 1.0) * (y1 - y0)
        beyond = decades[-1] + (raw - points[-1]) / (self.tail_scale * float(np.log(10.0)))
        level = torch.where(raw > points[-1], beyond, torch.where(raw < points[0], 0.0, inside))
        return (POINTS_PER_DECADE * level).clamp(max=100.0)

    def to_json(self) -> dict[str, Any]:
        return {"method": "tail-rarity", "knots": self.knots.tolist(), "tail_scale": self.tail_scale}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TailRarityCalibrator:
        knots = np.asarray(data["knots"], dtype=np.float64)
        scale = float(data["tail_scale"])
        if len(knots) < 1 or np.any(np.diff(knots) < 0) or not np.all(np.isfinite(knots)):
            raise ValueError("calibration knots must be finite non-decreasing values")
        if not scale > 0:
            raise ValueError("calibration tail_scale must be > 0")
        return cls(knots, scale)


Calibrator = QuantileCalibrator | TailRarityCalibrator
CALIBRATIONS: dict[str, Callable[[np.ndarray], Calibrator]] = {
    "percentile": QuantileCalibrator.fit,
    "tail-rarity": TailRarityCalibrator.fit,
}
"""Calibration methods by the name ``fraudstream train --calibration`` takes."""


def fit_calibrator(raw: np.ndarray, method: str = "tail-rarity") -> Calibrator:
    """Fit the named calibration (see :data:`CALIBRATIONS`) on held-out raw scores."""
    if method not in CALIBRATIONS:
        raise ValueError(f"calibration: unknown method {method!r} (choose {', '.join(CALIBRATIONS)})")
    return CALIBRATIONS[method](raw)


def calibrator_from_json(data: dict[str, Any]) -> Calibrator:
    """The calibrator saved with a model (either method)."""
    if data.get("method") == "tail-rarity":
        return TailRarityCalibrator.from_json(data)
    return QuantileCalibrator.from_json(data)
