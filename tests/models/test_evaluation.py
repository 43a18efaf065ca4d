"""Metrics against a small case computed by hand."""

import numpy as np
import pytest

from apps.evaluate import Scored, evaluate
from models.evaluation import card_precision_at_k

#            id    user day           score level     rules                    fraud?
ROWS = [
    ("a", "u1", "2025-01-01", 90.0, "HIGH", ("country_blacklist",)),  # fraud, caught
    ("b", "u1", "2025-01-01", 10.0, "LOW", ()),  # legit
    ("c", "u2", "2025-01-01", 50.0, "MEDIUM", ("velocity_check",)),  # legit, false alarm
    ("d", "u3", "2025-01-02", 30.0, "LOW", ("unusual_hours",)),  # fraud, missed
    ("e", "u2", "2025-01-02", 20.0, "LOW", ()),  # legit
    ("f", "u4", "2025-01-02", 80.0, "HIGH", ("velocity_check",)),
]  # fraud, caught
LABELS = {
    "a": (True, "blocked_country"),
    "d": (True, "night_run"),
    "f": (True, "card_testing"),
    "b": (False, "legit"),
    "zz": (True, "card_testing"),
}


@pytest.fixture
def report():
    scored = [Scored(*r, latency_s=0.001 * (i + 1)) for i, r in enumerate(ROWS)]
    return evaluate(scored, LABELS, medium=40, high=70, k=1)


def test_confusion_and_rates_at_both_thresholds(report):
    alert = report["thresholds"]["alert (MEDIUM or HIGH)"]
    assert alert["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    assert (alert["precision"], alert["recall"], alert["fpr"]) == (2 / 3, 2 / 3, 1 / 3)
    block = report["thresholds"]["block (HIGH)"]
    assert block["confusion"] == {"tp": 2, "fp": 0, "fn": 1, "tn": 3}
    assert (block["precision"], block["recall"], block["fpr"]) == (1.0, 2 / 3, 0.0)


def test_ranking_metrics(report):
    # frauds score 90, 80, 30; legit 50, 20, 10: 8 of 9 fraud-legit pairs ranked right (30 < 50)
    assert report["roc_auc"] == pytest.approx(8 / 9)
    # ranking 90 F, 80 F, 50 L, 30 F: AP = (1 + 1 + 3/4) / 3
    assert report["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_card_precision_recall_by_scenario_and_rules(report):
    # day 1: top card u1 (90) had a fraud -> 1; day 2: top card u4 (80) had a fraud -> 1
    assert report["card_precision_at_k"] == {
        "k": 1,
        "mean": 1.0,
        "best_possible": 1.0,
        "per_day": {"2025-01-01": 1.0, "2025-01-02": 1.0},
    }
    assert report["recall_by_scenario"] == {
        "blocked_country": {"frauds": 1, "detected": 1, "recall": 1.0},
        "card_testing": {"frauds": 1, "detected": 1, "recall": 1.0},
        "night_run": {"frauds": 1, "detected": 0, "recall": 0.0},
    }
    assert report["rules"]["velocity_check"] == {"fired": 2, "recall": 1 / 3, "precision": 0.5}
    assert report["labelled_frauds_not_scored"] == 1
    assert report["frauds"] == 3 and report["events"] == 6
    assert report["latency_s"]["max"] == pytest.approx(0.006)


def test_card_precision_with_k_larger_than_the_day():
    out = card_precision_at_k(["d", "d"], ["u1", "u2"], [1, 0], [0.9, 0.1], k=4)
    assert out["per_day"] == {"d": 0.25} and out["best_possible"] == 0.25


def test_report_files_are_written(report, tmp_path):
    from apps.evaluate import write_report

    scored = [Scored(*r, latency_s=0.01) for r in ROWS]
    files = write_report(report, scored, LABELS, tmp_path)
    assert {f.name for f in files} == {
        "report.json",
        "report.md",
        "pr_curve.png",
        "scores.png",
        "latency.png",
    }
    assert "| alert (MEDIUM or HIGH), score ≥ 40 | 2 | 1 | 1 | 2 |" in (tmp_path / "report.md").read_text()
    assert all(f.stat().st_size > 1000 for f in files if f.suffix == ".png")


def test_plots_show_the_operating_points_the_prevalence_and_the_thresholds(report):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from apps.evaluate import pr_figure, score_figure

    y = np.array([LABELS.get(r[0], (False, ""))[0] for r in ROWS], dtype=int)
    scores = np.array([r[3] for r in ROWS], dtype=float)
    pr = pr_figure(report, y, scores)
    labels = [line.get_label() for line in pr.axes[0].get_lines()]
    assert any(label.startswith("prevalence 0.") for label in labels)
    assert any("alert (MEDIUM or HIGH) at 40" in label for label in labels)
    assert any("block (HIGH) at 70" in label for label in labels)
    assert "AP" in pr.axes[0].get_title() and "random" in pr.axes[0].get_title()
    hist = score_figure(report, y, scores)
    vlines = [line.get_label() for line in hist.axes[0].get_lines()]
    assert any("threshold 40" in v for v in vlines) and any("threshold 70" in v for v in vlines)
    assert hist.axes[0].get_title().endswith("?")
    plt.close("all")
