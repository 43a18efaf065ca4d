"""``python -m bench <name> [options]``: job (whole-job throughput, latency,
scoring and memory on the embedded stack), gateway (score-call latency vs a
per-request scorer), model_scoring, state_memory, quality (detection quality of
every component and the served score beside baselines, on the shared datasets),
features (cost per event of the user-state features), retention (scored_events at
scale: one table vs day partitions)."""

from __future__ import annotations

import importlib
import sys

BENCHES = {
    "job": "bench.job",
    "gateway": "bench.gateway",
    "model_scoring": "bench.model_scoring",
    "state_memory": "bench.state_memory",
    "quality": "bench.quality",
    "features": "bench.features",
    "retention": "bench.retention",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        print(__doc__, file=sys.stderr)
        print(f"choose one of: {', '.join(BENCHES)}", file=sys.stderr)
        raise SystemExit(2)
    name = sys.argv[1]
    importlib.import_module(BENCHES[name]).main(sys.argv[2:])


if __name__ == "__main__":
    main()
