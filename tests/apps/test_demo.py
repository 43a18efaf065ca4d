"""`fraudstream demo`, the README's first command, end to end (small workload)."""

import os
import subprocess
import sys

import pytest

from infra.stack import free_port

pytestmark = pytest.mark.integration


def test_demo_accounts_for_every_event_and_prints_the_summary(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "160"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "apps.cli",
            "demo",
            "--events",
            "1500",
            "--users",
            "150",
            "--metrics-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for line in (
        "events produced",
        "scored (rows in Postgres)",
        "dead-lettered",
        "alerts",
        "top rules",
        "throughput",
        "end-to-end latency",
    ):
        assert line in out
    assert "velocity_check" in out and "country_blacklist" in out
    assert "caught: card_testing" in out and "alert precision" in out and "at a steady 200 events/s" in out
    assert "not every event was accounted for" not in out
