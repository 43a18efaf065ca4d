"""Supervised training on what the job scored, and champion/challenger promotion.

Training reads ``scored_events`` (and ``scored_events_labelled``, the labelled
rows that outlived retention) joined with ``labels`` from Postgres: the
features are the ones the job served (so training sees exactly what serving
saw, risk windows included), the label of an event is its latest label known
at the training time ``as_of``. Rows are in event-time order; the latest
``validation_days`` are held out, and the model is fitted on what came before.
``as_of`` defaults to the newest ``label_time`` (the labelling clock), and only
events at least ``maturity_days`` older than it are used: for newer ones
the chargebacks may not have arrived, and calling them legitimate would teach
the model wrong labels.

The new version holds the champion's anomaly scorers plus the new supervised
scorer and becomes the **challenger**: the job scores it in shadow beside the
active version. :func:`promote` compares both on the most recent labelled
window of shadow-scored events and activates the challenger only if its
average precision beats the champion's by ``margin``; every decision is
stored in ``model_promotions`` and logged with its numbers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psycopg

from models.artifacts import ModelStore, load_artifact, write_artifact
from models.base import Scorer
from models.evaluation import average_precision
from models.supervised import SupervisedScorer
from operators.entity_risk import RiskConfig, risk_feature_names
from operators.features import FEATURE_NAMES, Features, feature_matrix

__all__ = [
    "LabelledRows",
    "PromotionDecision",
    "decide",
    "labelled_rows",
    "promote",
    "supervised_columns",
    "train_supervised",
]

log = logging.getLogger(__name__)

_ROWS = """
SELECT s.event_id, extract(epoch FROM s.event_time)::float8, s.features, s.fraud_score,
       s.challenger_version, s.challenger_score,
       coalesce((SELECT l.is_fraud FROM labels l
                 WHERE l.event_id = s.event_id AND l.label_time <= %(as_of)s
                 ORDER BY l.label_time DESC, l.is_fraud LIMIT 1), false)
FROM (SELECT event_id, event_time, features, fraud_score, challenger_version, challenger_score
      FROM scored_events
      UNION ALL
      SELECT event_id, event_time, features, fraud_score, challenger_version, challenger_score
      FROM scored_events_labelled) s
WHERE s.event_time <= %(cutoff)s AND s.event_time > %(since)s
ORDER BY s.event_time, s.event_id
"""


def supervised_columns(entities: tuple[str, ...], windows: tuple[int, ...]) -> tuple[str, ...]:
    """The supervised model's columns: the user features plus the entity risk windows'
    label counts and fraud shares.

    The windows' event counts (``<kind>_events_<w>d``) are left out: they follow traffic
    volume, which drifts with the season (on the Sparkov set, a model trained in the autumn
    with them fell from AP 0.98 to 0.03 in December; ``python -m bench quality``).

    >>> supervised_columns(("merchant",), (7,))[-2:]
    ('merchant_frauds_7d', 'merchant_fraud_share_7d')
    """
    config = RiskConfig(windows=windows)
    return FEATURE_NAMES + tuple(
        name
        for kind in entities
        for name in risk_feature_names(kind, config)
        if not name.startswith(f"{kind}_events_")
    )


@dataclass(frozen=True)
class LabelledRows:
    event_ids: list[str]
    event_ts: np.ndarray
    features: list[Features]
    y: np.ndarray
    champion_score: np.ndarray
    challenger_version: list[str | None]
    challenger_score: np.ndarray
    as_of: datetime

    def __len__(self) -> int:
        return len(self.event_ids)


def _as_of(conn: psycopg.Connection, as_of: datetime | None) -> datetime:
    if as_of is not None:
        return as_of
    row = conn.execute("SELECT max(label_time) FROM labels").fetchone()
    if row is None or row[0] is None:
        raise ValueError("no labels yet: send some (fraudstream label) before training or promoting")
    latest: datetime = row[0]
    return latest


def labelled_rows(
    database_url: str,
    maturity_days: int,
    as_of: datetime | None = None,
    since: datetime | None = None,
) -> LabelledRows:
    """Scored events old enough to be labelled, with their labels as known at ``as_of``."""
    with psycopg.connect(database_url) as conn:
        when = _as_of(conn, as_of)
        cutoff = when - timedelta(days=maturity_days)
        rows = conn.execute(
            _ROWS, {"as_of": when, "cutoff": cutoff, "since": since or datetime(1970, 1, 1, tzinfo=UTC)}
        ).fetchall()
    return LabelledRows(
        [r[0] for r in rows],
        np.array([r[1] for r in rows], dtype=np.float64),
        [msgspec.convert(r[2], Features) for r in rows],
        np.array([bool(r[6]) for r in rows], dtype=int),
        np.array([r[3] for r in rows], dtype=np.float64),
        [r[4] for r in rows],
        np.array([math.nan if r[5] is None else r[5] for r in rows], dtype=np.float64),
        when,
    )


@dataclass(frozen=True)
class SupervisedResult:
    version: str
    metrics: dict[str, Any]


def train_supervised(
    database_url: str,
    out: Path,
    columns: tuple[str, ...],
    maturity_days: int,
    validation_days: float = 7.0,
    as_of: datetime | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> SupervisedResult:
    """Fit a supervised scorer on labelled scored events and write it as the challenger.

    The metrics compare, on the held-out latest ``validation_days``, the new
    model's average precision with the champion's (the scores the job gave).
    """
    rows = labelled_rows(database_url, maturity_days, as_of)
    if len(rows) < 200 or rows.y.sum() < 10:
        raise ValueError(
            f"need at least 200 labelled events and 10 frauds old enough to train, got {len(rows)} "
            f"events and {int(rows.y.sum())} frauds (as of {rows.as_of.isoformat()}, "
            f"maturity {maturity_days} days)"
        )
    x = feature_matrix(rows.features, None, columns)
    split = int(np.searchsorted(rows.event_ts, rows.event_ts[-1] - validation_days * 86_400.0))
    if split < len(rows) // 2 or rows.y[:split].sum() < 5:
        split = int(len(rows) * 0.8)  # too short a history for a calendar window: last fifth
    scorer = SupervisedScorer(seed=seed).fit(x[:split], rows.y[:split])
    held_y = rows.y[split:]
    val_scores = scorer.score_batch(x[split:])
    metrics = {
        "as_of": rows.as_of.isoformat(),
        "train_events": split,
        "train_frauds": int(rows.y[:split].sum()),
        "validation_events": len(rows) - split,
        "validation_frauds": int(held_y.sum()),
        "validation_from": datetime.fromtimestamp(rows.event_ts[split], UTC).isoformat()
        if split < len(rows)
        else None,
        "supervised_ap": average_precision(held_y, val_scores),
        "champion_ap": average_precision(held_y, rows.champion_score[split:]),
    }
    store = ModelStore(out)
    champion_version = store.active()
    scorers: dict[str, Scorer] = {}
    per_component: dict[str, tuple[str, ...]] = {}
    union = list(columns)
    if champion_version is not None:
        champion = load_artifact(out / champion_version, device)
        for name, s in champion.scorers.items():
            if name == "supervised":
                continue
            scorers[name] = s
            cols = tuple(champion.component_columns.get(name, champion.columns))
            per_component[name] = cols
            union += [c for c in cols if c not in union]
    scorers["supervised"] = scorer
    per_component["supervised"] = columns
    training = {
        "kind": "supervised",
        "events": len(rows),
        "frauds": int(rows.y.sum()),
        "maturity_days": maturity_days,
        "champion": champion_version,
    }
    version = write_artifact(out, scorers, tuple(union), training, {"supervised": metrics}, per_component)
    store.activate(version, pointer="challenger")
    log.info("trained challenger %s: %s", version, metrics)
    return SupervisedResult(version, metrics)


@dataclass(frozen=True)
class PromotionDecision:
    champion: str
    challenger: str
    promoted: bool
    reason: str
    champion_ap: float | None
    challenger_ap: float | None
    margin: float
    events: int
    frauds: int
    window: tuple[datetime, datetime] | None


def decide(
    champion_ap: float | None, challenger_ap: float | None, margin: float, frauds: int, min_frauds: int
) -> tuple[bool, str]:
    """The promotion rule, as a pure function.

    >>> decide(0.30, 0.62, 0.02, 40, 10)
    (True, 'challenger AP 0.620 >= champion AP 0.300 + margin 0.020')
    >>> decide(0.30, 0.31, 0.02, 40, 10)[0]
    False
    """
    if frauds < min_frauds:
        return False, f"only {frauds} labelled frauds in the window (need {min_frauds})"
    if challenger_ap is None or champion_ap is None:
        return False, "average precision undefined (one class only)"
    if challenger_ap >= champion_ap + margin:
        return (
            True,
            f"challenger AP {challenger_ap:.3f} >= champion AP {champion_ap:.3f} + margin {margin:.3f}",
        )
    return False, f"challenger AP {challenger_ap:.3f} < champion AP {champion_ap:.3f} + margin {margin:.3f}"


def promote(
    database_url: str,
    model_dir: Path,
    maturity_days: int,
    margin: float = 0.02,
    window_days: float = 7.0,
    min_frauds: int = 10,
    as_of: datetime | None = None,
) -> PromotionDecision:
    """Promote the challenger if it beat the champion in shadow; log and store the decision either way."""
    store = ModelStore(model_dir)
    challenger = store.challenger()
    if challenger is None:
        raise ValueError(f"{model_dir}: no challenger to decide on (train one with train --supervised)")
    champion = store.active() or "rules-only"
    rows = labelled_rows(database_url, maturity_days, as_of)
    shadow = np.array([v == challenger for v in rows.challenger_version], dtype=bool)
    ts = rows.event_ts[shadow]
    window: tuple[datetime, datetime] | None = None
    if shadow.any():
        start = ts.max() - window_days * 86_400.0
        recent = np.zeros(len(rows), dtype=bool)
        recent[shadow] = ts > start
        window = (datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(ts.max(), UTC))
    else:
        recent = shadow
    y = rows.y[recent]
    champion_ap = average_precision(y, rows.champion_score[recent])
    challenger_ap = average_precision(y, rows.challenger_score[recent])
    frauds = int(y.sum())
    promoted, reason = decide(champion_ap, challenger_ap, margin, frauds, min_frauds)
    if promoted:
        store.activate(challenger)
        store.clear_challenger()
    decision = PromotionDecision(
        champion,
        challenger,
        promoted,
        reason,
        champion_ap,
        challenger_ap,
        margin,
        int(recent.sum()),
        frauds,
        window,
    )
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO model_promotions (champion_version, challenger_version, promoted, reason, "
            "champion_ap, challenger_ap, margin, events, frauds, window_start, window_end) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (*astuple(decision)[:-1], *(window or (None, None))),
        )
    log.info(
        "champion/challenger: %s %s over %s (%s); %d events, %d frauds",
        "PROMOTED" if promoted else "kept champion,",
        challenger,
        champion,
        reason,
        decision.events,
        frauds,
    )
    return decision
