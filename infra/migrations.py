"""Apply ``infra/sql/*.sql`` in order, once each, under an advisory lock.

Safe to run from several processes at once and on every start-up.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import psycopg

__all__ = ["apply_migrations", "migration_files"]

_LOCK_ID = 0x46524144  # "FRAD"


def migration_files() -> list[tuple[str, str]]:
    """``(name, sql)`` for every migration shipped with the package, in order."""
    folder = resources.files("infra") / "sql"
    files = sorted((p.name, p.read_text()) for p in folder.iterdir() if p.name.endswith(".sql"))
    return files


def apply_migrations(database_url: str) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                name text PRIMARY KEY, sha256 text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (name, sha256) VALUES (%s, %s)",
                        (name, hashlib.sha256(sql.encode()).hexdigest()),
                    )
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
