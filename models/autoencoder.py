"""A PyTorch autoencoder scored by reconstruction error, calibrated to 0-100.

Trained on (mostly normal) traffic; an event the network cannot reconstruct
well is unusual. The reconstruction is bounded to the **envelope** of normal
traffic: per feature, the central ``envelope`` share of the training data (by
default the 2nd to 98th percentile, in the standardised space). A network
extrapolates: an event that is extreme in several correlated features at once
(a large amount, a large day's spend, a large amount for this user) is
reconstructed almost perfectly, so an unbounded reconstruction error ranks such
fraud no better than chance. Bounded, the error counts how far an event lies
outside normal traffic as well as how badly its shape inside it fits
(docs/models.md has the measurements). ``envelope=0`` turns the bound off.

Inference runs batched under ``torch.inference_mode()`` on
CUDA when available (``device="auto"``) and on the CPU otherwise. A CUDA scorer
loaded with ``gpu_min_rows`` scores smaller batches on a CPU copy of the network:
a call costs the GPU a fixed few hundred microseconds (several milliseconds when
several processes share it, each waiting for the others' time slices), the CPU
0.1 ms for 163 rows of this small network. Weights are
saved as a ``state_dict`` and loaded with ``weights_only=True`` (no pickle
code execution).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from models.calibration import Calibrator, calibrator_from_json, fit_calibrator
from models.preprocess import Preprocessor

__all__ = ["AutoencoderScorer", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA if available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def _network(n_features: int, hidden: tuple[int, ...]) -> nn.Sequential:
    sizes = [n_features, *hidden]
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    back = sizes[::-1]
    for i, (a, b) in enumerate(pairwise(back)):
        layers.append(nn.Linear(a, b))
        if i < len(back) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class AutoencoderScorer:
    """Reconstruction-error anomaly scores (0-100)."""

    name = "autoencoder"

    def __init__(
        self,
        hidden: tuple[int, ...] = (32, 16, 6),
        epochs: int = 40,
        batch_size: int = 256,
        lr: float = 2e-3,
        holdout: float = 0.2,
        seed: int = 0,
        device: str = "auto",
        on_epoch: Callable[[int, float], None] | None = None,
        calibration: str = "tail-rarity",
        envelope: float = 0.96,
    ) -> None:
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError("hidden must be a non-empty tuple of positive layer sizes")
        if not 0.0 <= envelope < 1.0:
            raise ValueError("envelope must be in [0, 1): the central share of the training data")
        self.params: dict[str, Any] = {
            "hidden": list(hidden),
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "holdout": holdout,
            "seed": seed,
            "calibration": calibration,
            "envelope": envelope,
        }
        self.device = resolve_device(device)
        self.pre: Preprocessor | None = None
        self.bounds: np.ndarray | None = None
        """(2, n_features) lowest and highest reconstruction, standardised; None: unbounded."""
        self.net: nn.Sequential | None = None
        self.calibrator: Calibrator | None = None
        self.history: list[float] = []
        self.on_epoch = on_epoch
        self.gpu_min_rows = 0
        """Batches of fewer rows score on a CPU copy of the network (with a CUDA device)."""
        self._cpu_net: nn.Sequential | None = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> Self:
        """Learn normal traffic from ``x``; labels ``y`` are not used."""
        seed = int(self.params["seed"])
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        cut = int(len(x) * (1 - self.params["holdout"]))
        train, held = x[order[:cut]], x[order[cut:]]
        self.pre = Preprocessor.fit(train)
        torch.manual_seed(seed)
        net = _network(x.shape[1], tuple(self.params["hidden"])).to(self.device)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.params["lr"]))
        data = torch.from_numpy(self.pre.transform(train)).to(self.device)
        val = torch.from_numpy(self.pre.transform(held)).to(self.device)
        gen = torch.Generator().manual_seed(seed)
        best, best_state = float("inf"), None
        for _ in range(int(self.params["epochs"])):
            net.train()
            for idx in torch.randperm(len(data), generator=gen).split(int(self.params["batch_size"])):
                batch = data[idx.to(self.device)]
                loss = ((net(batch) - batch) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.inference_mode():
                val_loss = float(((net(val) - val) ** 2).mean())
            self.history.append(val_loss)
            if self.on_epoch is not None:
                self.on_epoch(len(self.history), val_loss)
            if val_loss < best:
                best, best_state = val_loss, {k: v.clone() for k, v in net.state_dict().items()}
        assert best_state is not None
        net.load_state_dict(best_state)
        self.net = net.eval()
        share = float(self.params["envelope"])
        if share > 0:
            z = self.pre.transform(train)
            self.bounds = np.quantile(z, [(1 - share) / 2, (1 + share) / 2], axis=0).astype(np.float32)
        self.calibrator = fit_calibrator(self.raw(held), str(self.params["calibration"]))
        return self

    def _error(self, x: np.ndarray) -> torch.Tensor:
        """Reconstruction error per row, computed on one device end to end: the
        scorer's, or the CPU for a batch under ``gpu_min_rows`` rows."""
        assert self.pre is not None and self.net is not None, "fit or load first"
        net, device = self.net, self.device
        if len(x) < self.gpu_min_rows and device.type != "cpu":
            if self._cpu_net is None:
                self._cpu_net = copy.deepcopy(self.net).cpu().eval()
            net, device = self._cpu_net, torch.device("cpu")
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device, non_blocking=True)
        z = self.pre.transform_tensor(batch)
        out = net(z)
        if self.bounds is not None:
            lo, hi = self._bounds(out.device)
            out = torch.clamp(out, lo, hi)
        return ((out - z) ** 2).mean(dim=1)

    def _bounds(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]]
        cache = self.__dict__.setdefault("_bounds_cache", {})
        if device not in cache:
            assert self.bounds is not None
            b = torch.as_tensor(self.bounds, dtype=torch.float32, device=device)
            cache[device] = (b[0], b[1])
        return cache[device]

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Mean squared error of the (bounded) reconstruction per row, standardised space."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float64)
        with torch.inference_mode():
            return self._error(x).double().cpu().numpy()

    def score_batch(self, x: np.ndarray) -> np.ndarray:
        """Calibrated scores; preprocessing, network and calibration all run on the device."""
        assert self.calibrator is not None, "fit or load first"
        if len(x) == 0:
            return np.empty(0, dtype=np.float32)
        with torch.inference_mode():
            scores = self.calibrator.transform_tensor(self._error(x).double())
            return scores.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "device": str(self.device),
            "best_val_loss": min(self.history) if self.history else None,
        }

    def save(self, path: Path) -> None:
        assert self.pre is not None and self.net is not None and self.calibrator is not None
        path.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, path / "autoencoder.pt")
        (path / "autoencoder.json").write_text(
            json.dumps(
                {
                    "params": self.params,
                    "n_features": len(self.pre.medians),
                    "preprocess": self.pre.to_json(),
                    "bounds": None if self.bounds is None else self.bounds.tolist(),
                    "calibration": self.calibrator.to_json(),
                }
            )
        )

    @classmethod
    def load(cls, path: Path, device: str = "auto", gpu_min_rows: int = 0) -> Self:
        """The scorer saved at ``path``, on ``device``; on a GPU, batches under
        ``gpu_min_rows`` rows score on the CPU (see the module's notes)."""
        meta = json.loads((path / "autoencoder.json").read_text())
        params = dict(meta["params"])
        params["hidden"] = tuple(params["hidden"])
        bounds = meta.get("bounds")
        if bounds is None:  # artifacts from before the envelope have none: unbounded
            params["envelope"] = 0.0
        scorer = cls(**params, device=device)
        scorer.pre = Preprocessor.from_json(meta["preprocess"])
        if bounds is not None:
            scorer.bounds = np.asarray(bounds, dtype=np.float32)
        scorer.calibrator = calibrator_from_json(meta["calibration"])
        state = torch.load(path / "autoencoder.pt", map_location=scorer.device, weights_only=True)
        net = _network(int(meta["n_features"]), params["hidden"])
        net.load_state_dict(state)
        scorer.net = net.to(scorer.device).eval()
        scorer.gpu_min_rows = gpu_min_rows
        return scorer
