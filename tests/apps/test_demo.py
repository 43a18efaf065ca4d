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
    flat = " ".join(out.split())
    assert (
        "The demo's job and stack are stopped" in flat
        and "--config .fraudstream/demo/fraudstream.yaml" in flat
    )


def test_keep_running_names_a_config_for_other_commands_and_sigterm_stops_everything(tmp_path):
    import signal
    import socket
    import time

    import psycopg

    from flows.config import load_settings

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
    args = ["demo", "--events", "600", "--users", "60", "--keep-running", "--metrics-port", str(free_port())]
    proc = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "fraudstream console --config" in line:
                break
        config = tmp_path / line.split("--config", 1)[1].strip()
        assert any("events produced" in x for x in lines), "the summary comes before the wait"
        settings = load_settings(config, env={})
        with psycopg.connect(settings.database_url) as conn:
            assert conn.execute("SELECT count(*) FROM scored_events").fetchone()[0] > 0
        port = int(settings.database_url.rsplit(":", 1)[1].split("/")[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    time.sleep(0.5)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "Postgres outlived the demo"


def test_a_taken_metrics_port_is_one_line_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        result = subprocess.run(
            [sys.executable, "-m", "apps.cli", "demo", "--metrics-port", str(s.getsockname()[1])],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: metrics port") and "Traceback" not in result.stderr
    assert not (tmp_path / ".fraudstream").exists()


def test_the_summary_says_when_a_rule_fired_on_injected_events_it_did_not_alert():
    from rich.console import Console

    from apps.cli import _demo_table
    from apps.demo import Summary

    s = Summary(20, 20, 0, {"MEDIUM": 1, "HIGH": 0}, [("unusual_hours", 5)], 1.0, 1.0, 1.0, 1.0, ["v1"])
    s.caught, s.flagged = {"night_owl": (0, 5), "takeover": (2, 2)}, {"night_owl": 5, "takeover": 2}
    con = Console(width=250, record=True)
    con.print(_demo_table(s))
    text = con.export_text()
    assert "0 of 5 injected alerted; a rule fired on 5 (scored, not alerted" in text
    assert "2 of 2 injected alerted" in text and "a rule fired on 2" not in text
    assert "a rule alone can score under ensemble.medium_threshold" in text
