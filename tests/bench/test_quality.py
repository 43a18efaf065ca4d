"""The detection-quality benchmark on a slice of the Sparkov set (skipped without ../shared).

It checks that every score is measured on the same rows and that the served formula
behaves as documented, never a quality target (those are recorded in docs/evaluation.md)."""

from __future__ import annotations

import numpy as np

from bench.quality import evaluate_dataset, markdown, score_metrics, sparkov
from tests.support import shared_data


def test_a_sparkov_slice_reports_every_component_beside_the_baselines():
    ds = sparkov(shared_data("sparkov_generated", "transactions.parquet"), cards=12)
    report = evaluate_dataset(ds, epochs=2)
    scores = report["scores"]
    assert report["test_frauds"] > 0 and report["train_events"] > 1000
    for name in (
        "baseline: amount",
        "baseline: amount / card mean",
        "model: isolation_forest",
        "model: autoencoder",
        "rules (sum of points)",
        "served, no labels: evidence",
        "served, no labels: weighted (reference)",
        "model: supervised (weekly)",
        "served, labels: evidence",
    ):
        m = scores[name]
        assert 0.0 <= m["average_precision"] <= 1.0 and 0.0 <= m["roc_auc"] <= 1.0, name
        assert m["recall_at_1pct_fpr"] is not None and m["card_precision_at_100"] is not None
    # with a supervised score present, the evidence profile follows it: no dilution (only
    # the served score's rounding to 0.01 can tie a few rows)
    served = scores["served, labels: evidence"]["average_precision"]
    assert abs(served - scores["model: supervised (weekly)"]["average_precision"]) < 0.01
    assert "| served, no labels: evidence |" in markdown({"datasets": {"sparkov": report}})


def test_recall_at_one_percent_fpr_counts_frauds_strictly_above_the_99th_legit_percentile():
    y = np.r_[np.zeros(100, dtype=int), np.ones(4, dtype=int)]
    s = np.r_[np.arange(100.0), [98.5, 99.5, 120.0, 5.0]]
    m = score_metrics(y, s, ["d"] * 104, [f"c{i}" for i in range(104)])
    assert m["recall_at_1pct_fpr"] == 0.75  # threshold 98.01: 98.5, 99.5 and 120 are above it, 5 is not
