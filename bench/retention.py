"""``scored_events`` at scale: the same generated history in the old single table
and in day partitions (migration 007). For each layout: the job's Postgres sink's
insert throughput into an empty table and into the full one, the dashboards' and
the console's queries, the size on disk, and removing the oldest day (``DELETE``
vs dropping its partition).

    python -m bench retention --rows 50000000 --days 60

Rows are generated inside Postgres (``generate_series``); their features are
short, so sizes are a lower bound of a real job's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from flows.config import Settings
from flows.fraud import kafka_sinks
from infra.migrations import apply_migrations, migration_files
from infra.retention import drop_expired
from infra.stack import EmbeddedStack
from models.base import RULES_ONLY
from operators.ensemble import EnsembleConfig
from operators.events import TransactionEvent
from operators.features import update_profile
from operators.records import SCORED_EVENT_COLUMNS, scored_event_row
from operators.rules import Blocklists, RulesConfig
from operators.rulesets import RuleSet
from operators.scoring import ScoredEvent, score_batch
from operators.state import StateLimits, UserState
from operators.validation import Accepted

__all__ = ["main"]

FILL = """
INSERT INTO scored_events (event_id, user_id, amount, currency, event_time, merchant_name, merchant_category,
    country, device_id, fraud_score, risk_level, decision, is_blocked, triggered_rules, reasons, rules_score,
    model_version, features, scored_at, processing_ms)
SELECT 'g-' || i, 'u' || (i %% 1000000), (i %% 50000) / 100.0, 'USD',
    %(end)s - (i::float8 / %(rows)s * %(span)s) * interval '1 second',
    'm' || (i %% 5000), 'grocery_pos', 'US', 'd' || (i %% 800000),
    CASE WHEN i %% 100 = 0 THEN 85 WHEN i %% 50 = 0 THEN 45 ELSE 5 END,
    CASE WHEN i %% 100 = 0 THEN 'HIGH' WHEN i %% 50 = 0 THEN 'MEDIUM' ELSE 'LOW' END,
    CASE WHEN i %% 100 = 0 THEN 'block' WHEN i %% 50 = 0 THEN 'review' ELSE 'approve' END,
    i %% 100 = 0, '[]'::jsonb, '[]'::jsonb, 0, 'bench',
    '{"amount": 12.5, "events_24h": 3, "user_event_count": 40, "risk": {}}'::jsonb, now(), 1.0
FROM generate_series(%(lo)s, %(hi)s) i
"""

QUERIES = {
    "alerts per hour, last 24 h (Overview)": (
        "SELECT date_trunc('hour', event_time), count(*) FILTER (WHERE risk_level = 'MEDIUM'), "
        "count(*) FILTER (WHERE risk_level = 'HIGH') FROM scored_events "
        "WHERE event_time > %(now)s - interval '24 hours' AND risk_level <> 'LOW' GROUP BY 1 ORDER BY 1"
    ),
    "events, alerts, blocks per day, last 7 days (Fraud operations)": (
        "SELECT date_trunc('day', event_time), count(*), count(*) FILTER (WHERE risk_level <> 'LOW'), "
        "count(*) FILTER (WHERE is_blocked) FROM scored_events "
        "WHERE event_time > %(now)s - interval '7 days' GROUP BY 1 ORDER BY 1"
    ),
    "newest 100 HIGH alerts, last 24 h (Fraud operations)": (
        "SELECT s.event_time, s.event_id, s.user_id, s.amount, e.text FROM scored_events s "
        "LEFT JOIN alert_explanations e USING (event_id) WHERE s.risk_level = 'HIGH' "
        "AND s.event_time > %(now)s - interval '24 hours' ORDER BY s.event_time DESC LIMIT 100"
    ),
    "a user's 10 newest events (console, explainer)": (
        "SELECT event_id, event_time, amount FROM scored_events WHERE user_id = 'u4242' "
        "ORDER BY event_time DESC LIMIT 10"
    ),
    "100 events by id (the job's label lookup)": (
        "SELECT event_id, extract(epoch FROM event_time) FROM scored_events "
        "WHERE event_id = ANY(ARRAY(SELECT 'g-' || (i * 7919) FROM generate_series(1, 100) i))"
    ),
}


def _scored(n: int, prefix: str, at: datetime) -> list[ScoredEvent]:
    state, featured = UserState(), []
    for i in range(n):
        ts = at + timedelta(milliseconds=i)
        ev = TransactionEvent(f"{prefix}{i}", f"bench-{i % 500}", 10.0 + i % 90, ts, device_id="d1")
        acc = Accepted(ev, ts.timestamp(), int(ts.timestamp() * 1000), ts.timestamp())
        featured.append(update_profile(state, acc, StateLimits()))
    rules = RuleSet.from_config(RulesConfig())
    return score_batch(featured, RULES_ONLY, rules, Blocklists(), EnsembleConfig(), at.timestamp())


class _SingleTableSink:
    """The sink as it was before day partitions: the same COPY into a staging
    table, then ``INSERT ... ON CONFLICT (event_id)``."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url)
        self.conn.execute(
            "CREATE TEMP TABLE stage (LIKE scored_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        self.conn.commit()

    def write_batch(self, items: list[ScoredEvent]) -> None:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in SCORED_EVENT_COLUMNS)
        with self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY stage ({}) FROM STDIN").format(cols)) as copy:
                for s in items:
                    copy.write_row(scored_event_row(s))
            cur.execute(
                sql.SQL(
                    "INSERT INTO scored_events ({c}) SELECT {c} FROM stage ON CONFLICT (event_id) DO NOTHING"
                ).format(c=cols)
            )

    def close(self) -> None:
        self.conn.close()


def insert_rate(url: str, tag: str, batches: int, size: int, at: datetime, partitioned: bool) -> float:
    """Rows/s the sink writes, ``batches`` batches of ``size``."""
    work = [_scored(size, f"{tag}-{b}-", at) for b in range(batches)]
    sink = kafka_sinks(Settings(database_url=url)).scored  # the job's own Postgres sink
    part = sink.build("bench", 0, 1) if partitioned else _SingleTableSink(url)
    part.write_batch(_scored(10, f"{tag}-warm-", at))
    began = time.perf_counter()
    for batch in work:
        part.write_batch(batch)
    elapsed = time.perf_counter() - began
    part.close()
    return batches * size / elapsed


def query_ms(url: str, now: datetime, repeats: int = 5) -> dict[str, float]:
    out = {}
    with psycopg.connect(url) as conn:
        for name, sql in QUERIES.items():
            conn.execute(sql, {"now": now}).fetchall()  # warm
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                conn.execute(sql, {"now": now}).fetchall()
                times.append((time.perf_counter() - began) * 1000)
            out[name] = round(statistics.median(times), 2)
    return out


def size_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = 'scored_events'::regclass), 0) + pg_total_relation_size('scored_events')"
        ).fetchone()
    return int(row[0]) if row else 0


def fill(url: str, rows: int, days: int, end: datetime, partitioned: bool, chunk: int = 2_000_000) -> float:
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if partitioned:
            for d in range(days + 2):
                conn.execute("SELECT fraudstream_day_partition(%s)", ((end - timedelta(days=d)).date(),))
        for lo in range(1, rows + 1, chunk):
            hi = min(rows, lo + chunk - 1)
            conn.execute(FILL, {"end": end, "rows": rows, "span": days * 86_400.0, "lo": lo, "hi": hi})
        conn.execute("ANALYZE scored_events")
    return time.perf_counter() - began


def drop_oldest_day(url: str, partitioned: bool, end: datetime, days: int) -> tuple[float, int]:
    """Seconds to remove the oldest day, and the rows removed."""
    oldest = (end - timedelta(days=days)).date()
    cut = datetime.combine(oldest + timedelta(days=1), datetime.min.time(), UTC)
    began = time.perf_counter()
    if partitioned:
        keep = (end.date() - oldest).days - 1
        removed = sum(d.rows for d in drop_expired(url, keep, end.date()))
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            removed = conn.execute("DELETE FROM scored_events WHERE event_time < %s", (cut,)).rowcount
    return time.perf_counter() - began, removed


def _database(base_url: str, name: str) -> str:
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def _single_table_schema(url: str) -> None:
    """Migrations before 007: scored_events as one table."""
    with psycopg.connect(url, autocommit=True) as conn:
        for name, sql in migration_files():
            if name < "007":
                conn.execute(sql.encode())


def run(rows: int, days: int, batches: int, batch_size: int, root: Path) -> dict[str, Any]:
    stack = EmbeddedStack(root, {"kafka": 0, "postgres": 0, "redis": 0})
    info = stack.start()
    end = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, Any] = {"rows": rows, "days": days, "batch": f"{batches} x {batch_size}"}
    try:
        base = info.env()["DATABASE_URL"]
        for layout, partitioned in (("single table", False), ("day partitions", True)):
            url = _database(base, "flat" if not partitioned else "parts")
            if partitioned:
                apply_migrations(url)
            else:
                _single_table_schema(url)
            r: dict[str, Any] = {}
            r["insert_rows_per_s_empty"] = round(
                insert_rate(url, "empty", batches, batch_size, end, partitioned)
            )
            r["fill_s"] = round(fill(url, rows, days, end, partitioned), 1)
            r["insert_rows_per_s_full"] = round(
                insert_rate(url, "full", batches, batch_size, end, partitioned)
            )
            r["query_ms"] = query_ms(url, end)
            r["size_gb"] = round(size_bytes(url) / 1e9, 2)
            seconds, removed = drop_oldest_day(url, partitioned, end, days)
            r["remove_oldest_day_s"] = round(seconds, 3)
            r["remove_oldest_day_rows"] = removed
            results[layout] = r
            print(json.dumps({layout: r}, indent=2), flush=True)
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE {'flat' if not partitioned else 'parts'}")
    finally:
        stack.stop()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        results = run(args.rows, args.days, args.batches, args.batch_size, Path(tmp))
    results["machine"] = f"{__import__('os').cpu_count()} cores"
    results["date"] = date.today().isoformat()  # noqa: DTZ011 - a label
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results
