"""Map raw anomaly scores to 0-100 by their rank among held-out normal traffic.

``score = 100 * F(raw)``, where ``F`` is the empirical distribution of raw
scores on held-out data (after training), kept as 1,001 quantile knots and
interpolated linearly. A score of 99 means "more anomalous than 99% of the
held-out traffic"; raw scores beyond the largest held-out value give 100.

>>> c = QuantileCalibrator.fit(np.arange(1001, dtype=np.float64))
>>> c.transform(np.array([-5.0, 500.0, 990.0, 5000.0])).tolist()
[0.0, 50.0, 99.0, 100.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["QuantileCalibrator"]

_LEVELS = np.linspace(0.0, 1.0, 1001)


@dataclass(frozen=True)
class QuantileCalibrator:
    knots: np.ndarray

    @classmethod
    def fit(cls, raw: np.ndarray) -> QuantileCalibrator:
        raw = np.asarray(raw, dtype=np.float64)
        raw = raw[np.isfinite(raw)]
        if len(raw) < 10:
            raise ValueError("need at least 10 held-out scores to calibrate")
        return cls(np.quantile(raw, _LEVELS))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        knots = self.knots
        # Ties (flat stretches) map to the middle of their level range.
        right = np.interp(raw, knots, _LEVELS, left=0.0, right=1.0)
        left = (
            1.0
            - np.interp(-np.asarray(raw, dtype=np.float64), -knots[::-1], _LEVELS, left=0.0, right=1.0)[()]
        )
        return np.clip(50.0 * (right + left), 0.0, 100.0).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"method": "empirical-quantile", "knots": self.knots.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuantileCalibrator:
        if data.get("method") != "empirical-quantile":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        knots = np.asarray(data["knots"], dtype=np.float64)
        if len(knots) != len(_LEVELS) or np.any(np.diff(knots) < 0):
            raise ValueError("calibration knots must be 1001 non-decreasing values")
        return cls(knots)
