"""The batch-native flow against a straightforward per-event implementation of
the contract: for generated workloads with events out of order within a day,
re-used event ids (identical and different payloads), invalid payloads and
blocklisted devices, every event gets exactly the features, rule hits and
verdict the per-event reference gives, the same alerts, and the same dead
letters, with one and two workers and any batch size.

One exception, by design: with several workers, a merchant's (or device's)
events from other users reach its window in the order the workers hand them
over, so a window may miss events of earlier days that were polled in the same
batch as a later one (a fast replay packs days into one poll; live traffic
does not). The window never sees the future either way. With one worker the
merchant and device windows are exact too; the user's own window always is.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.replay.workload import generate
from flows.config import Settings
from flows.fraud import Providers
from models.base import RULES_ONLY
from operators.ensemble import combine
from operators.entity_risk import RiskWindow
from operators.events import TransactionEvent, decode_event
from operators.features import update_profile
from operators.labels import ENTITY_KEYS
from operators.rules import Blocklists, RuleContext, evaluate_rules
from operators.state import UserState
from operators.validation import Accepted
from tests.support import run_flow

NOW = 1_800_000_000.0
BLOCKLISTS = Blocklists(devices=frozenset({"dev-000003-0", "dev-000011-0"}))


def workload(seed: int, events: int, dup_share: float, jitter_s: float) -> list[tuple[bytes | None, bytes]]:
    """Generated traffic; events shuffled within ``jitter_s`` (never across midnight),
    a share of them re-sent (identically or with another amount) right after."""
    rng = random.Random(seed)
    w = generate(events=events, users=max(5, events // 12), fraud_share=0.2, malformed=6, seed=seed)
    msgs: list[tuple[float, bytes | None, bytes]] = []
    for key, value in w.messages:
        try:
            ev = json.loads(value)
            ts = datetime.fromisoformat(ev["timestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            msgs.append((rng.random() * 1e12, key, value))
            continue
        day_end = (ts // 86_400 + 1) * 86_400
        msgs.append((min(ts + rng.uniform(0, jitter_s), day_end - 1e-3), key, value))
        if rng.random() < dup_share:
            numeric = isinstance(ev.get("amount"), int | float)
            other = json.dumps({**ev, "amount": ev["amount"] * 9 + 1}).encode() if numeric else value
            again = value if rng.random() < 0.5 else other
            msgs.append((msgs[-1][0] + 1e-6, key, again))
    msgs.sort(key=lambda m: m[0])
    return [(k, v) for _, k, v in msgs]


def reference(messages: list[tuple[bytes | None, bytes]], s: Settings) -> dict[str, Any]:
    """One event at a time, in arrival order, straight from the contract."""
    limits, cfg, risk = s.validation.config(), s.state.config(), s.entity_risk.config()
    states: dict[str, Any] = {}
    windows: dict[tuple[str, str], RiskWindow] = {}
    seen: set[str] = set()
    ctx = RuleContext(s.rules, BLOCKLISTS)
    out: dict[str, Any] = {"scored": {}, "dead": 0, "duplicates": 0}
    for _, value in messages:
        ev = decode_event(value, limits, datetime.fromtimestamp(NOW, UTC))
        if not isinstance(ev, TransactionEvent):
            out["dead"] += 1
            continue
        if ev.event_id in seen:
            out["duplicates"] += 1
            continue
        seen.add(ev.event_id)
        ts = ev.timestamp.timestamp()
        state = states.setdefault(ev.user_id, UserState())
        item = update_profile(state, Accepted(ev, ts, None, NOW), cfg)
        for kind in s.entity_risk.entities:
            key = ENTITY_KEYS[kind](ev)
            if key is not None:
                window = windows.setdefault((kind, key), RiskWindow())
                item.features.risk.update(window.features(ts, risk, f"{kind}_"))
                window.add_event(ts, risk)
        hits = evaluate_rules(ev, item.features, ctx)
        out["scored"][ev.event_id] = (item.features, [h.rule for h in hits], combine(hits, {}, s.ensemble))
    return out


def _own(features: Any) -> Any:
    """The features that depend on the user's own events only."""
    risk = {k: v for k, v in features.risk.items() if k.startswith("user_")}
    return msgspec.structs.replace(features, risk=risk)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    events=st.integers(50, 400),
    dup_share=st.sampled_from([0.0, 0.05, 0.3]),
    jitter_s=st.sampled_from([0.0, 120.0, 3_600.0]),
    batch_size=st.sampled_from([1, 7, 500]),
    workers=st.sampled_from([1, 2]),
)
def test_the_batch_path_gives_the_per_event_reference(seed, events, dup_share, jitter_s, batch_size, workers):
    s = Settings.model_validate({"state": {"shards": 8}})
    messages = workload(seed, events, dup_share, jitter_s)
    want = reference(messages, s)
    got = run_flow(
        messages,
        workers=workers,
        settings=s,
        batch_size=batch_size,
        providers=Providers(models=lambda: RULES_ONLY, blocklists=lambda: BLOCKLISTS, clock=lambda: NOW),
    )
    scored = {x.event.event_id: x for x in got["scored"]}
    assert len(scored) == len(got["scored"]) == len(want["scored"])
    for event_id, (features, rules, verdict) in want["scored"].items():
        x = scored[event_id]
        if workers == 1:
            assert x.features == features, event_id
        else:
            assert _own(x.features) == _own(features), event_id
        assert [h.rule for h in x.hits] == rules and x.verdict == verdict, event_id
    assert {a.event.event_id for a in got["alerts"]} == {
        e for e, (_, _, v) in want["scored"].items() if v.risk_level != "LOW"
    }
    duplicates = [d for d in got["dlq"] if d.error.startswith("event_id: duplicate")]
    assert len(duplicates) == want["duplicates"] and len(got["dlq"]) == want["dead"] + want["duplicates"]
