"""`fraudstream retention` through the real command against the embedded Postgres."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from apps.cli import app
from infra.migrations import apply_migrations
from operators.sinks import PostgresSink
from tests.support import days_ago, scored_events

pytestmark = pytest.mark.integration


def test_retention_drops_old_days_and_says_what_it_did(make_settings, monkeypatch):
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    url = make_settings().database_url
    apply_migrations(url)
    sink = PostgresSink(url).build("pg", 0, 1)
    sink.write_batch(days_ago(scored_events(3, prefix="a"), 10) + days_ago(scored_events(2, prefix="b"), 2))
    sink.close()
    env = {**os.environ, "DATABASE_URL": url, "COLUMNS": "200"}
    runner = CliRunner()
    unset = runner.invoke(app, ["retention"], env=env)
    assert unset.exit_code == 2
    assert unset.stderr.strip().splitlines()[-1] == (
        "error: retention.keep_days is not set (keep everything); set it or pass --keep-days N"
    )
    day = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y%m%d")
    preview = runner.invoke(app, ["retention", "--keep-days", "5", "--dry-run"], env=env)
    assert (
        preview.exit_code == 0 and "would drop" in preview.stdout and f"scored_events_{day}" in preview.stdout
    )
    done = runner.invoke(app, ["retention"], env={**env, "FRAUDSTREAM__RETENTION__KEEP_DAYS": "5"})
    assert done.exit_code == 0 and "dropped" in done.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM scored_events").fetchone()[0] == 2
    assert (
        "nothing older than 5 days" in runner.invoke(app, ["retention", "--keep-days", "5"], env=env).stderr
    )
