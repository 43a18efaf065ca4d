"""Helpers shared by the tests (fixtures stay in ``conftest.py``): events,
settings isolated per test, reading topics, the in-process flow, scored
events for sink tests, and the data in ``../shared``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from confluent_kafka import Consumer, TopicPartition

from apps.replay.workload import generate
from bench.harness import isolated_settings
from flows.config import Settings
from flows.fraud import FlowSinks, Providers, build_flow
from infra.stack import StackInfo
from models.base import RULES_ONLY
from operators.ensemble import EnsembleConfig
from operators.events import Location, TransactionEvent, decode_event
from operators.features import update_profile
from operators.rules import Blocklists, RulesConfig
from operators.rulesets import RuleSet
from operators.scoring import ScoredEvent, score_batch
from operators.state import StateLimits, UserState
from operators.validation import Accepted, Message, RawBatch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (../shared/data is absent on a fresh clone)")
    return path


def new_settings(stack: StackInfo, name: str, **overrides: Any) -> Settings:
    """Settings with unique topic names and a fresh database."""
    return isolated_settings(stack, name, **overrides)


def event(
    event_id: str,
    user_id: str = "u1",
    amount: float = 25.0,
    ts: str | datetime = "2025-06-02T12:00:00+00:00",
    **extra: Any,
) -> dict[str, Any]:
    """A valid input event as a dict (tests tweak it)."""
    if isinstance(ts, datetime):
        ts = ts.astimezone(UTC).isoformat() if ts.tzinfo else ts.isoformat()
    return {"event_id": event_id, "user_id": user_id, "amount": amount, "timestamp": ts, **extra}


def encode(ev: dict[str, Any]) -> bytes:
    return json.dumps(ev).encode()


def events_of(
    seed: int, events: int, users: int, fraud_share: float
) -> tuple[list[TransactionEvent], dict[str, str]]:
    """Valid events of a generated workload, and its labels."""
    w = generate(events=events, users=users, fraud_share=fraud_share, malformed=0, seed=seed)
    decoded = [decode_event(v) for _, v in w.messages]
    return [e for e in decoded if isinstance(e, TransactionEvent)], w.labels


def consume(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 30
) -> list[tuple[bytes | None, dict]]:
    """Read a topic until ``expected`` records arrived (or the timeout), then 1 s more."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[bytes | None, dict]] = []
    deadline = time.monotonic() + timeout_s
    settle = None
    while time.monotonic() < deadline:
        out += [(m.key(), json.loads(m.value())) for m in consumer.consume(500, 0.2) if m.error() is None]
        if len(out) >= expected:
            settle = settle or time.monotonic() + 1.0
            if time.monotonic() > settle:
                break
    consumer.close()
    return out


def run_flow(
    messages: list[tuple[bytes | None, bytes]],
    workers: int = 1,
    providers: Providers | None = None,
    settings: Settings | None = None,
    batch_size: int = 500,
) -> dict[str, list[Any]]:
    """The job's dataflow in process: ``messages`` as one partition polled
    ``batch_size`` at a time; the outputs of every sink by name."""
    msgs = [
        Message(k, v, topic="tx", partition=0, offset=i, timestamp=(1, 1_700_000_000_000))
        for i, (k, v) in enumerate(messages)
    ]
    batches = [RawBatch.of(msgs[i : i + batch_size]) for i in range(0, len(msgs), batch_size)]
    out: dict[str, list[Any]] = {k: [] for k in ("scored", "alerts", "risk", "dlq")}
    flow = build_flow(
        TestingSource(batches),
        FlowSinks(*(TestingSink(out[k]) for k in ("scored", "alerts", "risk", "dlq"))),
        settings or Settings(),
        providers,
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)


def scored_events(n: int, users: int = 3, prefix: str = "e") -> list[ScoredEvent]:
    """``n`` scored events over ``users`` users; every 5th is in a blocked country."""
    states = [UserState() for _ in range(users)]
    featured = []
    for i in range(n):
        ts = T0 + timedelta(minutes=i)
        country = "KP" if i % 5 == 4 else "US"
        ev = TransactionEvent(
            f"{prefix}{i}",
            f"user-{i % users}",
            10.0 + i + 0.005,
            ts,
            location=Location(40.7, -74.0, country, "City"),
            device_id="d1",
            merchant_name='O\'Hare "Café"\t\\x',
            attributes={"k": i},
        )
        featured.append(
            update_profile(
                states[i % users],
                Accepted(ev, ts.timestamp(), int(ts.timestamp() * 1000), ts.timestamp()),
                StateLimits(),
            )
        )
    return score_batch(
        featured,
        RULES_ONLY,
        RuleSet.from_config(RulesConfig()),
        Blocklists(),
        EnsembleConfig(),
        (T0 + timedelta(hours=1)).timestamp(),
    )


def days_ago(events: list[ScoredEvent], days: int) -> list[ScoredEvent]:
    """The same scored events, moved to noon (UTC) ``days`` days before today, a second apart."""
    at = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=days)
    return [
        msgspec.structs.replace(
            s, event=msgspec.structs.replace(s.event, timestamp=at + timedelta(seconds=i))
        )
        for i, s in enumerate(events)
    ]
