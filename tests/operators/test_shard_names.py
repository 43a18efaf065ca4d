"""The balanced shard names land shard ``i`` on worker ``i % W``: checked against the
hash Bytewax routes by, and against Bytewax's own routing."""

import collections
import json
import os
import subprocess
import sys
import threading

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from operators.shard_names import BALANCE_MODULUS, BALANCED_NAMES
from operators.shards import shard_names

_HASHES = """
import json, sys
names = json.load(sys.stdin)
print(json.dumps([(hash(n.encode() + b"\\xff") & (2**64 - 1)) for n in names]))
"""


def _rust_hashes(names: list[str]) -> list[int]:
    """Rust's DefaultHasher (SipHash-1-3, zero keys) of each name as a Bytewax key:
    CPython's hash of the same bytes with its secret zeroed (PYTHONHASHSEED=0)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _HASHES],
        input=json.dumps(names),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)


def test_each_name_hashes_to_its_shard_modulo_the_workers_it_balances():
    hashes = _rust_hashes(list(BALANCED_NAMES))
    assert len(set(BALANCED_NAMES)) == len(BALANCED_NAMES) == 256
    assert [h % BALANCE_MODULUS for h in hashes] == list(range(256))
    for workers in (*range(1, 17), 24, 32, 48, 64):
        assert BALANCE_MODULUS % workers == 0
        assert [h % workers for h in hashes[:64]] == [i % workers for i in range(64)]


def _keys_per_worker(keys: tuple[str, ...], workers: int) -> list[list[str]]:
    """Which keys each of ``workers`` Bytewax workers (threads of one process) ran."""
    seen: dict[int, set[str]] = collections.defaultdict(set)

    def note(state: None, item: tuple[str, int]) -> tuple[None, None]:
        seen[threading.get_ident()].add(item[0])
        return state, None

    flow = Dataflow("routing")
    keyed = op.key_on("key", op.input("in", flow, TestingSource([(k, 0) for k in keys])), lambda kv: kv[0])
    op.output("out", op.stateful_map("note", keyed, note), TestingSink([]))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return sorted(sorted(v) for v in seen.values())


def test_bytewax_runs_the_balanced_shards_evenly_and_the_numbers_unevenly():
    balanced = _keys_per_worker(shard_names(64), 8)
    assert sorted(len(g) for g in balanced) == [8] * 8
    index = {name: i for i, name in enumerate(shard_names(64))}
    assert all(len({index[n] % 8 for n in group}) == 1 for group in balanced), "shard i on worker i % 8"
    assert sorted(len(g) for g in _keys_per_worker(shard_names(64), 3)) == [21, 21, 22]
    assert sorted(len(g) for g in _keys_per_worker(shard_names(64), 32)) == [2] * 32
    numbers = _keys_per_worker(shard_names(64, balanced=False), 8)
    assert max(len(g) for g in numbers) >= 12, "what the names are for: numbers put 5 to 13 on a worker"
