"""Cost per event of the user-state features and of the rules, custom rules included,
and what moving events between processes costs.

    python -m bench features [--events 200000] [--users 2000] [--repeats 5]

Events from the generated workload, decoded once, are run through
:func:`operators.features.update_profile` in event-time order against fresh
states: the per-event Python the user shard step runs for every event. Then the
whole user shards (id memory, state, features, the user's risk window) and the
merchant and device windows, in batches of 1,000 split by shard. Then the
rules on the featured events: the built-in rules alone, and with three custom
rules (safe expressions, :mod:`operators.rulesets`) as the scoring step runs
them. Then scoring around the model call (the matrix, rules, ensemble and verdicts of
``score_batch``, the model's scores given) and the records the sinks write (the
``scored_events`` row, the decision message). Last, the items that cross to another
process at a keyed step (with several processes): a list of accepted events (into the user shards) and of
featured events (into the merchant and device shards), pickled and unpickled as
Bytewax does, per event, in lists of 1,000 and of 1, 16 and 64 (a keyed step pickles
each item on its own). The collector runs at a job process's thresholds
(:data:`flows.runner.GC_THRESHOLDS`): at Python's defaults it ran inside the timings and
more than doubled the cost of the larger lists. Reported as the median of the repeats in microseconds
per event; compare two revisions by running this in each (the machine is noisy:
same machine, same run).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import statistics
import time

import numpy as np

from apps.replay.workload import generate
from flows.runner import GC_THRESHOLDS
from operators.ensemble import EnsembleConfig
from operators.entity_risk import RiskConfig
from operators.events import TransactionEvent, decode_event
from operators.features import FEATURE_NAMES, Featured, update_profile
from operators.labels import ENTITY_KEYS
from operators.records import encode_decision, scored_event_row
from operators.rules import Blocklists, RuleContext
from operators.rulesets import RuleSet, RuleSetDocument
from operators.scoring import score_batch
from operators.shards import EntityShard, UserShard, UserShardConfig, shard_index
from operators.state import StateLimits, UserState
from operators.validation import Accepted

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)  # as in a job process: what the job's steps see
    try:
        return _run(args)
    finally:
        gc.set_threshold(*thresholds)


def _run(args: argparse.Namespace) -> dict[str, float]:
    events = [
        ev
        for _, raw in generate(args.events, args.users, malformed=0).messages
        if isinstance(ev := decode_event(raw), TransactionEvent)
    ]
    accepted = [Accepted(ev, ts := ev.timestamp.timestamp(), None, ts) for ev in events]
    limits = StateLimits()
    runs = []
    for _ in range(args.repeats):
        states: dict[str, UserState] = {}
        start = time.perf_counter()
        for acc in accepted:
            update_profile(states.setdefault(acc.event.user_id, UserState()), acc, limits)
        runs.append((time.perf_counter() - start) / len(accepted) * 1e6)
    result = {"events": float(len(accepted)), "us_per_event": statistics.median(runs)}
    n = len(accepted)
    print(f"update_profile: {result['us_per_event']:.2f} µs/event (median of {args.repeats}, {n:,} events)")
    result.update(_shards(accepted, args.repeats))
    featured: list[Featured] = []
    states = {}
    for acc in accepted:
        featured.append(update_profile(states.setdefault(acc.event.user_id, UserState()), acc, limits))
    for name, ruleset in (
        ("rules_builtin", RuleSet.from_config(RuleSetDocument().rules)),
        ("rules_custom3", CUSTOM),
    ):
        ctx = RuleContext(ruleset.config)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for item in featured:
                ruleset.evaluate(item.accepted.event, item.features, ctx)
            times.append((time.perf_counter() - start) / n * 1e6)
        result[f"{name}_us_per_event"] = statistics.median(times)
        print(f"{name}: {result[f'{name}_us_per_event']:.2f} µs/event")
    result.update(_scoring(featured, args.repeats))
    for name, items in (("accepted", accepted), ("featured", featured)):
        result[f"pickle_{name}_us_per_event"] = _round_trip(items, args.repeats)
        print(f"pickle + unpickle, {name}: {result[f'pickle_{name}_us_per_event']:.2f} µs/event")
        for size in PICKLE_LIST_SIZES:
            key = f"pickle_{name}_in_{size}_us_per_event"
            result[key] = _round_trip(items, args.repeats, size)
            print(f"  in lists of {size}: {result[key]:.2f} µs/event")
    return result


def _shards(accepted: list[Accepted], repeats: int, shards: int = 64, batch: int = 1000) -> dict[str, float]:
    """µs per event of the user shards (id memory, state and features, user risk window)
    and of the merchant and device windows, fed batches of ``batch`` events split by
    shard as the job's steps split them (the median of ``repeats`` fresh runs)."""
    config = UserShardConfig(risk=RiskConfig())
    keys = tuple((kind, ENTITY_KEYS[kind]) for kind in ("merchant", "device"))
    users_us, windows_us = [], []
    for _ in range(repeats):
        users = [UserShard() for _ in range(shards)]
        entities = {kind: [EntityShard() for _ in range(shards)] for kind, _ in keys}
        t_users = t_windows = 0.0
        for start in range(0, len(accepted), batch):
            parts: dict[int, list[Accepted]] = {}
            for acc in accepted[start : start + batch]:
                parts.setdefault(shard_index(acc.event.user_id, shards), []).append(acc)
            began = time.perf_counter()
            featured: list[Featured] = []
            for k, part in parts.items():
                featured += users[k].process(part, [], 0.0, config)[0]
            t_users += time.perf_counter() - began
            for kind, key_of in keys:
                by_shard: dict[int, list[Featured]] = {}
                for item in featured:
                    by_shard.setdefault(shard_index(key_of(item.accepted.event) or "", shards), []).append(
                        item
                    )
                began = time.perf_counter()
                for k, group in by_shard.items():
                    entities[kind][k].process(group, [], kind, key_of, config.risk or RiskConfig(), 0.0)
                t_windows += time.perf_counter() - began
        users_us.append(t_users / len(accepted) * 1e6)
        windows_us.append(t_windows / len(accepted) * 1e6)
    out = {
        "user_shards_us_per_event": statistics.median(users_us),
        "entity_windows_us_per_event": statistics.median(windows_us),
    }
    print(f"user shards (ids, state, features, user window): {out['user_shards_us_per_event']:.2f} µs/event")
    print(f"merchant and device windows: {out['entity_windows_us_per_event']:.2f} µs/event")
    return out


class _FixedScores:
    """Model scores without a model: every component a fixed column, so what is timed
    is what the scoring step does around the model call (which ``bench model_scoring``
    times)."""

    version = "bench"
    columns = FEATURE_NAMES

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.scores = {name: rng.uniform(0, 100, n) for name in ("isolation_forest", "autoencoder")}

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {name: s[: len(x)] for name, s in self.scores.items()}


def _scoring(featured: list[Featured], repeats: int, batch: int = 1000) -> dict[str, float]:
    """µs per event of scoring around the model call (the matrix, the rules, the ensemble,
    the verdicts; :func:`operators.scoring.score_batch` in batches of ``batch``), then of
    the records the sinks write: the ``scored_events`` row of the binary COPY and the
    decisions topic's message (the medians of ``repeats``)."""
    models = _FixedScores(batch)
    rules = RuleSet.from_config(RuleSetDocument().rules)
    lists = [featured[i : i + batch] for i in range(0, len(featured), batch)]
    timed: dict[str, list[float]] = {"score_batch": [], "scored_row": [], "decision": []}
    for _ in range(repeats):
        start = time.perf_counter()
        scored = [
            s for part in lists for s in score_batch(part, models, rules, Blocklists(), EnsembleConfig(), 0.0)
        ]
        timed["score_batch"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for s in scored:
            scored_event_row(s, binary=True)
        timed["scored_row"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for s in scored:
            encode_decision(s)
        timed["decision"].append(time.perf_counter() - start)
    out = {f"{name}_us_per_event": statistics.median(t) / len(featured) * 1e6 for name, t in timed.items()}
    for name in timed:
        print(f"{name}: {out[f'{name}_us_per_event']:.2f} µs/event")
    return out


PICKLE_LIST_SIZES = (1, 16, 64)
"""Events per item that crosses to another process: a keyed step pickles each item on
its own, so small items pay the per-item cost (the class references, the list) per event."""


def _round_trip(items: list[Accepted] | list[Featured], repeats: int, batch: int = 1000) -> float:
    """Median µs per item to pickle and unpickle ``items`` in lists of ``batch``
    (what a keyed step does to a list bound for another process)."""
    lists = [items[i : i + batch] for i in range(0, len(items), batch)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for part in lists:
            pickle.loads(pickle.dumps(part))
        times.append((time.perf_counter() - start) / len(items) * 1e6)
    return statistics.median(times)


CUSTOM = RuleSet.build(
    RuleSetDocument.model_validate(
        {
            "custom": [
                {
                    "name": "big_for_user",
                    "when": 'amount > 3 * user_mean_amount and merchant_category in ["jewelry", "travel"]',
                    "points": 30,
                    "reason": "{amount} is over 3x the user's mean",
                },
                {"name": "night_spend", "when": "hour_of_day < 5 and spend_ratio_24h > 4", "points": 20},
                {"name": "far_and_fast", "when": "distance_km > 300 and events_1h >= 2", "points": 25},
            ]
        }
    ),
    version=1,
)
