"""`fraudstream evaluate`: join ``scored_events`` with labels and write a report.

Outputs in the report folder: ``report.json`` (every number), ``report.md``
(readable), and plots ``pr_curve.png``, ``scores.png`` (score distributions by
label) and ``latency.png`` (end-to-end latency, broker timestamp to row
written). Events without a label count as legitimate (injected labels cover
only the frauds); labelled events the job never scored are reported as missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from models.evaluation import (
    card_precision_at_k,
    confusion,
    pr_curve,
    ranking_metrics,
    rates,
    recall_by_group,
)

__all__ = ["Scored", "evaluate", "fetch_scored", "load_labels", "write_report"]


@dataclass(frozen=True, slots=True)
class Scored:
    event_id: str
    user_id: str
    day: str
    fraud_score: float
    risk_level: str
    rules: tuple[str, ...]
    latency_s: float | None


def load_labels(paths: Iterable[Path]) -> dict[str, tuple[bool, str]]:
    """``event_id -> (is_fraud, scenario)`` from JSON-lines or CSV label files."""
    import csv

    labels: dict[str, tuple[bool, str]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            rows: Iterable[dict[str, Any]] = (
                csv.DictReader(f)
                if path.suffix == ".csv"
                else (json.loads(line) for line in f if line.strip())
            )
            for row in rows:
                fraud = str(row["is_fraud"]).strip().lower() in {"1", "true", "t", "yes"}
                labels[str(row["event_id"])] = (
                    fraud,
                    str(row.get("scenario") or ("fraud" if fraud else "legit")),
                )
    return labels


def fetch_scored(database_url: str) -> list[Scored]:
    with psycopg.connect(database_url) as conn, conn.cursor(name="evaluate") as cur:
        cur.itersize = 50_000
        cur.execute(
            "SELECT event_id, user_id, to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD'), fraud_score, "
            "risk_level, triggered_rules, extract(epoch FROM written_at - ingested_at) FROM scored_events"
        )
        return [
            Scored(r[0], r[1], r[2], float(r[3]), r[4], tuple(r[5]), None if r[6] is None else float(r[6]))
            for r in cur
        ]


def evaluate(
    scored: list[Scored],
    labels: dict[str, tuple[bool, str]],
    medium: float = 40.0,
    high: float = 70.0,
    k: int = 100,
) -> dict[str, Any]:
    """Every metric of the report, from scored rows and labels."""
    y = np.array([labels.get(s.event_id, (False, ""))[0] for s in scored], dtype=int)
    scores = np.array([s.fraud_score for s in scored])
    alert = scores >= medium
    block = scores >= high
    scenarios = [
        [labels[s.event_id][1]] if s.event_id in labels and labels[s.event_id][0] else [] for s in scored
    ]
    rule_stats = {}
    for rule in sorted({r for s in scored for r in s.rules}):
        fired = np.array([rule in s.rules for s in scored])
        rule_stats[rule] = {
            "fired": int(fired.sum()),
            "recall": float(fired[y == 1].mean()) if y.sum() else None,
            "precision": float(y[fired].mean()) if fired.any() else None,
        }
    seen = {s.event_id for s in scored}
    latencies = np.array([s.latency_s for s in scored if s.latency_s is not None])
    thresholds = {}
    for name, predicted in (("alert (MEDIUM or HIGH)", alert), ("block (HIGH)", block)):
        c = confusion(y, predicted)
        thresholds[name] = {"threshold": medium if predicted is alert else high, "confusion": c, **rates(c)}
    return {
        "events": len(scored),
        "frauds": int(y.sum()),
        "labelled_frauds_not_scored": sum(1 for e, (f, _) in labels.items() if f and e not in seen),
        "thresholds": thresholds,
        **ranking_metrics(y, scores),
        "card_precision_at_k": card_precision_at_k(
            [s.day for s in scored], [s.user_id for s in scored], y.tolist(), scores.tolist(), k
        ),
        "recall_by_scenario": recall_by_group(scenarios, y.tolist(), alert.astype(int).tolist()),
        "rules": rule_stats,
        "latency_s": {
            q: float(np.quantile(latencies, p))
            for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        }
        if len(latencies)
        else None,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return (
        f"{value:.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
    )


def write_report(
    report: dict[str, Any], scored: list[Scored], labels: dict[str, tuple[bool, str]], out: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    y = np.array([labels.get(s.event_id, (False, ""))[0] for s in scored], dtype=int)
    scores = np.array([s.fraud_score for s in scored])
    files = [out / "report.json", out / "report.md"]
    files[0].write_text(json.dumps(report, indent=2))

    if 0 < y.sum() < len(y):
        precision, recall = pr_curve(y, scores)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(recall, precision, drawstyle="steps-post")
        ax.set(
            xlabel="recall",
            ylabel="precision",
            title=f"Precision-recall (AP {report['average_precision']:.3f})",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "pr_curve.png", dpi=110)
        plt.close(fig)
        files.append(out / "pr_curve.png")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(0, 100, 51).tolist()
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, density=True, label=f"legitimate ({int((y == 0).sum()):,})")
    if y.sum():
        ax.hist(scores[y == 1], bins=bins, alpha=0.6, density=True, label=f"fraud ({int(y.sum()):,})")
    ax.set(xlabel="fraud_score", ylabel="density", title="Score distribution by label", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)
    files.append(out / "scores.png")
    latencies = np.array([s.latency_s for s in scored if s.latency_s is not None])
    if len(latencies):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.hist(latencies * 1000, bins=60)
        ax.set(xlabel="end-to-end latency (ms)", ylabel="events", title="Broker timestamp to Postgres row")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        files.append(out / "latency.png")

    lines = [
        "# fraudstream evaluation",
        "",
        f"Events scored: {report['events']:,}; labelled frauds among them: {report['frauds']:,}; "
        f"labelled frauds never scored: {report['labelled_frauds_not_scored']:,}.",
        "",
        f"ROC-AUC **{_fmt(report['roc_auc'])}**, average precision **{_fmt(report['average_precision'])}**, "
        f"card precision@{report['card_precision_at_k']['k']} per day "
        f"**{_fmt(report['card_precision_at_k']['mean'])}** "
        f"(best possible {_fmt(report['card_precision_at_k']['best_possible'])}).",
        "",
        "| threshold | tp | fp | fn | tn | precision | recall | FPR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in report["thresholds"].items():
        c = t["confusion"]
        lines.append(
            f"| {name}, score ≥ {t['threshold']:g} | {c['tp']:,} | {c['fp']:,} | {c['fn']:,} | {c['tn']:,} | "
            f"{_fmt(t['precision'])} | {_fmt(t['recall'])} | {_fmt(t['fpr'])} |"
        )
    lines += [
        "",
        "## Recall by injected scenario (alert threshold)",
        "",
        "| scenario | frauds | detected | recall |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['frauds']:,} | {v['detected']:,} | {v['recall']:.3f} |"
        for k, v in report["recall_by_scenario"].items()
    ]
    lines += [
        "",
        "## Rules",
        "",
        "| rule | fired | share of frauds it fired on | precision |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {k} | {v['fired']:,} | {_fmt(v['recall'])} | {_fmt(v['precision'])} |"
        for k, v in report["rules"].items()
    ]
    if report["latency_s"]:
        lat = report["latency_s"]
        lines += [
            "",
            f"End-to-end latency (broker timestamp → row written): p50 {lat['p50'] * 1000:.1f} ms, "
            f"p95 {lat['p95'] * 1000:.1f} ms, p99 {lat['p99'] * 1000:.1f} ms, "
            f"max {lat['max'] * 1000:.1f} ms.",
        ]
    lines += ["", "![precision-recall](pr_curve.png) ![scores](scores.png) ![latency](latency.png)", ""]
    files[1].write_text("\n".join(lines))
    return files
