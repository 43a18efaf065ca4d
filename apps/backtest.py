"""``fraudstream backtest``: re-score events through the job's own dataflow, in process,
with a chosen rule-set version and model set, and report it beside what was served.

The events (a file, or the job's ``scored_events`` in a time window) go through
:func:`flows.fraud.build_flow` with Bytewax's testing source and sinks: the same
validation, user state, features, risk windows, rules, models and ensemble as the
live job, never the live topics or tables. One partition, in event-time order.
Labels are not fed back into the risk windows during the run (their arrival order
against the events cannot be replayed in process): rules over label counts
(``compromised_merchant``) see none.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.config import Settings
from flows.fraud import FlowSinks, Providers, build_flow
from models.base import ModelSet
from models.evaluation import average_precision
from operators.events import TransactionEvent, encode_event
from operators.rulesets import RuleSet
from operators.scoring import ScoredEvent
from operators.validation import Message, RawBatch

__all__ = ["Served", "backtest_report", "fetch_served", "rescore", "write_backtest"]


@dataclass(frozen=True, slots=True)
class Served:
    """What the live job decided for one event."""

    fraud_score: float
    risk_level: str
    rules: tuple[str, ...]
    rules_version: int | None


def rescore(
    events: Sequence[TransactionEvent],
    settings: Settings,
    rules: RuleSet,
    models: Callable[[], ModelSet],
    batch_size: int = 500,
) -> list[ScoredEvent]:
    """Every event's verdict from the flow, in process (see the module doc)."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    msgs = [
        Message(
            ev.user_id.encode(),
            encode_event(ev),
            topic="backtest",
            partition=0,
            offset=i,
            timestamp=(1, int(ev.timestamp.timestamp() * 1000)),
        )
        for i, ev in enumerate(ordered)
    ]
    batches = [RawBatch.of(msgs[i : i + batch_size]) for i in range(0, len(msgs), batch_size)]
    scored: list[ScoredEvent] = []
    ignored: list[Any] = []
    quiet = settings.model_copy(update={"recovery": settings.recovery.model_copy(update={"dir": None})})
    flow = build_flow(
        TestingSource(batches),
        FlowSinks(TestingSink(scored), TestingSink(ignored), TestingSink(ignored), TestingSink(ignored)),
        quiet,
        Providers(models=models, rules=lambda: (rules, None)),
    )
    run_main(flow)
    return scored


def fetch_served(database_url: str, event_ids: Sequence[str]) -> dict[str, Served]:
    """The live job's verdicts for ``event_ids`` (those it scored)."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT event_id, fraud_score, risk_level, triggered_rules, rules_version "
            "FROM scored_events WHERE event_id = ANY(%s)",
            (list(event_ids),),
        ).fetchall()
    return {r[0]: Served(float(r[1]), r[2], tuple(r[3] or ()), r[4]) for r in rows}


def _side(
    levels: list[str], scores: list[float], y: np.ndarray, days: list[str], medium_or_high: set[str]
) -> dict[str, Any]:
    alerts = np.array([lvl in medium_or_high for lvl in levels])
    blocks = np.array([lvl == "HIGH" for lvl in levels])
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: {"alerts": 0, "blocks": 0})
    for day, a, b in zip(days, alerts, blocks, strict=True):
        per_day[day]["alerts"] += int(a)
        per_day[day]["blocks"] += int(b)
    caught = int((alerts & (y == 1)).sum())
    return {
        "alerts": int(alerts.sum()),
        "blocks": int(blocks.sum()),
        "precision": caught / int(alerts.sum()) if alerts.any() else None,
        "recall": caught / int(y.sum()) if y.any() else None,
        "average_precision": average_precision(y, np.array(scores)) if 0 < y.sum() < len(y) else None,
        "per_day": dict(sorted(per_day.items())),
    }


def backtest_report(
    scored: Sequence[ScoredEvent],
    served: dict[str, Served],
    labels: dict[str, bool],
    rules_version: int | None,
    model_version: str,
    max_changes: int = 200,
) -> dict[str, Any]:
    """The backtest beside what was served, against the labels (unlabelled: legitimate)."""
    y = np.array([1 if labels.get(s.event.event_id) else 0 for s in scored], dtype=int)
    days = [s.event.timestamp.date().isoformat() for s in scored]
    alerting = {"MEDIUM", "HIGH"}
    report: dict[str, Any] = {
        "events": len(scored),
        "labelled_frauds": int(y.sum()),
        "rules_version": rules_version,
        "model_version": model_version,
        "backtest": _side(
            [s.verdict.risk_level for s in scored], [s.verdict.fraud_score for s in scored], y, days, alerting
        ),
    }
    both = [s for s in scored if s.event.event_id in served]
    report["served_events"] = len(both)
    if both:
        y_both = np.array([1 if labels.get(s.event.event_id) else 0 for s in both], dtype=int)
        days_both = [s.event.timestamp.date().isoformat() for s in both]
        sv = [served[s.event.event_id] for s in both]
        report["served"] = _side(
            [v.risk_level for v in sv], [v.fraud_score for v in sv], y_both, days_both, alerting
        )
        report["served"]["rules_versions"] = sorted({str(v.rules_version) for v in sv})
        changes = [
            {
                "event_id": s.event.event_id,
                "served": [v.fraud_score, v.risk_level],
                "backtest": [s.verdict.fraud_score, s.verdict.risk_level],
                "is_fraud": bool(labels.get(s.event.event_id)),
            }
            for s, v in zip(both, sv, strict=True)
            if s.verdict.risk_level != v.risk_level
        ]
        report["changed_decisions"] = len(changes)
        report["same_score"] = sum(
            abs(s.verdict.fraud_score - v.fraud_score) < 0.005 for s, v in zip(both, sv, strict=True)
        )
        report["changes"] = changes[:max_changes]
    hits: Counter[str] = Counter()
    fraud_hits: Counter[str] = Counter()
    for s, label in zip(scored, y, strict=True):
        for h in s.hits:
            hits[h.rule] += 1
            fraud_hits[h.rule] += int(label)
    report["rules"] = {
        name: {"hits": n, "precision": fraud_hits[name] / n if n else None} for name, n in hits.most_common()
    }
    return report


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


def day_figure(report: dict[str, Any]) -> Any:
    """How many alerts a day analysts would get with the backtested set, beside what was served."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = [s for s in ("served", "backtest") if s in report]
    days = sorted({d for s in sides for d in report[s]["per_day"]})
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for side, style in zip(sides, ("-", "--"), strict=False):
        alerts = [report[side]["per_day"].get(d, {"alerts": 0})["alerts"] for d in days]
        ax.plot(range(len(days)), alerts, style, marker="o", markersize=3, label=f"{side} alerts")
    step = max(1, len(days) // 8)
    ax.set_xticks(range(0, len(days), step), [days[i] for i in range(0, len(days), step)], rotation=30)
    ax.set(ylabel="alerts (MEDIUM or HIGH) per day", title="How many alerts a day, served vs backtest?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pr_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    """Which precision at which recall, served vs backtest (``name -> (labels, scores)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.evaluation import pr_curve

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for name, (y, scores) in curves.items():
        precision, recall = pr_curve(y, scores)
        ax.plot(
            recall, precision, drawstyle="steps-post", label=f"{name}: AP {average_precision(y, scores):.3f}"
        )
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title="Which precision at which recall?",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def write_backtest(
    report: dict[str, Any], out: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
) -> list[Path]:
    """``report.json``, ``report.md``, ``alerts_per_day.png`` and, given labelled
    ``curves`` (name -> labels, scores), ``pr_curve.png`` in ``out``."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "report.md", out / "alerts_per_day.png"]
    fig = day_figure(report)
    fig.savefig(written[2], dpi=110)
    plt.close(fig)
    if curves and all(0 < y.sum() < len(y) for y, _ in curves.values()):
        fig = pr_figure(curves)
        written.append(out / "pr_curve.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    sides = [s for s in ("served", "backtest") if s in report]
    lines = [
        "# Backtest",
        "",
        f"{report['events']:,} events, {report['labelled_frauds']:,} labelled frauds; rule set "
        f"{report['rules_version'] if report['rules_version'] is not None else 'of the config file'}, "
        f"models {report['model_version']}.",
        "",
        "| | " + " | ".join(sides) + " |",
        "|---|" + "---:|" * len(sides),
    ]
    for key in ("alerts", "blocks", "precision", "recall", "average_precision"):
        lines.append(f"| {key} | " + " | ".join(_fmt(report[s][key]) for s in sides) + " |")
    if "changed_decisions" in report:
        lines += [
            "",
            f"Of {report['served_events']:,} events the job served, {report['same_score']:,} get the same "
            f"score and {report['changed_decisions']:,} another decision.",
        ]
    lines += ["", "## Rules", "", "| rule | hits | precision |", "|---|---:|---:|"]
    lines += [f"| {n} | {r['hits']:,} | {_fmt(r['precision'])} |" for n, r in report["rules"].items()]
    lines += [
        "",
        "## Alerts and blocks per day",
        "",
        "| day | " + " | ".join(f"{s} alerts | {s} blocks" for s in sides) + " |",
    ]
    lines.append("|---|" + "---:|---:|" * len(sides))
    days = sorted({d for s in sides for d in report[s]["per_day"]})
    for day in days:
        cells = []
        for s in sides:
            d = report[s]["per_day"].get(day, {"alerts": 0, "blocks": 0})
            cells += [str(d["alerts"]), str(d["blocks"])]
        lines.append(f"| {day} | " + " | ".join(cells) + " |")
    if report.get("changes"):
        lines += [
            "",
            "## Decisions that change",
            "",
            "| event | served | backtest | fraud |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c['event_id']} | {c['served'][0]:.2f} {c['served'][1]} | {c['backtest'][0]:.2f} "
            f"{c['backtest'][1]} | {'yes' if c['is_fraud'] else ''} |"
            for c in report["changes"]
        ]
    figures = ["![alerts per day](alerts_per_day.png)"]
    if len(written) > 3:
        figures.append("![precision-recall](pr_curve.png)")
    lines[4:4] = [" ".join(figures), ""]  # after the summary, before the table
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return written
