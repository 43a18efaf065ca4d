"""Cases: what an alert becomes in the review queue, and the moves a case can make.

Pure logic over plain data; :mod:`apps.console.store` keeps cases in Postgres.

>>> from datetime import UTC, datetime
>>> case = new_case({"event_id": "e1", "user_id": "u1", "fraud_score": 91.5, "risk_level": "HIGH",
...                  "decision": "block", "scored_at": "2026-11-27T10:00:00Z"}, {"HIGH": 60, "MEDIUM": 480})
>>> (case.priority, case.due_at.isoformat())
(1092, '2026-11-27T11:00:00+00:00')
>>> new_case({"event_id": "e2", "risk_level": "LOW"}, {"HIGH": 60, "MEDIUM": 480}).error
'risk_level: LOW alerts do not become cases'
>>> move("closed", "assign").reason
'a closed case cannot be assigned'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "DISPOSITIONS",
    "STATUSES",
    "InvalidAlert",
    "NewCase",
    "NotAllowed",
    "Refused",
    "may_reassign",
    "move",
    "new_case",
    "priority",
]

STATUSES = ("open", "assigned", "closed")
DISPOSITIONS = ("fraud", "legitimate")


@dataclass(frozen=True, slots=True)
class NewCase:
    """A case as it enters the queue."""

    event_id: str
    user_id: str
    risk_level: str
    fraud_score: float
    priority: int
    decision: str
    decided_at: datetime
    due_at: datetime
    alert: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class InvalidAlert:
    """An alert that cannot become a case, and why (``field: reason``)."""

    error: str


def priority(risk_level: str, fraud_score: float) -> int:
    """Queue order: every HIGH case before every MEDIUM one, then by score.

    >>> priority("HIGH", 75.0) > priority("MEDIUM", 100.0)
    True
    """
    return (1000 if risk_level == "HIGH" else 0) + round(fraud_score)


def new_case(alert: Mapping[str, Any], sla_minutes: Mapping[str, float]) -> NewCase | InvalidAlert:
    """The case for one alert (the contract's alert record), or why it cannot be one."""
    level = alert.get("risk_level")
    if level not in ("MEDIUM", "HIGH"):
        return InvalidAlert(f"risk_level: {level} alerts do not become cases")
    event_id, user_id = alert.get("event_id"), alert.get("user_id")
    if not isinstance(event_id, str) or not event_id:
        return InvalidAlert("event_id: missing")
    if not isinstance(user_id, str) or not user_id:
        return InvalidAlert("user_id: missing")
    score = alert.get("fraud_score")
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 100:
        return InvalidAlert(f"fraud_score: {score!r} is not a score in [0, 100]")
    try:
        decided = datetime.fromisoformat(str(alert.get("scored_at")))
    except ValueError:
        return InvalidAlert(f"scored_at: {alert.get('scored_at')!r} is not an RFC 3339 time")
    if decided.tzinfo is None:
        return InvalidAlert("scored_at: has no UTC offset")
    return NewCase(
        event_id,
        user_id,
        level,
        float(score),
        priority(level, float(score)),
        str(alert.get("decision", "review")),
        decided,
        decided + timedelta(minutes=sla_minutes[level]),
        alert,
    )


_MOVES: dict[tuple[str, str], str] = {
    ("open", "assign"): "assigned",
    ("assigned", "assign"): "assigned",
    ("assigned", "unassign"): "open",
    ("open", "resolve"): "closed",
    ("assigned", "resolve"): "closed",
}


@dataclass(frozen=True, slots=True)
class Refused:
    """A move the case's status does not allow, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class NotAllowed:
    """A move this analyst's role does not allow, and why."""

    reason: str


def may_reassign(current: str | None, actor: str, is_admin: bool) -> NotAllowed | None:
    """Analysts change the assignment of a free case or their own; admins of any.

    >>> may_reassign("bob", "ana", is_admin=False).reason
    "the case is bob's: only bob or an admin can reassign it"
    >>> may_reassign(None, "ana", is_admin=False), may_reassign("bob", "root", is_admin=True)
    (None, None)
    """
    if is_admin or current in (None, actor):
        return None
    return NotAllowed(f"the case is {current}'s: only {current} or an admin can reassign it")


def move(status: str, action: str) -> str | Refused:
    """The status after ``action``, or why it is refused.

    >>> move("open", "assign"), move("assigned", "resolve")
    ('assigned', 'closed')
    >>> move("open", "unassign").reason
    'an open case cannot be unassigned'
    """
    after = _MOVES.get((status, action))
    if after is not None:
        return after
    verb = {"assign": "assigned", "unassign": "unassigned", "resolve": "resolved"}.get(action, action)
    return Refused(f"a{'n' if status[0] in 'aeiou' else ''} {status} case cannot be {verb}")
