"""The console's Postgres side: cases and their history, analysts, list entries,
transaction search and the audit trail (migrations 005 and 006).

Every change a person makes is one transaction: the case (or list entry), a
``case_events`` row and an ``audit_log`` row commit together or not at all. A
resolution also publishes its label inside that transaction, so a case is
closed only once its label is on the labels topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from apps.console.cases import NewCase, NotAllowed, Refused, may_reassign, move
from infra.audit import read_audit, record_audit
from operators.labels import Label

__all__ = ["Analyst", "CaseStore", "token_sha256"]

_CASE_COLUMNS = (
    "event_id, user_id, risk_level, fraud_score, priority, decision, status, assignee, disposition, "
    "resolution, resolved_by, resolved_at, decided_at, due_at, created_at, updated_at"
)


_CASE_FIELDS = (
    "event_id",
    "user_id",
    "risk_level",
    "fraud_score",
    "priority",
    "decision",
    "decided_at",
    "due_at",
)
_ADD_CASES = """
WITH new AS (
    INSERT INTO cases
        (event_id, user_id, risk_level, fraud_score, priority, decision, decided_at, due_at, alert)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::real[], %s::int[], %s::text[],
                         %s::timestamptz[], %s::timestamptz[], %s::jsonb[])
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), opened AS (
    INSERT INTO case_events (event_id, actor, action) SELECT event_id, 'system', 'opened' FROM new
)
SELECT event_id FROM new
"""


def token_sha256(token: str) -> str:
    """What is stored of an analyst's token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Analyst(dict[str, Any]):
    """``name`` and ``role`` of a signed-in analyst."""

    @property
    def name(self) -> str:
        return str(self["name"])

    @property
    def is_admin(self) -> bool:
        return self["role"] == "admin"


def _json(row: dict[str, Any]) -> dict[str, Any]:
    """Times as RFC 3339 text, so a row is ready for JSON."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class CaseStore:
    """Cases, analysts, list entries and audit rows in Postgres (one short connection per call)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.url, row_factory=dict_row, connect_timeout=5)

    # -- cases -----------------------------------------------------------------------------
    def add(self, cases: Sequence[NewCase]) -> list[str]:
        """Insert new cases, and their ``opened`` history rows, in one statement per
        batch; an event that already has a case adds nothing. The ids inserted."""
        if not cases:
            return []
        params = [[getattr(c, name) for c in cases] for name in _CASE_FIELDS]
        params.append([Jsonb(c.alert) for c in cases])
        with self._connect() as conn, conn.transaction():
            rows = conn.execute(_ADD_CASES, params).fetchall()
        return [r["event_id"] for r in rows]

    def queue(
        self, status: str | None, level: str | None, assignee: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Cases, highest priority first, then the soonest due (``status`` None: open and assigned)."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_CASE_COLUMNS}, alert->'triggered_rules' AS triggered_rules, "
                "(alert->'event'->>'amount')::float8 AS amount, alert->'event'->>'currency' AS currency, "
                "alert->'event'->>'merchant_name' AS merchant_name FROM cases "
                "WHERE (CASE WHEN %(status)s::text IS NULL THEN status <> 'closed' "
                "ELSE status = %(status)s END) "
                "AND (%(level)s::text IS NULL OR risk_level = %(level)s) "
                "AND (%(assignee)s::text IS NULL OR assignee = %(assignee)s) "
                "ORDER BY priority DESC, due_at, event_id LIMIT %(limit)s",
                {"status": status, "level": level, "assignee": assignee, "limit": limit},
            ).fetchall()
        return [_json(r) for r in rows]

    def case(self, event_id: str, recent: int = 10) -> dict[str, Any] | None:
        """Everything an analyst needs to decide: the case and its alert, the scored
        row (features, risk windows), the explanation, labels, history and the
        user's recent events."""
        with self._connect() as conn:
            case = conn.execute(
                f"SELECT {_CASE_COLUMNS}, alert FROM cases WHERE event_id = %s", (event_id,)
            ).fetchone()
            if case is None:
                return None
            scored = conn.execute(
                "SELECT features, processing_ms, scored_at, rules_version, shadow_rules_version, "
                "shadow_rules_score, supervised_score FROM scored_events WHERE event_id = %s",
                (event_id,),
            ).fetchone()
            explanation = conn.execute(
                "SELECT text, source, model, created_at FROM alert_explanations WHERE event_id = %s",
                (event_id,),
            ).fetchone()
            labels = conn.execute(
                "SELECT is_fraud, label_time, source, received_at FROM labels WHERE event_id = %s "
                "ORDER BY label_time",
                (event_id,),
            ).fetchall()
            history = conn.execute(
                "SELECT at, actor, action, detail FROM case_events WHERE event_id = %s ORDER BY id",
                (event_id,),
            ).fetchall()
            recent_rows = conn.execute(
                "SELECT event_id, event_time, amount::float8 AS amount, currency, merchant_name, country, "
                "device_id, fraud_score, risk_level, decision FROM scored_events "
                "WHERE user_id = %s ORDER BY event_time DESC LIMIT %s",
                (case["user_id"], recent),
            ).fetchall()
        features = scored.pop("features") if scored else None
        return {
            **_json(case),
            "features": features,
            "risk_windows": (features or {}).get("risk", {}),
            "scored": _json(scored) if scored else None,
            "explanation": _json(explanation) if explanation else None,
            "labels": [_json(r) for r in labels],
            "history": [_json(r) for r in history],
            "recent_events": [_json(r) for r in recent_rows],
        }

    def assign(
        self, event_id: str, assignee: str | None, actor: str, is_admin: bool = True
    ) -> dict[str, Any] | Refused | NotAllowed | None:
        """Give the case to ``assignee`` (None: back to the queue), if ``actor`` may
        (:func:`may_reassign`). None when there is no such case."""
        action = "assign" if assignee else "unassign"
        with self._connect() as conn, conn.transaction():
            row = conn.execute(
                "SELECT status, assignee FROM cases WHERE event_id = %s FOR UPDATE", (event_id,)
            ).fetchone()
            if row is None:
                return None
            after = move(row["status"], action)
            if isinstance(after, Refused):
                return after
            if (refused := may_reassign(row["assignee"], actor, is_admin)) is not None:
                return refused
            conn.execute(
                "UPDATE cases SET status = %s, assignee = %s, updated_at = now() WHERE event_id = %s",
                (after, assignee, event_id),
            )
            detail = {"assignee": assignee}
            conn.execute(
                "INSERT INTO case_events (event_id, actor, action, detail) VALUES (%s, %s, %s, %s)",
                (event_id, actor, action, Jsonb(detail)),
            )
            before = {"status": row["status"], "assignee": row["assignee"]}
            record_audit(
                conn, actor, f"case.{action}", f"case/{event_id}", before, {"status": after, **detail}
            )
        return {"event_id": event_id, "status": after, "assignee": assignee}

    def resolve(
        self,
        event_id: str,
        disposition: str,
        reason: str,
        actor: str,
        label_for: Callable[[datetime], Label],
        publish: Callable[[Label], None],
    ) -> dict[str, Any] | Refused | None:
        """Close the case as ``fraud`` or ``legitimate`` and publish its label.

        The label (``label_for(now)``) is published before the transaction commits;
        if publishing fails, nothing changes and the error propagates.
        """
        with self._connect() as conn, conn.transaction():
            row = conn.execute(
                "SELECT status, assignee, now() AS now FROM cases WHERE event_id = %s FOR UPDATE", (event_id,)
            ).fetchone()
            if row is None:
                return None
            after = move(row["status"], "resolve")
            if isinstance(after, Refused):
                return after
            label = label_for(row["now"])
            conn.execute(
                "UPDATE cases SET status = 'closed', disposition = %s, resolution = %s, resolved_by = %s, "
                "resolved_at = %s, assignee = coalesce(assignee, %s), updated_at = now() WHERE event_id = %s",
                (disposition, reason, actor, label.label_time, actor, event_id),
            )
            detail = {
                "disposition": disposition,
                "reason": reason,
                "label_time": label.label_time.isoformat(),
            }
            conn.execute(
                "INSERT INTO case_events (event_id, actor, action, detail) VALUES (%s, %s, 'resolve', %s)",
                (event_id, actor, Jsonb(detail)),
            )
            before = {"status": row["status"], "assignee": row["assignee"]}
            record_audit(conn, actor, "case.resolve", f"case/{event_id}", before, {"status": after, **detail})
            publish(label)
        return {"event_id": event_id, "status": after, **detail, "label_source": label.source}

    def queue_stats(self) -> dict[str, Any]:
        """Cases not closed and those past their due time, by level, and the age in
        seconds of the oldest case not closed."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT risk_level, count(*) AS n, count(*) FILTER (WHERE due_at < now()) AS overdue, "
                "extract(epoch FROM now() - min(created_at)) AS age "
                "FROM cases WHERE status <> 'closed' GROUP BY risk_level"
            ).fetchall()
        return {
            "open": {r["risk_level"]: int(r["n"]) for r in rows},
            "overdue": {r["risk_level"]: int(r["overdue"]) for r in rows},
            "oldest_age_s": max((float(r["age"]) for r in rows), default=0.0),
        }

    # -- transactions ----------------------------------------------------------------------
    def events(
        self, user_id: str | None, start: datetime | None, end: datetime | None, limit: int
    ) -> list[dict[str, Any]]:
        """Scored events, newest first, filtered by user and event time [start, end)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT s.event_id, s.user_id, s.event_time, s.amount::float8 AS amount, s.currency, "
                "s.merchant_name, s.country, s.city, s.device_id, s.fraud_score, s.risk_level, s.decision, "
                "s.triggered_rules, c.status AS case_status FROM scored_events s "
                "LEFT JOIN cases c ON c.event_id = s.event_id "
                "WHERE (%(user)s::text IS NULL OR s.user_id = %(user)s) "
                "AND (%(start)s::timestamptz IS NULL OR s.event_time >= %(start)s) "
                "AND (%(end)s::timestamptz IS NULL OR s.event_time < %(end)s) "
                "ORDER BY s.event_time DESC, s.event_id LIMIT %(limit)s",
                {"user": user_id, "start": start, "end": end, "limit": limit},
            ).fetchall()
        return [_json(r) for r in rows]

    # -- analysts --------------------------------------------------------------------------
    def add_analyst(self, name: str, role: str, token: str, created_by: str) -> bool:
        """False when the name is taken by an active analyst."""
        with self._connect() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO analysts (name, role, token_sha256, created_by) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, "
                "token_sha256 = EXCLUDED.token_sha256, "
                "created_at = now(), created_by = EXCLUDED.created_by, revoked_at = NULL "
                "WHERE analysts.revoked_at IS NOT NULL RETURNING name",
                (name, role, token_sha256(token), created_by),
            ).fetchone()
            if row is not None:
                record_audit(conn, created_by, "analyst.add", f"analyst/{name}", None, {"role": role})
        return row is not None

    def revoke_analyst(self, name: str, actor: str) -> bool:
        with self._connect() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE analysts SET revoked_at = now() "
                "WHERE name = %s AND revoked_at IS NULL RETURNING role",
                (name,),
            ).fetchone()
            if row is not None:
                record_audit(conn, actor, "analyst.revoke", f"analyst/{name}", {"role": row["role"]}, None)
        return row is not None

    def analysts(self) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT name, role, created_at, created_by, revoked_at FROM analysts ORDER BY name"
            ).fetchall()
        return [_json(r) for r in rows]

    def analyst_for(self, token: str) -> Analyst | None:
        """The active analyst holding ``token``."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT name, role FROM analysts WHERE token_sha256 = %s AND revoked_at IS NULL",
                (token_sha256(token),),
            ).fetchone()
        return Analyst(row) if row else None

    # -- list entries ----------------------------------------------------------------------
    def list_entries(self, name: str) -> dict[str, dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT value, added_by, reason, added_at FROM list_entries WHERE list = %s", (name,)
            ).fetchall()
        return {r["value"]: _json(r) for r in rows}

    def put_entry(self, name: str, value: str, reason: str, actor: str, write: Callable[[], object]) -> None:
        """Record who added ``value`` and why; ``write`` (the Redis change) runs inside the transaction."""
        with self._connect() as conn, conn.transaction():
            before = conn.execute(
                "SELECT added_by, reason FROM list_entries WHERE list = %s AND value = %s", (name, value)
            ).fetchone()
            conn.execute(
                "INSERT INTO list_entries (list, value, added_by, reason) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (list, value) DO UPDATE SET added_by = EXCLUDED.added_by, "
                "reason = EXCLUDED.reason, added_at = now()",
                (name, value, actor, reason),
            )
            record_audit(conn, actor, "list.add", f"list/{name}/{value}", before, {"reason": reason})
            write()

    def delete_entry(self, name: str, value: str, actor: str, write: Callable[[], object]) -> None:
        with self._connect() as conn, conn.transaction():
            before = conn.execute(
                "DELETE FROM list_entries WHERE list = %s AND value = %s RETURNING added_by, reason",
                (name, value),
            ).fetchone()
            record_audit(
                conn, actor, "list.remove", f"list/{name}/{value}", before or {"added_by": None}, None
            )
            write()

    # -- audit -----------------------------------------------------------------------------
    def audit(
        self, limit: int, actor: str | None, subject_prefix: str | None, before_id: int | None
    ) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return read_audit(conn, limit, actor, subject_prefix, before_id)
