"""Cases as pure logic: which alerts become cases, their priority and due time, and
the moves a status allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.console.cases import (
    STATUSES,
    InvalidAlert,
    NewCase,
    Refused,
    may_reassign,
    move,
    new_case,
    priority,
)

SLA = {"HIGH": 60.0, "MEDIUM": 480.0}
ALERT = {
    "event_id": "e1",
    "user_id": "u1",
    "fraud_score": 55.0,
    "risk_level": "MEDIUM",
    "decision": "review",
    "scored_at": "2026-11-27T10:00:00.5+00:00",
}


def test_a_medium_alert_is_due_after_its_sla():
    case = new_case(ALERT, SLA)
    assert isinstance(case, NewCase)
    assert case.due_at - case.decided_at == timedelta(hours=8)
    assert case.decided_at == datetime(2026, 11, 27, 10, 0, 0, 500_000, tzinfo=UTC)
    assert case.alert is ALERT


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"risk_level": "LOW"}, "risk_level: LOW alerts do not become cases"),
        ({"event_id": ""}, "event_id: missing"),
        ({"user_id": None}, "user_id: missing"),
        ({"fraud_score": "90"}, "fraud_score: '90' is not a score in [0, 100]"),
        ({"fraud_score": True}, "fraud_score: True is not a score in [0, 100]"),
        ({"fraud_score": 101}, "fraud_score: 101 is not a score in [0, 100]"),
        ({"scored_at": "yesterday"}, "scored_at: 'yesterday' is not an RFC 3339 time"),
        ({"scored_at": "2026-11-27T10:00:00"}, "scored_at: has no UTC offset"),
    ],
)
def test_a_bad_alert_is_an_error_value_naming_the_field(change, error):
    assert new_case({**ALERT, **change}, SLA) == InvalidAlert(error)


def test_priority_puts_every_high_before_every_medium_then_orders_by_score():
    ordered = sorted(
        [("MEDIUM", 69.9), ("HIGH", 70.0), ("HIGH", 99.0), ("MEDIUM", 40.0)], key=lambda c: -priority(*c)
    )
    assert ordered == [("HIGH", 99.0), ("HIGH", 70.0), ("MEDIUM", 69.9), ("MEDIUM", 40.0)]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("action", ["assign", "unassign", "resolve"])
def test_every_move_lands_on_a_status_or_says_why_not(status, action):
    after = move(status, action)
    if status == "closed" or (status == "open" and action == "unassign"):
        assert isinstance(after, Refused) and status in after.reason
    else:
        assert after in STATUSES


@pytest.mark.parametrize(
    ("current", "actor", "admin", "allowed"),
    [
        (None, "ana", False, True),
        ("ana", "ana", False, True),
        ("bob", "ana", False, False),
        ("bob", "root", True, True),
    ],
)
def test_analysts_reassign_free_or_own_cases_admins_any(current, actor, admin, allowed):
    assert (may_reassign(current, actor, admin) is None) == allowed
