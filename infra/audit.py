"""The append-only audit trail (``audit_log``, migration 005): one row per change a
person makes (rule sets, cases, lists), written in the same transaction as the change.

``subject`` names what changed (``rules/active``, ``case/e1``, ``list/devices/d9``);
``before`` and ``after`` are JSON, None where there was or is nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

__all__ = ["read_audit", "record_audit"]


def record_audit(
    conn: psycopg.Connection[Any], actor: str, action: str, subject: str, before: Any, after: Any
) -> None:
    conn.execute(
        "INSERT INTO audit_log (actor, action, subject, before, after) VALUES (%s, %s, %s, %s, %s)",
        (actor, action, subject, _jsonb(before), _jsonb(after)),
    )


def read_audit(
    conn: psycopg.Connection[Any],
    limit: int = 100,
    actor: str | None = None,
    subject_prefix: str | None = None,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """The newest rows first, optionally one actor's, under one subject, or older than ``before_id``."""
    rows = conn.execute(
        "SELECT id, at, actor, action, subject, before, after FROM audit_log "
        "WHERE (%(actor)s::text IS NULL OR actor = %(actor)s) "
        "AND (%(prefix)s::text IS NULL OR starts_with(subject, %(prefix)s)) "
        "AND (%(before)s::bigint IS NULL OR id < %(before)s) ORDER BY id DESC LIMIT %(limit)s",
        {"actor": actor, "prefix": subject_prefix, "before": before_id, "limit": limit},
    ).fetchall()
    return [
        {
            "id": r[0],
            "at": _iso(r[1]),
            "actor": r[2],
            "action": r[3],
            "subject": r[4],
            "before": r[5],
            "after": r[6],
        }
        for r in rows
    ]


def _iso(at: datetime) -> str:
    return at.isoformat()


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)
