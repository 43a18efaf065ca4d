"""Retention of ``scored_events``: drop whole day partitions older than
``retention.keep_days`` (migration 007), after moving their labelled rows to
``scored_events_labelled`` so training and evaluation keep them.

Dropping a day is a catalog change, not a scan: it takes the same few
milliseconds at 50M rows as at 50 (``python -m bench retention``).

>>> from datetime import date
>>> expired([("scored_events_20261101", date(2026, 11, 1)), ("scored_events_20261120", date(2026, 11, 20))],
...         today=date(2026, 11, 27), keep_days=14)
['scored_events_20261101']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["DroppedDay", "day_partitions", "drop_expired", "expired"]


def expired(partitions: Sequence[tuple[str, date]], today: date, keep_days: int) -> list[str]:
    """Partitions whose whole day is more than ``keep_days`` days before ``today`` (UTC)."""
    horizon = today - timedelta(days=keep_days)
    return [name for name, day in sorted(partitions, key=lambda p: p[1]) if day < horizon]


def day_partitions(conn: psycopg.Connection[Any]) -> list[tuple[str, date]]:
    """``(name, day)`` of every day partition of ``scored_events``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'scored_events'::regclass"
    ).fetchall()
    out = []
    for (name,) in rows:
        suffix = name.rsplit("_", 1)[-1]
        if name.startswith("scored_events_") and suffix.isdigit() and len(suffix) == 8:
            out.append((name, datetime.strptime(suffix, "%Y%m%d").date()))  # noqa: DTZ007 - a day, no time
    return sorted(out, key=lambda p: p[1])


@dataclass(frozen=True, slots=True)
class DroppedDay:
    partition: str
    rows: int
    kept_labelled: int


def drop_expired(database_url: str, keep_days: int, today: date, dry_run: bool = False) -> list[DroppedDay]:
    """Drop the expired day partitions, each in its own transaction, after copying
    its labelled rows to ``scored_events_labelled``. With ``dry_run``, only count."""
    out = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        columns = sql.SQL(", ").join(
            sql.Identifier(c)
            for (c,) in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'scored_events_labelled' ORDER BY ordinal_position"
            ).fetchall()
        )
        for name in expired(day_partitions(conn), today, keep_days):
            table = sql.Identifier(name)
            with conn.transaction():
                rows = _count(conn, sql.SQL("SELECT count(*) FROM {}").format(table))
                labelled = sql.SQL(
                    "FROM {} s WHERE EXISTS (SELECT 1 FROM labels l WHERE l.event_id = s.event_id)"
                ).format(table)
                if dry_run:
                    kept = _count(conn, sql.SQL("SELECT count(*) ") + labelled)
                else:
                    kept = conn.execute(
                        sql.SQL("INSERT INTO scored_events_labelled ({cols}) SELECT {cols} ").format(
                            cols=columns
                        )
                        + labelled
                        + sql.SQL(" ON CONFLICT DO NOTHING")
                    ).rowcount
                    conn.execute(sql.SQL("DROP TABLE {}").format(table))
            out.append(DroppedDay(name, int(rows), int(kept)))
    return out


def _count(conn: psycopg.Connection[Any], query: sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0
