"""The Kubernetes way of running the job: each process started on its own with
``fraudstream run --process-id I --addresses ...`` (one per pod)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import psycopg
import pytest

from apps.produce import produce_all
from apps.replay.workload import generate
from flows.launcher import free_port_range, job_env
from infra.stack import free_port
from infra.topics import ensure_topics

pytestmark = pytest.mark.integration


def test_separately_started_members_form_one_cluster_and_score_everything(make_settings, tmp_path):
    settings = make_settings()
    k = settings.kafka
    work = generate(events=1500, users=150, malformed=5, seed=9)
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: k.partitions})
    produce_all(k.bootstrap_servers, k.transactions_topic, work.messages)
    base = free_port_range(2)
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    recovery = tmp_path / "recovery"
    members = []
    for i in range(2):
        log = open(tmp_path / f"member-{i}.log", "wb")  # noqa: SIM115
        env = job_env(
            settings,
            base + i,
            FRAUDSTREAM_PROCESS_ID=str(i),
            FRAUDSTREAM_ADDRESSES=addresses,
            FRAUDSTREAM_RECOVERY_DIR=str(recovery),
        )
        members.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "apps.cli", "run"], env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
            )
        )
    try:
        deadline = time.monotonic() + 120
        rows = 0
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline and rows < work.valid:
                for p, _ in members:
                    assert p.poll() is None, (tmp_path / "member-0.log").read_text()[-3000:]
                try:
                    rows = conn.execute("SELECT count(*) FROM scored_events").fetchone()[0]  # type: ignore[index]
                except psycopg.errors.UndefinedTable:
                    rows = 0
                time.sleep(0.3)
        assert rows == work.valid
        # Process 0 created the recovery partitions for both; each serves metrics on its own port.
        assert sorted(p.name for p in recovery.glob("part-*.sqlite3"))
        for i in range(2):
            text = urllib.request.urlopen(f"http://127.0.0.1:{base + i}/metrics", timeout=5).read().decode()
            assert "fraudstream_events_total" in text
    finally:
        for p, _log in members:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p, log in members:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            log.close()
