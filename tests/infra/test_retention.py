"""Retention against the real embedded Postgres: whole expired days are dropped,
their labelled rows kept for training, and the sink writes to a dropped day again."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from infra.migrations import apply_migrations, migration_files
from infra.retention import day_partitions, drop_expired, expired
from models.champion import labelled_rows
from operators.records import SCORED_EVENT_COLUMNS, scored_event_row
from operators.sinks import PostgresSink
from tests.support import days_ago, scored_events

pytestmark = pytest.mark.integration


def test_only_days_wholly_past_the_horizon_expire():
    parts = [(f"p{d}", date(2026, 11, d)) for d in (27, 1, 12, 13, 14)]
    assert expired(parts, today=date(2026, 11, 27), keep_days=14) == ["p1", "p12"]
    assert expired(parts, today=date(2026, 11, 27), keep_days=365) == []


def test_expired_days_go_and_their_labelled_rows_stay(make_settings):
    url = make_settings().database_url
    apply_migrations(url)
    sink = PostgresSink(url).build("pg", 0, 1)
    old, recent = days_ago(scored_events(6, prefix="old"), 40), days_ago(scored_events(4, prefix="new"), 1)
    sink.write_batch(old + recent)
    with psycopg.connect(url, autocommit=True) as conn:
        assert len(day_partitions(conn)) == 2
        conn.execute(
            "INSERT INTO labels (event_id, is_fraud, label_time, source) VALUES ('old1', true, now(), 'chargeback')"
        )
    today = datetime.now(UTC).date()
    preview = drop_expired(url, keep_days=30, today=today, dry_run=True)
    assert [(d.rows, d.kept_labelled) for d in preview] == [(6, 1)]
    dropped = drop_expired(url, keep_days=30, today=today)
    assert [(d.partition, d.rows, d.kept_labelled) for d in dropped] == [
        (f"scored_events_{(today - timedelta(days=40)):%Y%m%d}", 6, 1)
    ]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM scored_events").fetchone()[0] == 4
        assert conn.execute("SELECT event_id FROM scored_events_labelled").fetchall() == [("old1",)]
        assert len(day_partitions(conn)) == 1
    # Training still sees the labelled event of the dropped day.
    training = labelled_rows(url, maturity_days=0, as_of=datetime.now(UTC))
    assert "old1" in training.event_ids and training.y[training.event_ids.index("old1")] == 1
    # A late event for the dropped day: the sink, which knew that day, creates it again.
    sink.write_batch(days_ago(scored_events(2, prefix="late"), 40))
    sink.write_batch(days_ago(scored_events(2, prefix="late"), 40))  # and writes nothing twice
    sink.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM scored_events").fetchone()[0] == 6
    assert drop_expired(url, keep_days=30, today=today)[0].rows == 2


def test_migration_moves_existing_rows_into_day_partitions(make_settings):
    url = make_settings().database_url
    before = [(name, sql) for name, sql in migration_files() if name < "007"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (name text PRIMARY KEY, sha256 text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for name, sql in before:
            conn.execute(sql.encode())
            conn.execute("INSERT INTO schema_migrations (name, sha256) VALUES (%s, '')", (name,))
        old = days_ago(scored_events(5, prefix="p"), 3) + days_ago(scored_events(5, prefix="q"), 2)
        with conn.cursor() as cur:  # rows as the single table held them
            cur.executemany(
                f"INSERT INTO scored_events ({', '.join(SCORED_EVENT_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(SCORED_EVENT_COLUMNS))})",
                [scored_event_row(s) for s in old],
            )
    assert apply_migrations(url)[0].startswith("007")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM scored_events").fetchone()[0] == 10
        assert [day for _, day in day_partitions(conn)] == sorted({s.event.timestamp.date() for s in old})
        assert conn.execute("SELECT to_regclass('scored_events_unpartitioned')").fetchone()[0] is None
