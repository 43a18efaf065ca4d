"""Detection quality of every component and of the served score, beside simple baselines.

    python -m bench quality [--datasets sparkov,tlc] [--cards N] [--epochs E]
                            [--label-delay-days 7] [--train-days D] [--json F] [--markdown F]

Each dataset is replayed in event-time order through the job's own per-event
code: :func:`models.training.replay_features` runs the user state, features and
entity risk windows that the flow's shard steps run (an end-to-end test checks
they equal what the job serves), then the rules (:func:`operators.rules.evaluate_rules`),
the anomaly models and the ensemble's served formula
(:func:`operators.ensemble.ensemble_scores`, equal to the scoring step's
``combine``, property-tested). Kafka, Postgres and Redis are left out: they do
not change a score, and a replay of 1.7M events through them takes an hour here.

Two settings per dataset, both scored on the same late part:

* **no labels**: the anomaly models are trained on the early part as
  ``fraudstream train`` does; the served score is the ``evidence`` profile (tail
  rarity) and, for reference, the ``weighted`` 85/10/5 profile over percentiles;
* **labels**: fraud labels come back ``--label-delay-days`` late, feed the risk
  windows (so ``compromised_merchant`` can fire) and a supervised model retrained
  every week on what was known then (the retraining CronJob: all the history,
  or the last ``--train-days``); served = the same profiles with that model as a
  component.

Each score gets average precision, ROC-AUC, recall at 1% false-positive rate and
card precision@100 per day; the baselines are raw amount and amount ÷ the card's
running mean, computed in the same run. Datasets (read in place):

* ``sparkov``: ``../shared/data/sparkov_generated/transactions.parquet``; train on
  2019-Q1, score from 2020-07-02 06:00 UTC (its README's baseline window);
* ``tlc``: every ``../shared/data/nyc_tlc_yellow_gx_samples`` trip with the
  replay's default fraud injection (seed 7) and riders; train on 2018, score
  2019 onwards; also recall per injected scenario at the alert threshold.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from models.autoencoder import AutoencoderScorer
from models.calibration import QuantileCalibrator
from models.champion import supervised_columns
from models.evaluation import card_precision_at_k, ranking_metrics
from models.isolation_forest import IsolationForestScorer
from models.supervised import SupervisedScorer
from models.training import EntityRisk, replay_features
from operators.ensemble import EnsembleConfig, ensemble_scores
from operators.events import Location, TransactionEvent
from operators.features import FEATURE_NAMES, Features, feature_matrix
from operators.labels import Label
from operators.rules import RULES, RuleContext, RulesConfig, evaluate_rules

__all__ = ["Dataset", "evaluate_dataset", "main", "score_metrics"]

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DAY = 86_400.0
TLC_ATTRIBUTES = ("trip_distance", "duration_minutes", "fare_per_mile", "trip_speed_mph")


@dataclass
class Dataset:
    name: str
    events: list[TransactionEvent]
    y: np.ndarray
    scenario: list[str]
    train_until: float
    test_from: float
    attributes: tuple[str, ...] = ()


# -- datasets ------------------------------------------------------------------
def sparkov(path: Path, cards: int | None = None) -> Dataset:
    import pyarrow.parquet as pq

    cols = ["tx_id", "cc_num", "unix_time", "category", "amt", "merchant", "merch_lat", "merch_long"]
    cols.append("is_fraud")
    t = pq.read_table(path, columns=cols).to_pydict()
    keep_cards = None
    if cards:
        keep_cards = set(sorted(set(t["cc_num"]))[:cards])
    events, y = [], []
    for i in range(len(t["tx_id"])):
        card = t["cc_num"][i]
        if keep_cards is not None and card not in keep_cards:
            continue
        events.append(
            TransactionEvent(
                event_id=f"sp-{t['tx_id'][i]}",
                user_id=card,
                amount=float(t["amt"][i]),
                timestamp=datetime.fromtimestamp(t["unix_time"][i], UTC),
                merchant_name=t["merchant"][i],
                merchant_category=t["category"][i],
                location=Location(t["merch_lat"][i], t["merch_long"][i]),
            )
        )
        y.append(int(t["is_fraud"][i]))
    return Dataset(
        "sparkov",
        events,
        np.array(y, dtype=np.int8),
        ["fraud" if v else "" for v in y],
        datetime(2019, 4, 1, tzinfo=UTC).timestamp(),
        datetime(2020, 7, 2, 6, tzinfo=UTC).timestamp(),
    )


def tlc(folder: Path, zones_folder: Path) -> Dataset:
    from apps.replay.injection import InjectionConfig, inject
    from apps.replay.riders import RiderModel
    from apps.replay.stream import tlc_events
    from apps.replay.tlc import TripReadReport, ZoneTable

    table = ZoneTable.load(
        zones_folder / "taxi_zone_lookup.csv", zones_folder / "taxi_zone_centroids_latlon__Aditya-jod.csv"
    )
    files = sorted(folder.glob("*.csv"))
    pairs = inject(tlc_events(files, table, RiderModel(7), TripReadReport()), InjectionConfig(seed=7))
    events, scenario = [], []
    for raw, label in pairs:
        events.append(msgspec.convert(raw, TransactionEvent, strict=False))
        scenario.append(label or "")
    order = sorted(range(len(events)), key=lambda i: events[i].timestamp)
    events = [events[i] for i in order]
    scenario = [scenario[i] for i in order]
    return Dataset(
        "tlc",
        events,
        np.array([1 if s else 0 for s in scenario], dtype=np.int8),
        scenario,
        datetime(2019, 1, 1, tzinfo=UTC).timestamp(),
        datetime(2019, 1, 1, tzinfo=UTC).timestamp(),
        TLC_ATTRIBUTES,
    )


# -- metrics -------------------------------------------------------------------
def score_metrics(y: np.ndarray, s: np.ndarray, days: list[str], cards: list[str]) -> dict[str, Any]:
    """AP, ROC-AUC, recall at 1% FPR and card precision@100 per day of one score."""
    s = np.where(np.isfinite(s), s, -np.inf if not np.isfinite(s).any() else np.nanmin(s[np.isfinite(s)]))
    out = ranking_metrics(y, s)
    legit = s[y == 0]
    if len(legit) and y.any():
        threshold = np.quantile(legit, 0.99)
        out["recall_at_1pct_fpr"] = float(np.mean(s[y == 1] > threshold))
    else:
        out["recall_at_1pct_fpr"] = None
    out["card_precision_at_100"] = card_precision_at_k(days, cards, y.tolist(), s.tolist(), 100)["mean"]
    return out


# -- one dataset ---------------------------------------------------------------
def _labels(ds: Dataset, delay_days: float) -> list[Label]:
    return [
        Label(ev.event_id, True, ev.timestamp + timedelta(days=delay_days), "bench")
        for ev, y in zip(ds.events, ds.y, strict=True)
        if y
    ]


def _rules(
    events: list[TransactionEvent], features: list[Features], rows: np.ndarray, config: RulesConfig
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    ctx = RuleContext(config)
    total = np.zeros(len(rows))
    per_rule = {name: np.zeros(len(rows)) for name in RULES}
    forced = np.zeros(len(rows), dtype=bool)
    for j, i in enumerate(rows):
        hits = evaluate_rules(events[i], features[i], ctx)
        for h in hits:
            per_rule[h.rule][j] = 1.0
            forced[j] |= h.force_high
        total[j] = min(100, sum(h.points for h in hits))
    return total, {k: v for k, v in per_rule.items() if v.any()}, forced


def _weekly_supervised(
    x: np.ndarray,
    ts: np.ndarray,
    y: np.ndarray,
    test: np.ndarray,
    delay_days: float,
    train_days: float | None,
) -> np.ndarray:
    """Scores of the test rows by a supervised model retrained every 7 days on the labels known then."""
    out = np.full(len(test), np.nan)
    t_test = ts[test]
    start = float(t_test[0]) if len(t_test) else 0.0
    week = 0
    while len(t_test) and start + week * 7 * DAY <= t_test[-1]:
        t0 = start + week * 7 * DAY
        in_week = (t_test >= t0) & (t_test < t0 + 7 * DAY)
        week += 1
        if not in_week.any():
            continue
        begin = -np.inf if train_days is None else t0 - (delay_days + train_days) * DAY
        lo, hi = np.searchsorted(ts, [begin, t0 - delay_days * DAY])
        if y[lo:hi].sum() < 5:
            continue
        model = SupervisedScorer(seed=0).fit(x[lo:hi], y[lo:hi].astype(int))
        out[in_week] = model.score_batch(x[test[in_week]])
    return out


def evaluate_dataset(
    ds: Dataset,
    epochs: int = 20,
    delay_days: float = 7.0,
    train_days: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every component's and served score's metrics on ``ds``'s late part (see module doc)."""
    started = time.perf_counter()
    rules_cfg = RulesConfig()
    progress(f"{ds.name}: replaying {len(ds.events):,} events without labels")
    feats, ordered = replay_features(ds.events)
    assert [e.event_id for e in ordered] == [e.event_id for e in ds.events], "events must be in time order"
    ts = np.array([e.timestamp.timestamp() for e in ds.events])
    train = np.flatnonzero(ts < ds.train_until)
    test = np.flatnonzero(ts >= ds.test_from)
    columns = FEATURE_NAMES + tuple(f"attr:{a}" for a in ds.attributes)
    x = feature_matrix(feats, ds.events, columns)
    y = ds.y[test].astype(int)
    days = [ds.events[i].timestamp.date().isoformat() for i in test]
    cards = [ds.events[i].user_id for i in test]
    scores: dict[str, np.ndarray] = {}

    amounts = np.array([ds.events[i].amount for i in test])
    means = np.array([np.nan if (m := feats[i].user_mean_amount) is None else m for i in test])
    scores["baseline: amount"] = amounts
    scores["baseline: amount / card mean"] = np.where(means > 0, amounts / np.where(means > 0, means, 1), 1.0)

    progress(f"{ds.name}: training anomaly models on {len(train):,} events")
    models: dict[str, Any] = {
        "isolation_forest": IsolationForestScorer(seed=0).fit(x[train]),
        "autoencoder": AutoencoderScorer(epochs=epochs, seed=0, device="cpu").fit(x[train]),
    }
    tail = {name: m.score_batch(x[test]).astype(np.float64) for name, m in models.items()}
    sample = train[np.random.default_rng(0).permutation(len(train))[:50_000]]
    percentile = {
        name: QuantileCalibrator.fit(m.raw(x[sample])).transform(m.raw(x[test])).astype(np.float64)
        for name, m in models.items()
    }
    for name, s in tail.items():
        scores[f"model: {name}"] = s
    rules, per_rule, forced = _rules(ds.events, feats, test, rules_cfg)
    scores["rules (sum of points)"] = rules
    for name, hit in per_rule.items():
        scores[f"rule: {name}"] = hit
    evidence, weighted = EnsembleConfig(), EnsembleConfig(profile="weighted")
    scores["served, no labels: evidence"] = ensemble_scores({"rules": rules, **tail}, evidence, forced)
    scores["served, no labels: weighted (reference)"] = ensemble_scores(
        {"rules": rules, **percentile}, weighted, forced
    )

    progress(f"{ds.name}: replaying with labels {delay_days:g} days late")
    risk = EntityRisk()
    lfeats, _ = replay_features(ds.events, labels=_labels(ds, delay_days), risk=risk)
    lrules, lper_rule, lforced = _rules(ds.events, lfeats, test, rules_cfg)
    for name, hit in lper_rule.items():
        if name not in per_rule:
            scores[f"rule (labels): {name}"] = hit
    sup_cols = supervised_columns(risk.entities, risk.config.windows)
    xs = feature_matrix(lfeats, None, sup_cols)
    progress(f"{ds.name}: supervised model retrained weekly")
    supervised = _weekly_supervised(xs, ts, ds.y, test, delay_days, train_days)
    scores["model: supervised (weekly)"] = supervised
    scores["served, labels: evidence"] = ensemble_scores(
        {"rules": lrules, **tail, "supervised": supervised}, evidence, lforced
    )
    scores["served, labels: weighted (reference)"] = ensemble_scores(
        {"rules": lrules, **percentile, "supervised": supervised}, weighted, lforced
    )

    progress(f"{ds.name}: metrics")
    report: dict[str, Any] = {
        "events": len(ds.events),
        "train_events": len(train),
        "test_events": len(test),
        "test_frauds": int(y.sum()),
        "test_from": datetime.fromtimestamp(ds.test_from, UTC).isoformat(),
        "columns": list(columns),
        "scores": {name: score_metrics(y, s, days, cards) for name, s in scores.items()},
    }
    scenario = [ds.scenario[i] for i in test]
    if len(set(scenario) - {""}) > 1:
        report["recall_at_alert_by_scenario"] = {
            name: _recall_by_scenario(scenario, scores[name], evidence.medium_threshold)
            for name in ("served, no labels: evidence", "served, no labels: weighted (reference)")
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _recall_by_scenario(scenario: list[str], s: np.ndarray, threshold: float) -> dict[str, float]:
    out: dict[str, list[bool]] = {}
    for name, value in zip(scenario, s, strict=True):
        if name:
            out.setdefault(name, []).append(bool(value >= threshold))
    return {name: float(np.mean(v)) for name, v in sorted(out.items())}


# -- report --------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    lines = []
    for name, r in results["datasets"].items():
        if "skipped" in r:
            lines.append(f"### {name}: skipped ({r['skipped']})\n")
            continue
        lines += [
            f"### {name}: {r['test_events']:,} events scored from {r['test_from'][:16]}, "
            f"{r['test_frauds']:,} frauds ({r['train_events']:,} to train the anomaly models)\n",
            "| score | AP | ROC-AUC | recall at 1% FPR | card precision@100 |",
            "|---|---:|---:|---:|---:|",
        ]
        for score, m in r["scores"].items():
            lines.append(
                f"| {score} | {_f(m['average_precision'])} | {_f(m['roc_auc'])} | "
                f"{_f(m['recall_at_1pct_fpr'])} | {_f(m['card_precision_at_100'])} |"
            )
        for served, by in r.get("recall_at_alert_by_scenario", {}).items():
            lines += ["", f"Recall at the alert threshold (40), {served}:", ""]
            lines += ["| scenario | recall |", "|---|---:|"] + [f"| {k} | {v:.3f} |" for k, v in by.items()]
        lines.append("")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main(argv: Iterable[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="sparkov,tlc")
    parser.add_argument("--cards", type=int, help="sparkov: only the first N cards (a quick run)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--label-delay-days", type=float, default=7.0)
    parser.add_argument(
        "--train-days", type=float, help="supervised: the days of history each retraining sees (default: all)"
    )
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(list(argv) if argv is not None else None)
    wanted = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(wanted) - {"sparkov", "tlc"}
    if unknown:
        parser.error(f"--datasets: unknown {sorted(unknown)} (sparkov, tlc)")

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: dict[str, Any] = {
        "command": "python -m bench quality " + " ".join(argv if argv is not None else sys.argv[2:]),
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "datasets": {},
    }
    for name in wanted:
        where = "sparkov_generated/transactions.parquet" if name == "sparkov" else "nyc_tlc_yellow_gx_samples"
        path = args.data / where
        if not path.exists():
            results["datasets"][name] = {"skipped": f"{path} not found"}
            continue
        ds = sparkov(path, args.cards) if name == "sparkov" else tlc(path, args.data / "nyc_taxi_zones")
        results["datasets"][name] = evaluate_dataset(
            ds, args.epochs, args.label_delay_days, args.train_days, say
        )
    text = markdown(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(text)
    return results
