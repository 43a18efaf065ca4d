"""The label feedback loop end to end, on the real job, broker and Postgres.

A workload of compromised merchants (every card used there is fraud, and looks
normal) is produced week by week; chargebacks come back in weekly batches on
the labels topic. The job's merchant risk windows pick the merchants up, a supervised challenger trained on what the job
stored scores in shadow and is promoted on its numbers, a worse challenger is
refused, and duplicate, late and unknown labels change nothing twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from sklearn.metrics import average_precision_score

from apps.produce import produce_all
from apps.replay.merchant_fraud import MerchantFraudConfig, generate_merchant_fraud, label_releases
from flows.launcher import start_job
from models.artifacts import ModelStore, load_artifact, write_artifact
from models.champion import labelled_rows, promote, supervised_columns, train_supervised
from models.supervised import SupervisedScorer
from models.training import EntityRisk, replay_features
from operators.entity_risk import RiskConfig
from operators.events import TransactionEvent, decode_event
from operators.features import feature_matrix
from operators.labels import Label, encode_label

pytestmark = pytest.mark.integration

DAY = 86_400.0
COLUMNS = supervised_columns(("merchant", "device", "user"), (1, 7, 30))


def labels_metric(job, outcome: str) -> float:
    return job.metrics().get(("fraudstream_labels_total", (("outcome", outcome),)), 0.0)


def wait_metric(job, outcome: str, expected: float, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    value = 0.0
    while time.monotonic() < deadline:
        job.check_alive()
        value = labels_metric(job, outcome)
        if value >= expected:
            return value
        time.sleep(0.2)
    return value


def test_labels_close_the_loop(make_settings, tmp_path):
    w = generate_merchant_fraud(MerchantFraudConfig(days=70, users=300, merchants=60, seed=5))
    labels = label_releases(w.events, w.frauds)
    start = datetime.fromisoformat(w.events[0]["timestamp"]).timestamp()
    # One partition: the test produces a week at a time, and across partitions a
    # later day could be read before an earlier one; live traffic arrives in time
    # order, and the windows end label_delay_days back, far behind any lag.
    settings = make_settings(partitions=1)
    k = settings.kafka
    model_dir = tmp_path / "models"
    job = start_job(
        settings,
        1,
        tmp_path,
        FRAUDSTREAM_MODEL_DIR=str(model_dir),
        FRAUDSTREAM__MODELS__REFRESH_S="0.2",
        FRAUDSTREAM__LABELS__PENDING_S="3",
        # The champion is rules + anomaly models without the merchant rule: what the
        # supervised challenger adds from the merchant risk features is then measurable.
        FRAUDSTREAM__RULES__COMPROMISED_MERCHANT__ENABLED="false",
    )
    produced_events = produced_labels = extra_stored = 0
    ev_ts = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in w.events]

    def advance_to(until_day: float) -> None:
        """Produce the events before ``until_day`` and the label releases before it, in time order."""
        nonlocal produced_events, produced_labels
        until = start + until_day * DAY
        while True:
            next_release = labels[produced_labels].label_ts if produced_labels < len(labels) else None
            stop = min(until, next_release) if next_release is not None else until
            batch = [
                e
                for e, t in zip(w.events[produced_events:], ev_ts[produced_events:], strict=True)
                if t < stop
            ]
            if batch:
                produce_all(
                    k.bootstrap_servers,
                    k.transactions_topic,
                    ((e["user_id"].encode(), json.dumps(e).encode()) for e in batch),
                )
                produced_events += len(batch)
                assert job.wait_rows(produced_events) == produced_events
            if next_release is None or next_release >= until:
                return
            release = [lab for lab in labels[produced_labels:] if lab.label_ts == next_release]
            produce_all(k.bootstrap_servers, k.labels_topic, (encode_label(lab) for lab in release))
            produced_labels += len(release)
            # Stored once each (the broker may deliver a message twice; that is what the
            # idempotency is for), then applied in the same step: settle briefly.
            stored = produced_labels + extra_stored
            assert wait_metric(job, "stored", stored) == stored
            time.sleep(0.5)
            assert labels_metric(job, "applied") >= produced_labels

    try:
        # Weeks 1-6: rules only, then labels start to flow back.
        advance_to(42)
        # The supervised challenger, trained on what the job stored (maturity 7 days).
        first = train_supervised(settings.database_url, model_dir, COLUMNS, maturity_days=7)
        assert ModelStore(model_dir).challenger() == first.version
        # Weeks 7-8 scored by rules (champion) with the challenger in shadow.
        advance_to(56)
        good = promote(settings.database_url, model_dir, 7, margin=0.05, window_days=14, min_frauds=5)
        assert good.promoted, (good.reason, good.events, good.frauds)
        assert ModelStore(model_dir).active() == first.version and ModelStore(model_dir).challenger() is None

        # Duplicates, a late label for an old event, and a label for an event never seen.
        dup_before = labels_metric(job, "duplicate")
        late_event = next(e for e in w.events[:100] if e["event_id"] not in w.frauds)
        late = Label(late_event["event_id"], True, datetime.fromtimestamp(start + 56 * DAY, UTC), "analyst")
        extra = [*labels[:produced_labels], late, late, Label("never-seen", True, late.label_time)]
        produce_all(k.bootstrap_servers, k.labels_topic, (encode_label(lab) for lab in extra))
        assert (
            wait_metric(job, "duplicate", dup_before + produced_labels + 1)
            >= dup_before + produced_labels + 1
        )
        assert wait_metric(job, "unknown", 1, timeout_s=30) >= 1
        assert labels_metric(job, "stored") == produced_labels + 2  # the late label and the unknown one
        extra_stored = 2

        # A worse challenger: the same trees' recipe on shuffled labels.
        rows = labelled_rows(settings.database_url, 7)
        shuffled = np.random.default_rng(0).permutation(rows.y)
        worse = SupervisedScorer(seed=1).fit(feature_matrix(rows.features, None, COLUMNS), shuffled)
        champion = load_artifact(model_dir / first.version, "cpu")
        bad_version = write_artifact(
            model_dir, {"supervised": worse}, COLUMNS, {"kind": "test"}, {}, {"supervised": COLUMNS}
        )
        ModelStore(model_dir).activate(bad_version, pointer="challenger")
        time.sleep(1.0)
        advance_to(71)
        refused = promote(settings.database_url, model_dir, 7, margin=0.05, window_days=14, min_frauds=5)
        assert not refused.promoted, refused
        assert ModelStore(model_dir).active() == first.version
        assert champion.version == first.version

        with psycopg.connect(settings.database_url) as conn:
            decisions = conn.execute(
                "SELECT challenger_version, promoted, champion_ap, challenger_ap, reason FROM model_promotions "
                "ORDER BY id"
            ).fetchall()
            stored = {
                r[0]: (r[1], float(r[2]), r[3], r[4]["risk"])
                for r in conn.execute(
                    "SELECT event_id, extract(epoch FROM event_time)::float8, fraud_score, model_version, "
                    "features FROM scored_events"
                )
            }
            label_rows = conn.execute("SELECT count(*) FROM labels").fetchone()[0]
    finally:
        job.stop()

    assert [(d[0], d[1]) for d in decisions] == [(first.version, True), (bad_version, False)]
    assert decisions[1][3] < decisions[1][2] + 0.05 and "<" in decisions[1][4]
    assert label_rows == produced_labels + 2  # every label once, the late one once, the unknown one once

    # Before vs after: the first two weeks (no labels yet, rules only) against the last two
    # (labels flowing, the promoted supervised champion).
    ids = [e["event_id"] for e in w.events]
    ts = np.array([stored[i][0] for i in ids])
    y = np.array([i in w.frauds for i in ids], dtype=int)
    score = np.array([stored[i][1] for i in ids])
    early = ts < start + 14 * DAY
    late_weeks = ts >= start + 57 * DAY
    assert {stored[i][2] for i, t in zip(ids, ts, strict=True) if t >= start + 57 * DAY} == {first.version}
    ap_before = average_precision_score(y[early], score[early])
    ap_after = average_precision_score(y[late_weeks], score[late_weeks])
    alerts_before = (score[early] >= 40)[y[early] == 1].mean()
    assert alerts_before < 0.2, "rules alone should miss most compromised-merchant frauds"
    assert ap_before < 0.2

    # Served risk features equal the offline replay of the same events and labels (the
    # training view): no label from an event's future, duplicates counted once.
    events = [
        e for e in (decode_event(json.dumps(x).encode()) for x in w.events) if isinstance(e, TransactionEvent)
    ]
    features, ordered = replay_features(
        events, labels=[*labels, late, late], risk=EntityRisk(RiskConfig(label_delay_days=2))
    )
    mismatches = [
        ev.event_id for ev, f in zip(ordered, features, strict=True) if f.risk != stored[ev.event_id][3]
    ]
    if mismatches:
        first_bad = next(f for ev, f in zip(ordered, features, strict=True) if ev.event_id == mismatches[0])
        diff = {
            key: (value, stored[mismatches[0]][3].get(key))
            for key, value in first_bad.risk.items()
            if stored[mismatches[0]][3].get(key) != value
        }
        raise AssertionError(
            f"{len(mismatches)} events differ, e.g. {mismatches[0]}: offline vs served {diff}"
        )
    assert any(f.risk.get("merchant_frauds_7d") for f in features)
    assert ap_after > max(5 * ap_before, ap_before + 0.15), (ap_before, ap_after)

    # fraudstream evaluate, labels from the labels table, with the prequential report:
    # a supervised model retrained every week on the labels known then beats what was served.
    out = tmp_path / "report"
    result = subprocess.run(
        [
            *(
                sys.executable,
                "-m",
                "apps.cli",
                "evaluate",
                "--prequential",
                "--points",
                "velocity_check=30",
            ),
            *("--label-delay-days", "7", "--test-days", "7", "--out", str(out)),
        ],
        env={
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "FRAUDSTREAM__RULES__COMPROMISED_MERCHANT__ENABLED": "false",
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    sent = {lab.event_id for lab in labels[:produced_labels]}
    assert report["frauds"] == len(sent) + 1  # the late label counts too
    pre = json.loads((out / "prequential.json").read_text())
    s = pre["summary"]
    assert list(s) == [
        "champion (served)",
        "challenger (shadow)",
        "retrained",
        "ensemble + retrained",
        "candidate + retrained",
    ]
    assert s["retrained"]["pooled_ap"] > s["champion (served)"]["pooled_ap"] + 0.1, s
    assert s["ensemble + retrained"]["pooled_ap"] > s["champion (served)"]["pooled_ap"], s
    assert s["challenger (shadow)"]["folds"] < s["retrained"]["folds"]  # shadow scores only from week 7
    assert (out / "prequential.md").read_text().count("| 20") >= s["retrained"]["folds"]
