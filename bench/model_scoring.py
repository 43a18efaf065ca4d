"""Model scoring throughput: one event per call (a per-request scorer's way) vs micro-batches.

    python -m bench.model_scoring [--quick] [--devices cpu,cuda] [--json out.json]

Trains both scorers on a generated workload, then measures events/s at batch
sizes 1, 64, 1024, 8192 and 65536 for the Isolation Forest (our tree-array
scorer and scikit-learn's ``decision_function`` on the same fitted forest) and
the autoencoder on each device. Ratios are taken within this one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import IsolationForest

from apps.replay.workload import generate
from models.autoencoder import AutoencoderScorer
from models.isolation_forest import IsolationForestScorer
from models.training import replay_features
from operators.events import TransactionEvent, decode_event
from operators.features import feature_matrix

SIZES = (1, 64, 1024, 8192, 65536)


def rate(fn: Any, x: np.ndarray, size: int, budget_s: float) -> float:
    """Events/s scoring ``x`` in chunks of ``size`` for about ``budget_s`` seconds (best of 3)."""
    chunks = [x[i : i + size] for i in range(0, len(x) - size + 1, size)] or [x[:size]]
    fn(chunks[0])  # warm-up
    best = 0.0
    for _ in range(3):
        n, began = 0, time.perf_counter()
        while time.perf_counter() - began < budget_s / 3:
            for chunk in chunks:
                fn(chunk)
                n += len(chunk)
                if time.perf_counter() - began >= budget_s / 3:
                    break
        best = max(best, n / (time.perf_counter() - began))
    return best


def network_rate(ae: AutoencoderScorer, x: np.ndarray, size: int, budget_s: float) -> float:
    """Events/s of the network alone on batches already on the device (no host work)."""
    assert ae.pre is not None and ae.net is not None
    net = ae.net
    batches = [
        torch.from_numpy(ae.pre.transform(x[i : i + size])).to(ae.device)
        for i in range(0, len(x) - size + 1, size)
    ][:64]
    sync = torch.cuda.synchronize if ae.device.type == "cuda" else (lambda: None)
    best = 0.0
    with torch.inference_mode():
        ((net(batches[0]) - batches[0]) ** 2).mean(dim=1)
        for _ in range(3):
            n, began = 0, time.perf_counter()
            while time.perf_counter() - began < budget_s / 3:
                for b in batches:
                    ((net(b) - b) ** 2).mean(dim=1)
                    n += len(b)
                sync()
            best = max(best, n / (time.perf_counter() - began))
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small data and short timings (CI smoke)")
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--hidden", default="32,16,6", help="autoencoder layer sizes")
    args = parser.parse_args(argv)
    events = 3000 if args.quick else 20_000
    budget = 0.3 if args.quick else 2.0
    w = generate(events=events, users=events // 10, malformed=0, seed=1)
    decoded = [decode_event(v) for _, v in w.messages]
    features, ordered = replay_features([e for e in decoded if isinstance(e, TransactionEvent)])
    x = feature_matrix(features, ordered)
    pool = np.resize(x, (max(SIZES) * 2, x.shape[1]))

    iso = IsolationForestScorer(seed=0).fit(x)
    sk = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(iso.pre.transform(x))  # type: ignore[union-attr]
    pre = iso.pre
    assert pre is not None
    results: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "rows": {},
    }
    sizes = SIZES[:4] if args.quick else SIZES
    for size in sizes:
        row = {
            "isolation_forest": rate(iso.score_batch, pool, size, budget),
            "sklearn_decision_function": rate(
                lambda c: sk.decision_function(pre.transform(c)), pool, size, budget
            ),
        }
        for device in args.devices.split(","):
            hidden = tuple(int(h) for h in args.hidden.split(","))
            ae = AutoencoderScorer(hidden, epochs=2 if args.quick else 10, seed=0, device=device).fit(x)
            row[f"autoencoder_{device}_network_only"] = network_rate(ae, pool, size, budget)

            def fn(c: np.ndarray, ae: AutoencoderScorer = ae) -> None:
                ae.score_batch(c)
                if ae.device.type == "cuda":
                    torch.cuda.synchronize()

            row[f"autoencoder_{device}"] = rate(fn, pool, size, budget)
        results["rows"][size] = row
        print(f"batch {size:>6}: " + "  ".join(f"{k} {v:>12,.0f}/s" for k, v in row.items()), flush=True)
    first, last = results["rows"][sizes[0]], results["rows"][sizes[-1]]
    results["ratios"] = {
        "isolation_forest_batched_vs_per_event": last["isolation_forest"] / first["isolation_forest"],
        "sklearn_batched_vs_per_event": last["sklearn_decision_function"]
        / first["sklearn_decision_function"],
        "batched_ours_vs_sklearn_per_event": last["isolation_forest"] / first["sklearn_decision_function"],
        "per_event_ours_vs_sklearn": first["isolation_forest"] / first["sklearn_decision_function"],
        **{f"{k}_batched_vs_per_event": last[k] / first[k] for k in last if k.startswith("autoencoder")},
    }
    for k, v in results["ratios"].items():
        print(f"{k}: {v:,.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
