"""The whole-job benchmark's quick mode, end to end on its own embedded stack.

A smoke test: it checks the benchmark runs and that what it reports is complete and
consistent (nothing lost in the latency runs), never how fast anything is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.job import STAGES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_quick_mode_reports_every_figure(tmp_path):
    out, md, png = tmp_path / "bench.json", tmp_path / "bench.md", tmp_path / "latency.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "job",
            "--quick",
            "--recovery",
            "--json",
            str(out),
            "--markdown",
            str(md),
            "--plot",
            str(png),
        ],
        cwd=ROOT,
        env={**os.environ, "FRAUDSTREAM__KAFKA__FETCH_WAIT_MAX_MS": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["command"].startswith("python -m bench job --quick --recovery")
    assert r["workload"]["recovery"] is True, "the throughput runs snapshot as in production"
    assert r["machine"]["cores"] >= 1 and r["machine"]["postgres"]
    assert r["raw_passthrough_per_s"]["median"] > 0
    assert set(r["job"]) == {"1", "2"}
    for d in r["job"].values():
        assert d["events_per_s"]["median"] > 0 and d["ratio_to_raw"]["median"] > 0
        shares = d["stage_share"]
        assert set(shares) == set(STAGES) and {"users", "risk_windows", "sink_decisions"} <= set(shares)
        assert all(v > 0 for v in shares.values()), shares
        assert sum(shares.values()) <= 1.05, shares  # one worker cannot spend more than its wall time
        assert d["peak_rss_bytes_per_process"] > 50 * 2**20
        cpu = d["cpu_us_per_event"]
        assert cpu["job"] > 0 and cpu["postgres"] > 0 and cpu["broker"] > 0, cpu
        assert 0 <= cpu["idle"] < 1
        threads = d["threads"]
        assert 0 < threads["worker_busy"] <= 1.05, threads
        assert threads["worker"] > 0, "no CPU found on the Bytewax worker threads"
        assert threads["worker"] < cpu["job"], (threads, cpu)
    (lat,) = r["latency"]
    assert lat["rows"] == lat["expected_rows"], "the latency run lost events"
    assert lat["to_row_ms"]["p50"] <= lat["to_row_ms"]["p99"] <= lat["to_row_ms"]["max"]
    assert lat["producer_linger_ms"] == 5
    cores = lat["cpu_cores"]
    assert cores["job"] > 0 and cores["broker"] > 0, cores
    assert 0 <= cores["idle"] <= (os.cpu_count() or 1), cores
    assert lat["fetch_wait_max_ms"] == 3  # the floor's consumer waits as the job's (the env above)
    floor = lat["broker_floor_ms"]
    assert 0 < floor["p50"] <= floor["p99"] <= floor["max"]
    assert r["scoring"]["batched_per_s"] > 0 and r["scoring"]["per_event_per_s"] > 0
    assert r["state_bytes_per_user"]["20000"] > 0
    text = md.read_text()
    assert "CPU µs/event: job | postgres | broker | redis | other" in text
    assert "| worker threads busy | job CPU µs/event: worker threads | exchange threads |" in text
    assert "| offered rate | achieved | producer linger ms |" in text
    assert "| cores used while loading: job | postgres | broker | redis | other | cores idle |" in text
    assert "| full job, 2 process(es) |" in text and "ratio to raw pass-through" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_preloaded_topic_has_a_partition_per_process_unless_told():
    from bench.job import PARTITIONS, parse

    assert parse(["--processes", "1,2"]).partitions == PARTITIONS
    assert parse(["--processes", "1,8"]).partitions == 8
    assert parse(["--processes", "1,8", "--partitions", "16"]).partitions == 16


def test_the_load_producer_lingers_as_librdkafka_does_unless_told():
    from bench.job import parse

    assert parse([]).linger_ms == 5
    assert parse(["--linger-ms", "1"]).linger_ms == 1
