"""``fraudstream rules compare``: what the shadow rule set would have done beside the active one.

Over the scored events that carry a shadow score in a window, for the set that
decided and the shadow set: alerts (score at or above the MEDIUM threshold),
blocks (HIGH), precision and recall against the labels known now (an event's
latest label; unlabelled events count as legitimate), per-rule hits, and how
many decisions would change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from operators.ensemble import risk_level

__all__ = ["CompareRow", "compare", "fetch_compare_rows"]


@dataclass(frozen=True, slots=True)
class CompareRow:
    rules_version: int | None
    shadow_version: int
    score: float
    shadow_score: float
    rules: tuple[str, ...]
    shadow_rules: tuple[str, ...]
    is_fraud: bool | None


_QUERY = """
SELECT s.rules_version, s.shadow_rules_version, s.fraud_score, s.shadow_rules_score,
       s.triggered_rules, s.shadow_triggered_rules, l.is_fraud
FROM scored_events s
LEFT JOIN LATERAL (
    SELECT is_fraud FROM labels WHERE labels.event_id = s.event_id ORDER BY label_time DESC LIMIT 1
) l ON true
WHERE s.shadow_rules_version IS NOT NULL AND s.scored_at >= %(since)s AND s.scored_at < %(until)s
"""


def fetch_compare_rows(database_url: str, since: datetime, until: datetime) -> list[CompareRow]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(_QUERY, {"since": since, "until": until}).fetchall()
    return [
        CompareRow(r[0], int(r[1]), float(r[2]), float(r[3]), tuple(r[4] or ()), tuple(r[5] or ()), r[6])
        for r in rows
    ]


def _side(scores: list[float], fraud: list[bool], medium: float, high: float) -> dict[str, Any]:
    alerts = [s >= medium for s in scores]
    n_alerts, n_frauds = sum(alerts), sum(fraud)
    caught = sum(a and f for a, f in zip(alerts, fraud, strict=True))
    return {
        "alerts": n_alerts,
        "blocks": sum(s >= high for s in scores),
        "precision": caught / n_alerts if n_alerts else None,
        "recall": caught / n_frauds if n_frauds else None,
    }


def compare(rows: Iterable[CompareRow], medium: float = 40.0, high: float = 70.0) -> dict[str, Any]:
    """The comparison report (plain data) of ``rows``.

    >>> rows = [CompareRow(1, 2, 10.0, 65.0, (), ("big",), True),
    ...         CompareRow(1, 2, 45.0, 0.0, ("a",), (), False)]
    >>> r = compare(rows)
    >>> (r["active"]["alerts"], r["shadow"]["alerts"], r["shadow"]["precision"], r["changed_decisions"])
    (1, 1, 1.0, 2)
    """
    rows = list(rows)
    fraud = [bool(r.is_fraud) for r in rows]

    return {
        "events": len(rows),
        "labelled_frauds": sum(fraud),
        "versions": sorted({(r.rules_version, r.shadow_version) for r in rows}, key=str),
        "active": _side([r.score for r in rows], fraud, medium, high),
        "shadow": _side([r.shadow_score for r in rows], fraud, medium, high),
        "changed_decisions": sum(
            risk_level(r.score, medium, high) != risk_level(r.shadow_score, medium, high) for r in rows
        ),
        "rule_hits": {
            "active": dict(Counter(name for r in rows for name in r.rules).most_common()),
            "shadow": dict(Counter(name for r in rows for name in r.shadow_rules).most_common()),
        },
    }
