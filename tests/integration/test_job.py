"""The real job (subprocesses) on the real embedded broker, Postgres and Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
import redis

from apps.produce import produce_all
from apps.replay.workload import SCENARIO_RULES, Workload, generate
from flows.launcher import JobProcess as Job
from flows.launcher import start_job
from infra.topics import ensure_topics
from operators.redis_keys import BLOCKLIST_KEYS
from tests.support import consume, encode, event, new_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workload() -> Workload:
    return generate(events=3000, users=300, fraud_share=0.25, malformed=16, seed=5)


def _run(make_settings, tmp_path_factory, workload: Workload, processes: int) -> dict[str, Any]:
    settings = make_settings()
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: k.partitions})
    produce_all(k.bootstrap_servers, k.transactions_topic, workload.messages)
    job = start_job(settings, processes, tmp_path_factory.mktemp("job"))
    try:
        rows = job.wait_rows(workload.valid)
        time.sleep(1.0)  # let metrics and the last sink batches settle
        with psycopg.connect(settings.database_url) as conn:
            scored = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT event_id, fraud_score, risk_level, triggered_rules, (features->>'events_24h')::int,"
                    " (features->>'user_event_count')::int, user_id FROM scored_events"
                )
            }
        alerts_expected = sum(1 for v in scored.values() if v[1] != "LOW")
        alerts = consume(k.bootstrap_servers, k.alerts_topic, k.partitions, alerts_expected)
        dead = consume(k.bootstrap_servers, k.dlq_topic, k.partitions, workload.malformed)
        decisions = consume(k.bootstrap_servers, k.decisions_topic, k.partitions, workload.valid)
        return {
            "rows": rows,
            "scored": scored,
            "alerts": alerts,
            "dead": dead,
            "decisions": decisions,
            "metrics": job.metrics(),
            "events_only": job.metrics(("fraudstream_events_total",)),
            "settings": settings,
        }
    finally:
        job.stop()


@pytest.fixture(scope="module")
def runs(stack, tmp_path_factory, workload) -> dict[int, dict[str, Any]]:
    """The same workload through a 1-process and a 2-process job."""
    return {
        p: _run(lambda p=p: new_settings(stack, f"job{p}"), tmp_path_factory, workload, p)  # type: ignore[misc]
        for p in (1, 2)
    }


@pytest.mark.parametrize("processes", [1, 2])
def test_n_events_in_exactly_n_rows_out(runs, workload, processes):
    run = runs[processes]
    assert run["rows"] == workload.valid
    assert len(run["scored"]) == workload.valid


@pytest.mark.parametrize("processes", [1, 2])
def test_each_injected_pattern_is_flagged_with_its_rule(runs, workload, processes):
    scored = runs[processes]["scored"]
    for event_id, scenario in workload.labels.items():
        assert SCENARIO_RULES[scenario] <= set(scored[event_id][2]), (scenario, scored[event_id])


@pytest.mark.parametrize("processes", [1, 2])
def test_alerts_topic_holds_every_medium_and_high_event(runs, processes):
    run = runs[processes]
    expected = {eid for eid, v in run["scored"].items() if v[1] != "LOW"}
    got = [a for _, a in run["alerts"]]
    assert {a["event_id"] for a in got} == expected
    assert len(got) == len(expected)
    assert all(a["risk_level"] in {"MEDIUM", "HIGH"} and a["reasons"] for a in got)
    assert all(key == a["user_id"].encode() for key, a in run["alerts"])


@pytest.mark.parametrize("processes", [1, 2])
def test_decisions_topic_holds_every_decision_keyed_by_event_id(runs, processes):
    run = runs[processes]
    got = {a["event_id"]: (key, a) for key, a in run["decisions"]}
    assert len(run["decisions"]) == len(got) == len(run["scored"])
    for event_id, (key, d) in got.items():
        row = run["scored"][event_id]
        assert key == event_id.encode()
        assert (d["fraud_score"], d["risk_level"], d["triggered_rules"]) == (row[0], row[1], row[2])
        assert d["decision"] in {"approve", "review", "block"} and "event" not in d


@pytest.mark.parametrize("processes", [1, 2])
def test_malformed_events_reach_the_dlq_with_reasons(runs, workload, processes):
    dead = [d for _, d in runs[processes]["dead"]]
    assert len(dead) == workload.malformed
    topic = runs[processes]["settings"].kafka.transactions_topic
    for d in dead:
        assert d["error"] and ": " in d["error"]
        assert d["topic"] == topic and d["partition"] is not None and d["offset"] is not None
        assert d["failed_at"]


@pytest.mark.parametrize("processes", [1, 2])
def test_metrics_match_what_was_written(runs, workload, processes):
    run = runs[processes]
    m = run["metrics"]
    assert m[("fraudstream_events_total", (("outcome", "scored"),))] == workload.valid
    assert m[("fraudstream_events_total", (("outcome", "dead_lettered"),))] == workload.malformed
    levels = {lvl: sum(1 for v in run["scored"].values() if v[1] == lvl) for lvl in ("MEDIUM", "HIGH")}
    for level, count in levels.items():
        assert m.get(("fraudstream_alerts_total", (("level", level),)), 0) == count
    hits: dict[str, int] = {}
    for v in run["scored"].values():
        for rule in v[2]:
            hits[rule] = hits.get(rule, 0) + 1
    for rule, count in hits.items():
        assert m[("fraudstream_rule_hits_total", (("rule", rule),))] == count
    assert m[("fraudstream_end_to_end_latency_seconds_count", (("sink", "postgres"),))] == workload.valid
    assert m[("fraudstream_fraud_score_count", ())] == workload.valid
    assert m[("fraudstream_component_score_count", (("component", "rules"),))] == workload.valid
    assert m[("fraudstream_sink_records_total", (("sink", "alerts"),))] == sum(levels.values())
    assert not [k for k in m if any(name == "user_id" for name, _ in k[1])]


def test_two_processes_give_the_same_per_user_results_as_one(runs):
    assert runs[1]["scored"] == runs[2]["scored"]


def test_redis_holds_each_users_latest_risk(runs):
    scored = runs[1]["scored"]
    client = redis.Redis.from_url(runs[1]["settings"].redis_url, decode_responses=True)
    user = next(iter(scored.values()))[5]
    risk = client.hgetall(f"fraud:risk:{user}")
    assert risk and risk["event_id"] in scored and scored[risk["event_id"]][5] == user


def test_redis_blocklist_change_takes_effect_mid_stream(make_settings, tmp_path):
    settings = make_settings()
    k = settings.kafka
    device = f"dev-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(settings.redis_url)
    job: Job = start_job(settings, 1, tmp_path, FRAUDSTREAM__REDIS__BLOCKLIST_REFRESH_S="0.2")
    try:
        first = [
            (b"bl", encode(event(f"a{i}", "bl-user", device_id=device, ts=f"2025-06-02T0{i}:30:00+09:00")))
            for i in range(5)
        ]
        produce_all(k.bootstrap_servers, k.transactions_topic, first)
        assert job.wait_rows(5) == 5
        client.sadd(BLOCKLIST_KEYS["devices"], device)
        time.sleep(1.0)
        second = [
            (b"bl", encode(event(f"b{i}", "bl-user", device_id=device, ts=f"2025-06-02T1{i}:30:00+09:00")))
            for i in range(5)
        ]
        produce_all(k.bootstrap_servers, k.transactions_topic, second)
        assert job.wait_rows(10) == 10
    finally:
        job.stop()
        client.srem(BLOCKLIST_KEYS["devices"], device)
    with psycopg.connect(settings.database_url) as conn:
        rows = dict(
            conn.execute(
                "SELECT event_id, triggered_rules ? 'device_blacklist' AND risk_level = 'HIGH' "
                "FROM scored_events"
            ).fetchall()
        )
    assert rows == {**{f"a{i}": False for i in range(5)}, **{f"b{i}": True for i in range(5)}}


@pytest.mark.parametrize("processes", [1, 2])
def test_dlq_metric_counts_by_field(runs, workload, processes):
    m = runs[processes]["metrics"]
    by_field = {
        dict(labels)["field"]: v for (name, labels), v in m.items() if name == "fraudstream_dlq_events_total"
    }
    assert sum(by_field.values()) == workload.malformed
    assert set(by_field) <= {"payload", "amount", "timestamp", "currency", "location", "event_id"}


@pytest.mark.parametrize("processes", [1, 2])
def test_a_scrape_for_named_samples_gets_those_alone(runs, processes):
    run = runs[processes]
    assert run["events_only"] and {name for name, _ in run["events_only"]} == {"fraudstream_events_total"}
    assert run["events_only"] == {
        k: v for k, v in run["metrics"].items() if k[0] == "fraudstream_events_total"
    }


def test_model_hot_swap_mid_stream_loses_and_doubles_nothing(make_settings, tmp_path):
    from models.artifacts import ModelStore
    from models.training import TrainingConfig, train
    from operators.events import TransactionEvent, decode_event

    history = generate(events=3000, users=300, malformed=0, seed=21)
    events = [e for e in (decode_event(v) for _, v in history.messages) if isinstance(e, TransactionEvent)]
    config = TrainingConfig(epochs=3, n_estimators=20, device="cpu")
    models = tmp_path / "models"
    v1 = train(events[:1500], models, config, activate=True).version
    v2 = train(events, models, config).version
    settings = make_settings()
    k = settings.kafka
    job = start_job(
        settings, 1, tmp_path, FRAUDSTREAM_MODEL_DIR=str(models), FRAUDSTREAM__MODELS__REFRESH_S="0.2"
    )
    first = [
        (b"u", encode(event(f"a{i}", f"u{i % 7}", ts=f"2025-06-02T10:{i % 60:02d}:00Z"))) for i in range(300)
    ]
    second = [
        (b"u", encode(event(f"b{i}", f"u{i % 7}", ts=f"2025-06-02T12:{i % 60:02d}:00Z"))) for i in range(300)
    ]
    try:
        produce_all(k.bootstrap_servers, k.transactions_topic, first)
        assert job.wait_rows(300) == 300
        ModelStore(models).activate(v2)
        time.sleep(1.0)
        produce_all(k.bootstrap_servers, k.transactions_topic, second)
        assert job.wait_rows(600) == 600
        swapped = job.metrics()
    finally:
        job.stop()
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT left(event_id, 1), model_version, count(*), count(DISTINCT event_id), "
            "bool_and(isolation_forest_score IS NOT NULL AND autoencoder_score IS NOT NULL) "
            "FROM scored_events GROUP BY 1, 2 ORDER BY 1"
        ).fetchall()
    assert rows == [("a", v1, 300, 300, True), ("b", v2, 300, 300, True)]
    assert swapped[("fraudstream_model_info", (("version", v2),))] == 1
    assert swapped[("fraudstream_model_info", (("version", v1),))] == 0
