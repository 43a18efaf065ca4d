"""Wire formats of what the job writes: alert JSON and the ``scored_events`` row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from operators.scoring import ScoredEvent

__all__ = [
    "EVENT_COLUMNS",
    "SCORED_EVENT_COLUMNS",
    "SCORED_EVENT_COPY_TYPES",
    "alert_record",
    "decision_record",
    "encode_alert",
    "encode_decision",
    "scored_event_row",
]

_JSON = msgspec.json.Encoder()


def _verdict(s: ScoredEvent) -> dict[str, Any]:
    v = s.verdict
    return {
        "event_id": s.event.event_id,
        "user_id": s.event.user_id,
        "fraud_score": v.fraud_score,
        "risk_level": v.risk_level,
        "decision": v.decision,
        "is_blocked": v.is_blocked,
        "triggered_rules": [h.rule for h in s.hits],
        "reasons": [h.reason for h in s.hits],
        "scores": v.scores,
        "model_version": s.model_version,
        "rules_version": s.rules_version,
    }


def alert_record(s: ScoredEvent) -> dict[str, Any]:
    """The alert as the contract describes it (docs/contract.md)."""
    return {**_verdict(s), "event": s.event, "scored_at": s.scored_at}


def encode_alert(s: ScoredEvent) -> tuple[bytes, bytes, int | None]:
    return s.event.user_id.encode(), _JSON.encode(alert_record(s)), s.ingest_ms


def decision_record(s: ScoredEvent) -> dict[str, Any]:
    """Every decision, compact (no event echo): what a synchronous caller needs."""
    record = {**_verdict(s), "scored_at": s.scored_at, "processing_ms": s.processing_ms}
    if s.request_id is not None:
        record["request_id"] = s.request_id
    return record


class _Decision(msgspec.Struct, omit_defaults=True):
    """:func:`decision_record` as a struct, for :func:`encode_decision`: the same JSON
    (fields in the record's order, ``request_id`` only when there is one) without two
    dicts per event."""

    event_id: str
    user_id: str
    fraud_score: float
    risk_level: str
    decision: str
    is_blocked: bool
    triggered_rules: list[str]
    reasons: list[str]
    scores: dict[str, float | None]
    model_version: str
    rules_version: int | None
    scored_at: datetime
    processing_ms: float
    request_id: str | None = None


def encode_decision(s: ScoredEvent) -> tuple[bytes, bytes, int | None]:
    """The decisions topic's message: key, :func:`decision_record` as JSON, timestamp."""
    ev, v, hits = s.event, s.verdict, s.hits
    record = _Decision(
        ev.event_id,
        ev.user_id,
        v.fraud_score,
        v.risk_level,
        v.decision,
        v.is_blocked,
        [h.rule for h in hits] if hits else [],
        [h.reason for h in hits] if hits else [],
        v.scores,
        s.model_version,
        s.rules_version,
        s.scored_at,
        s.processing_ms,
        s.request_id,
    )
    return ev.event_id.encode(), _JSON.encode(record), s.ingest_ms


EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "amount",
    "currency",
    "event_time",
    "merchant_name",
    "merchant_category",
    "latitude",
    "longitude",
    "country",
    "city",
    "device_id",
    "ip_address",
    "user_agent",
    "attributes",
    "merchant_id",
)
"""The input event's columns in ``scored_events`` (``event_time`` holds ``timestamp``)."""

SCORED_EVENT_COLUMNS: tuple[str, ...] = (
    *EVENT_COLUMNS,
    "fraud_score",
    "risk_level",
    "decision",
    "is_blocked",
    "triggered_rules",
    "reasons",
    "rules_score",
    "isolation_forest_score",
    "autoencoder_score",
    "supervised_score",
    "model_version",
    "features",
    "ingested_at",
    "scored_at",
    "processing_ms",
    "challenger_version",
    "challenger_score",
    "rules_version",
    "shadow_rules_version",
    "shadow_rules_score",
    "shadow_triggered_rules",
)


_JSONB = "bytea"
"""A jsonb column in a binary COPY: its binary form (version byte 1, then the JSON
text) is written as it is, so the bytes go through psycopg's pass-through dumper."""
_JSON_TEXT = "bytea"
"""A json column (``features``, migration 008) in a binary COPY: its binary form is the
JSON text itself, written as it is."""

_COPY_TYPES = {
    "amount": "numeric",
    "event_time": "timestamptz",
    "ingested_at": "timestamptz",
    "scored_at": "timestamptz",
    **dict.fromkeys(("latitude", "longitude"), "float8"),
    **dict.fromkeys(
        ("fraud_score", "rules_score", "isolation_forest_score", "autoencoder_score", "supervised_score"),
        "float4",
    ),
    **dict.fromkeys(("processing_ms", "challenger_score", "shadow_rules_score"), "float4"),
    **dict.fromkeys(("rules_version", "shadow_rules_version"), "int4"),
    "is_blocked": "bool",
    **dict.fromkeys(("attributes", "triggered_rules", "reasons", "shadow_triggered_rules"), _JSONB),
    "features": _JSON_TEXT,
}

SCORED_EVENT_COPY_TYPES: tuple[str, ...] = tuple(_COPY_TYPES.get(c, "text") for c in SCORED_EVENT_COLUMNS)
"""What a binary ``COPY scored_events (SCORED_EVENT_COLUMNS)`` is told each column
holds (``Copy.set_types``) for the values of ``scored_event_row(s, binary=True)``;
text unless named (``char(n)`` columns take text too)."""


def _json_text(value: object) -> str:
    return _JSON.encode(value).decode()


def _jsonb_binary(value: object) -> bytes:
    return b"\x01" + _JSON.encode(value)


_EMPTY_JSONB = b"\x01[]"
_EMPTY_JSON_TEXT = "[]"


def _cents(amount: float) -> Decimal:
    """``amount`` rounded to cents as ``round(amount, 2)`` rounds it (from its exact value:
    ``%.2f`` formatting rounds the float's exact value half to even, as ``round`` of its
    exact ``Decimal`` does, at half the cost)."""
    return Decimal(f"{amount:.2f}")


def scored_event_row(s: ScoredEvent, binary: bool = False) -> tuple[Any, ...]:
    """Values for ``SCORED_EVENT_COLUMNS``: json and jsonb columns as JSON text and the
    amount rounded to cents, for a query or a text COPY; with ``binary``, for a binary COPY
    typed ``SCORED_EVENT_COPY_TYPES`` (jsonb in its binary form, json as its text, the
    amount a Decimal).

    Binary is what the job's sink writes: a datetime or a float costs psycopg 0.2-0.8 µs
    to format as text and 0.02-0.03 µs as binary, and the server parses less."""
    ev, v, loc, shadow, hits = s.event, s.verdict, s.event.location, s.shadow_rules, s.hits
    js = _jsonb_binary if binary else _json_text
    empty = _EMPTY_JSONB if binary else _EMPTY_JSON_TEXT
    scores = v.scores
    return (
        ev.event_id,
        ev.user_id,
        _cents(ev.amount) if binary else round(ev.amount, 2),
        ev.currency,
        ev.timestamp,
        ev.merchant_name,
        ev.merchant_category,
        loc.latitude if loc else None,
        loc.longitude if loc else None,
        loc.country if loc else None,
        loc.city if loc else None,
        ev.device_id,
        ev.ip_address,
        ev.user_agent,
        js(ev.attributes),
        ev.merchant_id,
        v.fraud_score,
        v.risk_level,
        v.decision,
        v.is_blocked,
        js([h.rule for h in hits]) if hits else empty,
        js([h.reason for h in hits]) if hits else empty,
        scores.get("rules"),
        scores.get("isolation_forest"),
        scores.get("autoencoder"),
        scores.get("supervised"),
        s.model_version,
        _JSON.encode(s.features) if binary else _json_text(s.features),
        datetime.fromtimestamp(s.ingest_ms / 1000.0, UTC) if s.ingest_ms else None,
        s.scored_at,
        s.processing_ms,
        s.challenger[0] if s.challenger else None,
        s.challenger[1] if s.challenger else None,
        s.rules_version,
        shadow.version if shadow else None,
        shadow.fraud_score if shadow else None,
        js(shadow.triggered) if shadow else None,
    )
