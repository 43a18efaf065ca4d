"""Detection-quality metrics over scored events and their labels (pure functions).

Card precision@k follows the fraud-detection handbook of Le Borgne et al.: for
each day, rank cards (users) by their highest fraud score that day, take the
top ``k``, and count the share of them with at least one fraudulent
transaction that day; report the mean over days, and the best mean possible
(days with fewer than ``k`` compromised cards cap it).

>>> confusion([1, 0, 1, 0], [1, 1, 0, 0])
{'tp': 1, 'fp': 1, 'fn': 1, 'tn': 1}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

__all__ = [
    "average_precision",
    "card_precision_at_k",
    "confusion",
    "ranking_metrics",
    "rates",
    "recall_by_group",
]


def confusion(y: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> dict[str, int]:
    y_arr, p_arr = np.asarray(y, dtype=bool), np.asarray(predicted, dtype=bool)
    return {
        "tp": int(np.sum(y_arr & p_arr)),
        "fp": int(np.sum(~y_arr & p_arr)),
        "fn": int(np.sum(y_arr & ~p_arr)),
        "tn": int(np.sum(~y_arr & ~p_arr)),
    }


def rates(c: dict[str, int]) -> dict[str, float | None]:
    """Precision, recall (true-positive rate) and false-positive rate; None when undefined."""

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "precision": ratio(c["tp"], c["tp"] + c["fp"]),
        "recall": ratio(c["tp"], c["tp"] + c["fn"]),
        "fpr": ratio(c["fp"], c["fp"] + c["tn"]),
    }


def ranking_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC-AUC and average precision of the scores (None with a single class)."""
    if len(np.unique(y)) < 2:
        return {"roc_auc": None, "average_precision": None}
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
    }


def average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision over the rows that have a score (NaN: none); None if undefined.

    >>> average_precision(np.array([1, 0, 1]), np.array([0.9, 0.1, np.nan]))
    1.0
    """
    keep = np.isfinite(scores)
    ap = ranking_metrics(y[keep], scores[keep])["average_precision"] if keep.any() else None
    return None if ap is None else float(ap)


def pr_curve(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision, recall, _ = precision_recall_curve(y, scores)
    return precision, recall


def card_precision_at_k(
    days: Sequence[str], cards: Sequence[str], y: Sequence[int], scores: Sequence[float], k: int = 100
) -> dict[str, Any]:
    """Mean over days of the share of the top-``k`` cards that had a fraud that day."""
    best: dict[str, dict[str, float]] = defaultdict(dict)
    fraud: dict[str, set[str]] = defaultdict(set)
    for day, card, label, score in zip(days, cards, y, scores, strict=True):
        if score > best[day].get(card, -np.inf):
            best[day][card] = score
        if label:
            fraud[day].add(card)
    per_day, ceiling = {}, []
    for day, card_scores in sorted(best.items()):
        top = sorted(card_scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        per_day[day] = sum(1 for card, _ in top if card in fraud[day]) / k
        ceiling.append(min(len(fraud[day]), k) / k)
    return {
        "k": k,
        "mean": float(np.mean(list(per_day.values()))) if per_day else None,
        "best_possible": float(np.mean(ceiling)) if ceiling else None,
        "per_day": per_day,
    }


def recall_by_group(
    groups: Sequence[Sequence[str]], y: Sequence[int], predicted: Sequence[int]
) -> dict[str, dict[str, float | int]]:
    """Recall among the fraudulent events of each group (an event can be in several)."""
    total: dict[str, int] = defaultdict(int)
    hit: dict[str, int] = defaultdict(int)
    for names, label, pred in zip(groups, y, predicted, strict=True):
        if not label:
            continue
        for name in names:
            total[name] += 1
            hit[name] += int(bool(pred))
    return {
        name: {"frauds": total[name], "detected": hit[name], "recall": hit[name] / total[name]}
        for name in sorted(total)
    }
