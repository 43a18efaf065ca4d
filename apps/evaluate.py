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
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from models.prequential import Blend, PrequentialConfig
    from operators.ensemble import EnsembleConfig

__all__ = [
    "History",
    "LabelFileError",
    "Scored",
    "db_labels",
    "evaluate",
    "fetch_history",
    "fetch_scored",
    "load_labels",
    "prequential_report",
    "write_prequential",
    "write_report",
]


@dataclass(frozen=True, slots=True)
class Scored:
    event_id: str
    user_id: str
    day: str
    fraud_score: float
    risk_level: str
    rules: tuple[str, ...]
    latency_s: float | None


class LabelFileError(ValueError):
    """A label file that cannot be read as labels; the message names the file and line."""


def load_labels(paths: Iterable[Path]) -> dict[str, tuple[bool, str]]:
    """``event_id -> (is_fraud, scenario)`` from JSON-lines or CSV label files (each row an
    ``event_id`` and ``is_fraud``); :class:`LabelFileError` names the first bad line."""
    import csv

    labels: dict[str, tuple[bool, str]] = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            rows: Iterable[tuple[int, Any]] = (
                enumerate(csv.DictReader(f), start=2)
                if path.suffix == ".csv"
                else ((n, _json_row(path, n, line)) for n, line in enumerate(f, start=1) if line.strip())
            )
            for n, row in rows:
                if not isinstance(row, dict) or row.get("event_id") in (None, "") or "is_fraud" not in row:
                    raise LabelFileError(f"{path}:{n}: a label needs event_id and is_fraud")
                fraud = str(row["is_fraud"]).strip().lower() in {"1", "true", "t", "yes"}
                labels[str(row["event_id"])] = (
                    fraud,
                    str(row.get("scenario") or ("fraud" if fraud else "legit")),
                )
    return labels


def _json_row(path: Path, n: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise LabelFileError(f"{path}:{n}: not JSON ({exc}); label files are JSON lines or .csv") from None


def db_labels(database_url: str) -> dict[str, tuple[bool, str]]:
    """``event_id -> (is_fraud, source)`` from the ``labels`` table: each event's latest label."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (event_id) event_id, is_fraud, source FROM labels "
            "ORDER BY event_id, label_time DESC, is_fraud"
        ).fetchall()
    return {r[0]: (bool(r[1]), str(r[2]) if r[1] else "legit") for r in rows}


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


def _operating_points(report: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(name, threshold, recall, precision) of the alert and block thresholds."""
    out = []
    for name, t in report["thresholds"].items():
        if t.get("recall") is not None and t.get("precision") is not None:
            out.append((name, t["threshold"], t["recall"], t["precision"]))
    return out


def pr_figure(report: dict[str, Any], y: np.ndarray, scores: np.ndarray) -> Any:
    """Which precision at which recall: the curve, where the MEDIUM and HIGH thresholds sit on
    it, and the prevalence (what a random ranking would give)."""
    import matplotlib.pyplot as plt

    precision, recall = pr_curve(y, scores)
    prevalence = float(y.mean())
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.plot(recall, precision, drawstyle="steps-post", label="served fraud_score")
    ax.axhline(
        prevalence, color="grey", linestyle="--", label=f"prevalence {prevalence:.4f} (random ranking)"
    )
    for (name, threshold, r, p), marker in zip(_operating_points(report), ("o", "s"), strict=False):
        ax.plot([r], [p], marker=marker, linestyle="none", markersize=8, label=f"{name} at {threshold:g}")
    ax.set(
        xlabel="recall (share of frauds caught)",
        ylabel="precision (share of flagged that are fraud)",
        title=f"Which precision at which recall? AP {report['average_precision']:.3f} "
        f"(random: {prevalence:.4f})",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def score_figure(report: dict[str, Any], y: np.ndarray, scores: np.ndarray) -> Any:
    """Where frauds and legitimate events score, with the thresholds that turn a score into a decision."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    bins = np.linspace(0, 100, 51).tolist()
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, density=True, label=f"legitimate ({int((y == 0).sum()):,})")
    if y.sum():
        ax.hist(scores[y == 1], bins=bins, alpha=0.6, density=True, label=f"fraud ({int(y.sum()):,})")
    for (name, threshold, _, _), style in zip(_operating_points(report), (":", "-"), strict=False):
        ax.axvline(threshold, color="black", linestyle=style, label=f"{name} threshold {threshold:g}")
    ax.set(
        xlabel="fraud_score",
        ylabel="density (log)",
        title="Where do frauds and legitimate events score?",
        yscale="log",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


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
        fig = pr_figure(report, y, scores)
        fig.savefig(out / "pr_curve.png", dpi=110)
        plt.close(fig)
        files.append(out / "pr_curve.png")
    fig = score_figure(report, y, scores)
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)
    files.append(out / "scores.png")
    latencies = np.array([s.latency_s for s in scored if s.latency_s is not None])
    if len(latencies):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.hist(latencies * 1000, bins=60)
        ax.set(
            xlabel="broker timestamp to Postgres row (ms)",
            ylabel="events",
            title="How long until the verdict is stored?\n(a fast replay's queueing is included)",
        )
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


# -- prequential evaluation -----------------------------------------------------
_HISTORY = """
WITH l AS (
    SELECT event_id,
           (array_agg(is_fraud ORDER BY label_time DESC, is_fraud))[1] AS is_fraud,
           min(label_time) FILTER (WHERE is_fraud) AS known
    FROM labels GROUP BY event_id
)
SELECT s.event_id, extract(epoch FROM s.event_time)::float8, s.features, s.fraud_score, s.challenger_score,
       s.rules_score, s.isolation_forest_score, s.autoencoder_score, s.supervised_score, s.triggered_rules,
       l.is_fraud, extract(epoch FROM l.known)::float8
FROM scored_events s LEFT JOIN l ON l.event_id = s.event_id
ORDER BY s.event_time, s.event_id
"""
COMPONENT_COLUMNS = ("rules", "isolation_forest", "autoencoder", "supervised")


@dataclass(frozen=True)
class History:
    """Every scored event in event-time order, with what the job served and its labels."""

    event_ids: list[str]
    ts: np.ndarray
    features: list[Any]
    y: np.ndarray
    known_at: np.ndarray
    champion: np.ndarray
    challenger: np.ndarray
    components: dict[str, np.ndarray]
    triggered: list[list[str]]


def _floats(values: Iterable[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def fetch_history(
    database_url: str, labels: dict[str, tuple[bool, str]] | None = None, delay_days: float = 7.0
) -> History:
    """Scored events with features and scores; labels from the ``labels`` table (their
    ``label_time`` says when each was known) or, when given, from label files (known
    ``delay_days`` after the event)."""
    import msgspec

    from operators.features import Features

    with psycopg.connect(database_url) as conn, conn.cursor(name="prequential") as cur:
        cur.itersize = 50_000
        cur.execute(_HISTORY)
        rows = cur.fetchall()
    ts = np.array([r[1] for r in rows], dtype=np.float64)
    if labels is None:
        y = np.array([bool(r[10]) for r in rows], dtype=int)
        known = np.array([np.inf if r[11] is None or not r[10] else r[11] for r in rows], dtype=np.float64)
    else:
        y = np.array([labels.get(r[0], (False, ""))[0] for r in rows], dtype=int)
        known = np.where(y == 1, ts + delay_days * 86_400.0, np.inf)
    return History(
        [r[0] for r in rows],
        ts,
        [msgspec.convert(r[2], Features) for r in rows],
        y,
        known,
        _floats(r[3] for r in rows),
        _floats(r[4] for r in rows),
        {name: _floats(r[5 + k] for r in rows) for k, name in enumerate(COMPONENT_COLUMNS)},
        [list(r[9]) for r in rows],
    )


def prequential_report(
    history: History,
    columns: tuple[str, ...],
    config: PrequentialConfig,
    ensemble: EnsembleConfig,
    rule_points: dict[str, int],
    force_high: frozenset[str],
    candidate_weights: dict[str, float] | None = None,
    candidate_points: dict[str, int] | None = None,
    scenarios: dict[str, tuple[bool, str]] | None = None,
) -> dict[str, Any]:
    """Prequential evaluation of what the job served, the shadow challenger, a supervised
    model retrained every fold, and the ensemble with it (see :mod:`models.prequential`).

    ``ensemble + retrained`` is the served formula (:func:`operators.ensemble.ensemble_scores`) with
    the retrained model as its supervised component; ``candidate`` is the same with other
    weights and rule points: the offline A/B test of an ensemble or rule change.
    """
    from models.prequential import prequential
    from operators.ensemble import ensemble_scores, rules_scores
    from operators.features import feature_matrix

    x = feature_matrix(history.features, None, columns)
    forced = np.array([bool(force_high & set(fired)) for fired in history.triggered], dtype=bool)
    comps = history.components

    def with_retrained(cfg: EnsembleConfig, rules: np.ndarray) -> Blend:
        def score(idx: np.ndarray, retrained: np.ndarray) -> np.ndarray:
            parts = {name: comps[name][idx] for name in ("isolation_forest", "autoencoder")}
            return ensemble_scores({"rules": rules[idx], **parts, "supervised": retrained}, cfg, forced[idx])

        return score

    blends = {"ensemble + retrained": with_retrained(ensemble, comps["rules"])}
    if candidate_weights or candidate_points:
        candidate = ensemble.model_copy(update={"weights": {**ensemble.weights, **(candidate_weights or {})}})
        points = {**rule_points, **(candidate_points or {})}
        blends["candidate + retrained"] = with_retrained(candidate, rules_scores(history.triggered, points))
    scores = {"champion (served)": history.champion}
    if np.isfinite(history.challenger).any():
        scores["challenger (shadow)"] = history.challenger
    groups = [scenarios.get(e, (False, ""))[1] for e in history.event_ids] if scenarios else None
    report = prequential(history.ts, x, history.y, history.known_at, scores, config, blends, groups=groups)
    report["columns"] = list(columns)
    if candidate_weights or candidate_points:
        report["candidate"] = {"weights": candidate_weights or {}, "points": candidate_points or {}}
    return report


def write_prequential(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    c = report["config"]
    files = [out / "prequential.json", out / "prequential.md"]
    files[0].write_text(json.dumps(report, indent=2))
    lines = [
        "# Prequential evaluation",
        "",
        f"Label delay {c['delay_days']:g} days, test windows of {c['test_days']:g} days, training on "
        + ("all earlier history" if c["train_days"] is None else f"the {c['train_days']:g} days")
        + f" before the delay. {report['tested_events']:,} events tested "
        f"({report['tested_frauds']:,} frauds) of {report['events']:,}.",
        "",
        "| score | pooled AP | mean AP per window | windows |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {_fmt(v['pooled_ap'])} | {_fmt(v['mean_fold_ap'])} | {v['folds']} |"
        for name, v in report["summary"].items()
    ]
    if "candidate" in report:
        lines += ["", f"Candidate: {json.dumps(report['candidate'])}"]
    by_group = {n: v["pooled_ap_by_group"] for n, v in report["summary"].items() if "pooled_ap_by_group" in v}
    if by_group:
        scenario_names = sorted({g for v in by_group.values() for g in v})
        lines += [
            "",
            "Pooled AP per scenario (its frauds against every legitimate event):",
            "",
            "| score | " + " | ".join(scenario_names) + " |",
            "|---|" + "---:|" * len(scenario_names),
        ]
        lines += [
            f"| {n} | " + " | ".join(_fmt(v.get(g)) for g in scenario_names) + " |"
            for n, v in by_group.items()
        ]
    names = list(report["summary"])
    lines += [
        "",
        "## Windows",
        "",
        "| test from | train events | known frauds | test events | test frauds | " + " | ".join(names) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    for f in report["folds"]:
        cells = (
            [f"skipped: {f['skipped']}"] + [""] * (len(names) - 1)
            if f["skipped"]
            else [_fmt(f["ap"].get(n)) for n in names]
        )
        lines.append(
            f"| {f['test_from'][:10]} | {f['train_events']:,} | {f['train_known_frauds']:,} | "
            f"{f['test_events']:,} | {f['test_frauds']:,} | " + " | ".join(cells) + " |"
        )
    files[1].write_text("\n".join(lines) + "\n")
    return files
