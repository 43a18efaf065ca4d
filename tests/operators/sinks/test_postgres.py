import msgspec
import psycopg
import pytest
from psycopg.pq import Format

from infra.migrations import apply_migrations, migration_files
from operators.records import SCORED_EVENT_COLUMNS, scored_event_row
from operators.scoring import ShadowRules
from operators.sinks import PostgresSink, SinkError
from operators.sinks.retry import RetryPolicy
from tests.support import scored_events

pytestmark = pytest.mark.integration


def test_rows_are_written_once_however_often_a_batch_is_redelivered(make_settings):
    settings = make_settings()
    apply_migrations(settings.database_url)
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    events = scored_events(25)
    part.write_batch(events)
    part.write_batch(events[:10])  # re-delivery after a crash
    part.write_batch(events + events[-3:])  # duplicates inside one batch
    # the first batch went straight in; the conflict sent it and the next one through staging
    assert part.paths == {"direct": 1, "staging": 2}
    part.staging_until = 0.0  # the window after a conflict is over: straight in again
    part.write_batch(scored_events(30)[25:])
    assert part.paths == {"direct": 2, "staging": 2}
    part.close()
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM scored_events").fetchone() == (
            30,
            30,
        )
        row = conn.execute(
            "SELECT amount::text, currency, country, merchant_name, triggered_rules, reasons, risk_level, "
            "decision, is_blocked, rules_score, isolation_forest_score, model_version, features->>'user_event_count', "
            "attributes->>'k', ingested_at IS NOT NULL FROM scored_events WHERE event_id = 'e4'"
        ).fetchone()
    assert row[0] == "14.01"
    assert row[1:4] == ("USD", "KP", 'O\'Hare "Café"\t\\x')
    assert row[4] == ["country_blacklist"] and row[5] == ["transaction from KP, a blocked country"]
    assert row[6:9] == ("HIGH", "block", True)
    assert row[9] == 85.0 and row[10] is None and row[11] == "rules-only"
    assert row[12] == "1" and row[13] == "4" and row[14] is True


def test_a_batch_on_a_new_day_takes_the_split_direct_path(make_settings):
    from datetime import timedelta

    settings = make_settings()
    apply_migrations(settings.database_url)
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    part.write_batch(scored_events(3, prefix="d"))  # connects; its day is created
    later = [
        msgspec.structs.replace(
            s, event=msgspec.structs.replace(s.event, timestamp=s.event.timestamp + timedelta(days=3))
        )
        for s in scored_events(5, prefix="n")
    ]
    days = set(part.days)
    finish = part.begin(later)
    assert len(part.days) == len(days) + 1  # the new day's partition was made before the copy
    finish()
    assert part.paths == {"direct": 2, "staging": 0}
    part.close()
    with psycopg.connect(settings.database_url) as conn:
        got = conn.execute("SELECT count(*) FROM scored_events WHERE event_id LIKE 'n%'").fetchone()
    assert got == (5,)


def test_migrations_are_idempotent(make_settings):
    settings = make_settings()
    assert apply_migrations(settings.database_url) == [name for name, _ in migration_files()]
    assert apply_migrations(settings.database_url) == []


def test_unreachable_database_is_retried_then_raised(make_settings):
    url = make_settings().database_url.replace("127.0.0.1:", "127.0.0.1:1")  # a closed port
    sleeps: list[float] = []
    part = PostgresSink(url, RetryPolicy(max_retries=2, backoff_s=0.01, sleep=sleeps.append)).build(
        "pg", 0, 1
    )
    with pytest.raises(SinkError, match=r"postgres: giving up after 3 attempts: OperationalError"):
        part.write_batch(scored_events(2))
    assert sleeps == [0.01, 0.02]


def test_the_binary_copy_stores_what_a_plain_insert_of_the_same_events_stores(make_settings):
    """Every column's binary type (SCORED_EVENT_COPY_TYPES) against the text row of
    the same events, inserted by a query: the stored rows are the same."""
    settings = make_settings()
    apply_migrations(settings.database_url)
    plain = scored_events(6)
    full = [
        msgspec.structs.replace(
            s,
            verdict=msgspec.structs.replace(
                s.verdict,
                scores={**s.verdict.scores, "isolation_forest": 71.25, "autoencoder": 3.5, "supervised": 0.5},
            ),
            challenger=("v2", 12.5),
            rules_version=3,
            shadow_rules=ShadowRules(4, 33.0, ["velocity_check"]),
            request_id="r-1",
        )
        for s in scored_events(6, prefix="f")
    ]
    events = plain + full
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    part.write_batch(events)
    part.close()
    cols = ", ".join(SCORED_EVENT_COLUMNS)
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("CREATE TEMP TABLE reference (LIKE scored_events INCLUDING DEFAULTS)")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO reference ({cols}) VALUES ({', '.join(['%s'] * len(SCORED_EVENT_COLUMNS))})",
                [scored_event_row(s) for s in events],
            )
        written = conn.execute(f"SELECT {cols} FROM scored_events ORDER BY event_id").fetchall()
        reference = conn.execute(f"SELECT {cols} FROM reference ORDER BY event_id").fetchall()
    assert len(written) == len(events)
    assert written == reference
    assert written[-1][SCORED_EVENT_COLUMNS.index("shadow_triggered_rules")] == ["velocity_check"]
    assert written[-1][SCORED_EVENT_COLUMNS.index("challenger_version")] == "v2"


def test_the_jsonb_columns_are_copied_by_a_c_dumper_and_read_back_as_json(make_settings):
    """psycopg's by-oid choice for bytea is the pure-Python dumper of psycopg.Binary; the
    sink's connection makes the COPY use the C one, and the jsonb values still arrive whole."""
    settings = make_settings()
    apply_migrations(settings.database_url)
    part = PostgresSink(settings.database_url).build("pg", 0, 1)
    try:
        part.write_batch(scored_events(3))
        conn = part.db.get()
        dumper = conn.adapters.get_dumper_by_oid(conn.adapters.types["bytea"].oid, Format.BINARY)
    finally:
        part.close()
    assert dumper.__module__ != "psycopg.dbapi20"
    with psycopg.connect(settings.database_url) as check:
        rows = check.execute("SELECT json_typeof(features), triggered_rules FROM scored_events").fetchall()
    assert len(rows) == 3 and all(r[0] == "object" and isinstance(r[1], list) for r in rows)
