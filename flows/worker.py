"""One process of a multi-process job (``fraudstream run --processes N`` spawns these)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flows.runner import run_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--addresses", type=Path, required=True, help="file with one host:port per process")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s p{args.process_id} %(levelname)s %(name)s: %(message)s"
    )
    addresses = [a.strip() for a in args.addresses.read_text().splitlines() if a.strip()]
    run_process(args.process_id, addresses, args.workers)


if __name__ == "__main__":
    main()
