"""The dataflow in-process, with Bytewax's testing source and sinks."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from apps.replay.workload import SCENARIO_RULES, generate
from flows.config import Settings
from flows.fraud import Providers
from operators.rules import Blocklists
from tests.support import encode, event
from tests.support import run_flow as run


@pytest.fixture(scope="module")
def workload():
    return generate(events=6000, users=600, fraud_share=0.2, malformed=24, seed=11)


@pytest.fixture(scope="module")
def outputs(workload):
    return run(workload.messages)


def test_every_event_is_scored_once_or_dead_lettered(workload, outputs):
    ids = [s.event.event_id for s in outputs["scored"]]
    assert len(ids) == len(set(ids)) == workload.valid
    assert len(outputs["dlq"]) == workload.malformed


def test_every_injected_pattern_is_flagged_with_its_rules(workload, outputs):
    by_id = {s.event.event_id: s for s in outputs["scored"]}
    per_scenario = Counter(workload.labels.values())
    assert set(per_scenario) == set(SCENARIO_RULES)
    for event_id, scenario in workload.labels.items():
        fired = {h.rule for h in by_id[event_id].hits}
        assert SCENARIO_RULES[scenario] <= fired, (scenario, fired)


def test_blocked_countries_are_high_and_takeovers_at_least_medium(workload, outputs):
    by_id = {s.event.event_id: s for s in outputs["scored"]}
    for event_id, scenario in workload.labels.items():
        level = by_id[event_id].verdict.risk_level
        if scenario == "blocked_country":
            assert level == "HIGH" and by_id[event_id].verdict.is_blocked
        if scenario == "takeover":
            assert level in {"MEDIUM", "HIGH"}


def test_alerts_are_exactly_the_medium_and_high_events(outputs):
    expected = {s.event.event_id for s in outputs["scored"] if s.verdict.risk_level != "LOW"}
    assert {s.event.event_id for s in outputs["alerts"]} == expected
    assert expected


def test_without_models_the_output_says_rules_only(outputs):
    s = outputs["scored"][0]
    assert s.model_version == "rules-only"
    assert s.verdict.scores["isolation_forest"] is None and s.verdict.scores["autoencoder"] is None


def test_dead_letters_keep_the_bytes_the_reason_and_the_source_position(workload, outputs):
    offsets = {i for i, (k, _) in enumerate(workload.messages) if k == b"malformed"}
    assert {d.offset for d in outputs["dlq"]} == offsets
    for d in outputs["dlq"]:
        assert d.topic == "tx" and d.partition == 0 and d.failed_at
        assert d.error.split(":")[0] in {
            "payload",
            "amount",
            "timestamp",
            "currency",
            "location.latitude",
            "event_id",
        }
    binary = [d for d in outputs["dlq"] if d.value_encoding == "base64"]
    assert binary, "non-UTF-8 payloads are kept as base64"


def test_two_workers_give_the_same_per_user_results(workload, outputs):
    two = run(workload.messages, workers=2)

    def key(s):
        return (
            s.event.event_id,
            s.verdict.fraud_score,
            tuple(h.rule for h in s.hits),
            s.features.events_24h,
            s.features.user_event_count,
        )

    assert sorted(map(key, two["scored"])) == sorted(map(key, outputs["scored"]))


def test_blocklist_changes_apply_to_later_batches():
    lists = {"current": Blocklists()}
    msgs = [
        (b"u1", encode(event(f"e{i}", device_id="dev-x", ts=f"2025-06-02T12:{i:02d}:00Z"))) for i in range(6)
    ]

    def blocklists() -> Blocklists:
        return lists["current"]

    out: list[Any] = []
    calls = {"n": 0}

    def models():
        calls["n"] += 1
        if calls["n"] == 2:
            lists["current"] = Blocklists(devices=frozenset({"dev-x"}))
        from models.base import RULES_ONLY

        return RULES_ONLY

    out = run(msgs, providers=Providers(models=models, blocklists=blocklists), batch_size=3)["scored"]
    flagged = ["device_blacklist" in {h.rule for h in s.hits} for s in out]
    assert flagged == [False] * 3 + [True] * 3


def test_allow_list_approves_whatever_fires_and_says_so():
    lists = Blocklists(
        users=frozenset({"u1", "u2"}), allowed_users=frozenset({"u1"}), allowed_devices=frozenset({"dev-ok"})
    )
    msgs = [
        (b"u1", encode(event("e1", "u1", location={"latitude": 39.0, "longitude": 125.7, "country": "KP"}))),
        (b"u2", encode(event("e2", "u2", device_id="dev-ok"))),
        (b"u3", encode(event("e3", "u3", device_id="dev-ok"))),
        (b"u2", encode(event("e4", "u2", ts="2025-06-02T12:05:00Z"))),
    ]
    out = {s.event.event_id: s for s in run(msgs, providers=Providers(blocklists=lambda: lists))["scored"]}
    for eid in ("e1", "e2"):
        v = out[eid].verdict
        assert (v.risk_level, v.decision, v.is_blocked) == ("LOW", "approve", False)
        assert v.fraud_score >= 75  # the score the allow list overrode is kept
        assert out[eid].hits[-1].rule == "allow_list"
    assert out["e2"].hits[-1].reason == "device 'dev-ok' is on the allow list"
    assert [h.rule for h in out["e3"].hits] == ["allow_list"]
    assert out["e4"].verdict.decision == "block"


def test_per_user_state_follows_each_user():
    msgs = []
    for i in range(7):
        msgs.append((b"a", encode(event(f"a{i}", "a", ts=f"2025-06-02T12:0{i}:00Z"))))
        msgs.append((b"b", encode(event(f"b{i}", "b", ts=f"2025-06-02T1{i}:00:00Z"))))
    scored = {s.event.event_id: s for s in run(msgs)["scored"]}
    assert scored["a6"].features.events_10m == 7
    assert "velocity_check" in {h.rule for h in scored["a6"].hits}
    assert scored["b6"].features.events_10m == 1
    assert scored["b6"].features.user_event_count == 6


def test_the_velocity_window_setting_reaches_the_job():
    msgs = [(b"a", encode(event(f"a{i}", "a", ts=f"2025-06-02T12:0{i}:00Z"))) for i in range(7)]
    short = Settings.model_validate({"rules": {"velocity_check": {"window_s": 120}}})
    scored = {s.event.event_id: s for s in run(msgs, settings=short)["scored"]}
    assert scored["a6"].features.events_10m == 7  # the model feature keeps its 10 minutes
    assert scored["a6"].features.velocity_events == 2  # after 12:04, up to 12:06
    assert "velocity_check" not in {h.rule for h in scored["a6"].hits}


@pytest.mark.parametrize("workers", [1, 2])
def test_waiting_micro_batches_score_everything_once(workload, outputs, workers):
    settings = Settings.model_validate({"scoring": {"max_batch_size": 64, "max_wait_ms": 5}})
    waited = run(workload.messages, workers=workers, settings=settings)
    assert sorted(s.event.event_id for s in waited["scored"]) == sorted(
        s.event.event_id for s in outputs["scored"]
    )
    by_id = {s.event.event_id: s.verdict.fraud_score for s in outputs["scored"]}
    assert all(by_id[s.event.event_id] == s.verdict.fraud_score for s in waited["scored"])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reused_event_id_gets_one_verdict_and_touches_no_state(workers):
    first = event("e1", "du", 10.0)
    other = {**first, "amount": 5000.0, "location": {"latitude": 39.0, "longitude": 125.7, "country": "KP"}}
    second = event("e2", "du", 20.0, "2025-06-02T12:01:00+00:00")
    later = event("e3", "du", 30.0, "2025-06-02T12:02:00+00:00")
    msgs = [(b"du", encode(e)) for e in (first, other, second, second, later)]
    out = run(msgs, workers=workers, batch_size=1)
    scored = {s.event.event_id: s for s in out["scored"]}
    assert sorted(scored) == ["e1", "e2", "e3"]
    assert scored["e1"].event.amount == 10.0 and scored["e1"].verdict.risk_level == "LOW"
    assert scored["e3"].features.user_event_count == 2  # the duplicates changed no state
    assert [a.event.event_id for a in out["alerts"]] == []
    dups = sorted(d.error.split(";")[0] for d in out["dlq"])
    assert dups == [
        "event_id: duplicate of an event already accepted (a different payload",
        "event_id: duplicate of an event already accepted (an identical re-send",
    ]
    assert {d.offset for d in out["dlq"]} == {1, 3}
