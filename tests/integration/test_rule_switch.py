"""A running two-process job switches rule-set versions between batches, without a restart.

Events before the switch are decided by the config file's rules, events after it by
the activated version (its custom rule fires on every one of them); a shadow version
is recorded beside each decision and changes none, and ``rules compare`` reports what
it would have done. Nothing is lost or scored twice.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from apps.cli import app
from apps.produce import produce_all
from flows.launcher import start_job
from flows.rulesets import RuleStore
from infra.migrations import apply_migrations
from infra.topics import ensure_topics
from operators.rulesets import RuleSetDocument
from tests.support import event

pytestmark = pytest.mark.integration

MARKER = RuleSetDocument.model_validate({"custom": [{"name": "marker", "when": "amount >= 0", "points": 1}]})
SHADOW = RuleSetDocument.model_validate(
    {"custom": [{"name": "shadow_big", "when": "amount > 100", "points": 60, "reason": "{amount} > 100"}]}
)


def produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    produce_all(bootstrap, topic, [(e["user_id"].encode(), json.dumps(e).encode()) for e in events])


def test_versions_switch_mid_stream_and_a_shadow_decides_nothing(make_settings, tmp_path):
    tag = uuid.uuid4().hex[:6]
    settings = make_settings(partitions=2)
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.transactions_topic: 2, k.dlq_topic: 2})
    apply_migrations(settings.database_url)
    store = RuleStore(settings.database_url)
    before = [event(f"b-{tag}-{i}", f"u-{tag}-b{i}", float(20 + i)) for i in range(150)]
    after = [event(f"a-{tag}-{i}", f"u-{tag}-a{i}", float(20 + i)) for i in range(150)]
    job = start_job(settings, 2, tmp_path, FRAUDSTREAM__SCORING__RULES_REFRESH_S="0.5")
    try:
        produce(k.bootstrap_servers, k.transactions_topic, before)
        assert job.wait_rows(150) == 150
        v1, _ = store.apply(MARKER, "ana", "mark every event")
        v2, _ = store.apply(SHADOW, "ana", "try a big-amount rule")
        store.point("shadow", v2, "ana")
        store.point("active", v1, "ana")
        time.sleep(1.5)  # > rules_refresh_s: every process re-reads before its next batch
        produce(k.bootstrap_servers, k.transactions_topic, after)
        assert job.wait_rows(300) == 300
        switches = sum(v for (n, _), v in job.metrics().items() if n == "fraudstream_ruleset_switches_total")
    finally:
        job.stop()
    with psycopg.connect(settings.database_url) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT event_id, rules_version, triggered_rules, fraud_score, risk_level, "
                "shadow_rules_version, shadow_rules_score, shadow_triggered_rules, amount FROM scored_events"
            )
        }
    assert len(rows) == 300
    for e in before:
        version, fired, score, *_ = rows[e["event_id"]]
        assert (version, fired, score) == (None, [], 0.0), e["event_id"]
    for e in after:
        version, fired, score, level, s_version, s_score, s_fired, amount = rows[e["event_id"]]
        assert (version, fired, score, level) == (v1, ["marker"], 1.0, "LOW"), e["event_id"]
        big = float(amount) > 100
        assert (s_version, s_score, s_fired) == (v2, 60.0 if big else 0.0, ["shadow_big"] if big else [])
    assert switches >= 2  # each process switched once

    # rules compare: what the shadow would have done, against labels known now
    frauds = [e["event_id"] for e in after if e["amount"] > 150]
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for event_id in frauds:
            conn.execute(
                "INSERT INTO labels (event_id, is_fraud, label_time, source) VALUES (%s, true, now(), 'test')",
                (event_id,),
            )
    env = {**os.environ, "DATABASE_URL": settings.database_url}
    env.pop("FRAUDSTREAM_CONFIG", None)
    result = CliRunner().invoke(app, ["rules", "compare", "--days", "1", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    big = sum(e["amount"] > 100 for e in after)
    assert (report["events"], report["labelled_frauds"], report["changed_decisions"]) == (
        150,
        len(frauds),
        big,
    )
    assert report["active"] == {"alerts": 0, "blocks": 0, "precision": None, "recall": 0.0}
    assert report["shadow"] == {"alerts": big, "blocks": 0, "precision": len(frauds) / big, "recall": 1.0}
    assert report["rule_hits"] == {"active": {"marker": 150}, "shadow": {"shadow_big": big}}

    # backtest: the same flow in process reproduces what version 1 served, and reports a change
    out = tmp_path / "backtest-v1"
    result = CliRunner().invoke(app, ["backtest", "--rules", str(v1), "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    bt = json.loads((out / "report.json").read_text())
    assert (bt["events"], bt["served_events"], bt["rules_version"]) == (300, 300, v1)
    assert bt["same_score"] == 150  # the 150 events version 1 decided: the same score, every one
    assert bt["changed_decisions"] == 0  # before the switch: 0 points then, 1 now, LOW either way
    assert bt["rules"] == {"marker": {"hits": 300, "precision": len(frauds) / 300}}
    out2 = tmp_path / "backtest-v2"
    result = CliRunner().invoke(app, ["backtest", "--rules", str(v2), "-o", str(out2)], env=env)
    assert result.exit_code == 0, result.output
    bt2 = json.loads((out2 / "report.json").read_text())
    big_all = sum(e["amount"] > 100 for e in before + after)
    assert bt2["changed_decisions"] == big_all and bt2["backtest"]["alerts"] == big_all
    assert bt2["backtest"]["recall"] == 1.0 and bt2["served"]["alerts"] == 0
    md = (out2 / "report.md").read_text()
    assert "| shadow_big |" in md and "![precision-recall](pr_curve.png)" in md
    assert (out2 / "alerts_per_day.png").stat().st_size > 5000 and (
        out2 / "pr_curve.png"
    ).stat().st_size > 5000
