"""Preprocessing shared by every scorer: median imputation, signed log, standardisation.

Heavy-tailed columns (amounts, distances, counts) are compressed with
``sign(x) * log1p(|x|)`` before standardising, so one huge amount does not
flatten everything else. All statistics come from training data and are
saved with the model.

>>> p = Preprocessor.fit(np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]], dtype=np.float32))
>>> missing = p.transform(np.array([[np.nan, np.nan]], dtype=np.float32))
>>> bool((missing == p.transform(np.array([[3.0, 3.0]], dtype=np.float32))).all())
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Preprocessor"]


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class Preprocessor:
    medians: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Preprocessor:
        if x.ndim != 2 or len(x) == 0:
            raise ValueError("need a non-empty 2-D matrix to fit")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: its median is 0 below
            medians = np.nanmedian(x, axis=0)
        medians = np.where(np.isfinite(medians), medians, 0.0)
        logged = _signed_log(np.where(np.isfinite(x), x, medians))
        stds = logged.std(axis=0)
        return cls(medians.astype(np.float64), logged.mean(axis=0), np.where(stds > 1e-9, stds, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """NaN/inf → training median, signed log, standardise; float32 out."""
        if x.ndim != 2 or x.shape[1] != len(self.medians):
            raise ValueError(f"expected {len(self.medians)} columns, got shape {x.shape}")
        filled = np.where(np.isfinite(x), x, self.medians)
        return ((_signed_log(filled) - self.means) / self.stds).astype(np.float32)

    def transform_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`transform` in PyTorch (float32), on ``x``'s device."""
        medians, means, stds = self._tensors(x.device)
        filled = torch.where(torch.isfinite(x), x, medians)
        return (torch.sign(filled) * torch.log1p(filled.abs()) - means) / stds

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        cache: dict[torch.device, tuple[torch.Tensor, ...]] = self.__dict__.setdefault("_device_cache", {})
        if device not in cache:
            cache[device] = tuple(
                torch.as_tensor(a, dtype=torch.float32, device=device)
                for a in (self.medians, self.means, self.stds)
            )
        return cache[device]

    def to_json(self) -> dict[str, Any]:
        return {"medians": self.medians.tolist(), "means": self.means.tolist(), "stds": self.stds.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(*(np.asarray(data[k], dtype=np.float64) for k in ("medians", "means", "stds")))
