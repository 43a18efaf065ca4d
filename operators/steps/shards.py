"""The sharded state steps: users (with the id memory and the user risk window)
and merchant or device risk windows, one Bytewax key per shard, whole lists per
call (see :mod:`operators.shards`).

    lists of events ─ split by shard ─┐
             labels ─ by shard ───────┴─ shard logic (a batch per call) ─> lists of featured events

Idle entries are swept every ``ttl_s / 10`` (at most a minute), on traffic or
on a timer, the shards of a step one after another over that period (not all in
one activation); a shard itself is never discarded. With ``snapshots=False`` (no
recovery directory) the per-epoch snapshot is skipped: nothing would read it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import StatefulBatchLogic

from operators import kernels, metrics
from operators.entity_risk import RiskConfig
from operators.events import TransactionEvent
from operators.features import Featured
from operators.labels import ENTITY_KEYS, KnownLabel
from operators.parcels import AcceptedParcel, FeaturedParcel
from operators.shards import EntityShard, UserShard, UserShardConfig, shard_index
from operators.steps import home
from operators.validation import Accepted, DeadLetter

__all__ = ["UserStreams", "entity_shards", "user_shards"]

T = TypeVar("T")


class _Shard(Protocol):
    def snapshot(self) -> bytes: ...


S = TypeVar("S", bound=_Shard)


class _ShardLogic(StatefulBatchLogic[Any, Any, bytes | None], Generic[S]):
    """Run ``process(shard, events, labels, now)`` per call; ``sweep(shard, now)`` idle
    entries every ``sweep_every_s`` (on traffic or on a timer), the first after
    ``first_sweep_s``."""

    def __init__(
        self,
        shard: S,
        process: Callable[[S, list[Any], list[KnownLabel], float], list[Any]],
        sweep: Callable[[S, float], None],
        sweep_every_s: float,
        clock: Callable[[], float],
        snapshots: bool,
        stage: str,
        first_sweep_s: float | None = None,
    ) -> None:
        self.shard, self.process, self.sweep, self.clock = shard, process, sweep, clock
        self.snapshots = snapshots
        self.seconds = metrics.STAGE_SECONDS.labels(stage)
        self.every = sweep_every_s
        self.next_sweep = clock() + (self.every if first_sweep_s is None else first_sweep_s)

    def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
        began = time.perf_counter()
        events: list[Any] = []
        labels: list[KnownLabel] = []
        for value in values:
            if isinstance(value, KnownLabel):
                labels.append(value)
            else:
                events.extend(value)
        now = self.clock()
        out = self.process(self.shard, events, labels, now)
        if now >= self.next_sweep:
            self._sweep(now)
        self.seconds.observe(time.perf_counter() - began)
        return out, StatefulBatchLogic.RETAIN

    def _sweep(self, now: float) -> None:
        self.sweep(self.shard, now)
        self.next_sweep = now + self.every

    def on_notify(self) -> tuple[list[Any], bool]:
        self._sweep(self.clock())
        return [], StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime:
        return datetime.fromtimestamp(self.next_sweep, UTC)

    def snapshot(self) -> bytes | None:
        return self.shard.snapshot() if self.snapshots else None


def _sweep_every(ttl_s: float) -> float:
    return min(ttl_s / 10.0, 60.0)


def _staggered(every_s: float, shards: int) -> Iterator[float]:
    """When the shards a step builds, in turn, sweep first: one ``1/shards`` of the period
    after another, so each activation sweeps about one shard. All at once, an activation
    swept every entry the process holds, each idle one decoded to read its ``touched_at``:
    at 1,000,000 users (state and user risk windows, encoded after a snapshot) the 64 user
    shards took 0.92 s, a stall of the worker every minute; one shard takes 14 ms.

    >>> list(itertools.islice(_staggered(60.0, 4), 5))
    [15.0, 30.0, 45.0, 60.0, 15.0]
    """
    count = max(1, shards)
    return itertools.cycle([every_s * (i + 1) / count for i in range(count)])


def _split(
    key_of: Callable[[T], str | None], shards: Sequence[str], parcel: Callable[[], list[T]]
) -> Callable[[list[list[T]]], list[tuple[str, list[T]]]]:
    """All the lists one activation brings to one ``parcel`` per shard of ``key_of``
    (under the shard's name, ``shards[shard_index(key)]``); items without a key go under ``""``.

    Splitting the lists together, not one by one, sends each shard one item per
    activation: an item that crosses to another process is pickled on its own,
    and the shard steps' outputs were lists of about ten events that split into
    items of one or two. A parcel crosses as msgpack (:mod:`operators.parcels`)."""

    def split(lists: list[list[T]]) -> list[tuple[str, list[T]]]:
        return kernels.split_lists(lists, key_of, shards, parcel)

    return split


def _keyed_labels(
    labels: Stream[KnownLabel] | None, kind: str, shards: Sequence[str]
) -> op.KeyedStream[KnownLabel] | None:
    """Labels of events that have a ``kind``, keyed by that entity's shard (substeps of the caller)."""
    if labels is None:
        return None
    relevant = op.filter("labels_with_key", labels, lambda k: k.key(kind) is not None)
    count = len(shards)
    return op.key_on("label_shard", relevant, lambda k: shards[shard_index(k.key(kind) or "", count)])


@dataclass(frozen=True)
class UserStreams:
    oks: Stream[list[Featured]]
    """Events with the user's features (and the user risk window's), one list per shard call."""
    dups: Stream[DeadLetter]
    """Re-used event ids, as dead letters."""


@operator
def user_shards(
    step_id: str,
    up: Stream[list[Accepted]],
    labels: Stream[KnownLabel] | None,
    config: UserShardConfig,
    shards: Sequence[str],
    ttl_s: float,
    risk_ttl_s: float,
    snapshots: bool = True,
    clock: Callable[[], float] = time.time,
) -> UserStreams:
    """Per-user features for every list of events, keeping each user's state in its shard
    (``shards``: their names, :func:`operators.shards.shard_names`)."""
    routed: op.KeyedStream[Any] = op.flat_map_batch(
        "route", up, _split(lambda a: a.event.user_id, shards, AcceptedParcel)
    )
    keyed_labels = _keyed_labels(labels, "user", shards) if config.risk is not None else None
    if keyed_labels is not None:
        routed = op.merge("with_labels", routed, keyed_labels)

    def process(
        shard: UserShard, events: list[Accepted], labs: list[KnownLabel], now: float
    ) -> list[tuple[list[Featured], list[DeadLetter]]]:
        before = len(shard.users)
        featured, dups = shard.process(events, labs, now, config)
        metrics.USER_STATES.inc(len(shard.users) - before)
        if dups:
            metrics.EVENTS.labels("duplicate").inc(len(dups))
            metrics.DLQ_EVENTS.labels("event_id").inc(len(dups))
        return [(featured, dups)]

    def sweep(shard: UserShard, now: float) -> None:
        metrics.USER_STATES.dec(shard.sweep(now - ttl_s, now - risk_ttl_s))

    every = _sweep_every(ttl_s)
    first_sweeps = _staggered(every, len(shards))

    def build(resume: bytes | None) -> _ShardLogic[UserShard]:
        shard = UserShard.restore(resume) if resume else UserShard(snapshots)
        metrics.USER_STATES.inc(len(shard.users))
        return _ShardLogic(shard, process, sweep, every, clock, snapshots, "users", next(first_sweeps))

    out = op.stateful_batch("users", routed, build)
    oks = op.flat_map_batch("events", out, _gather_events)
    dups = op.flat_map_batch("duplicates", out, _gather_duplicates)
    return UserStreams(oks, dups)


def _gather_events(items: list[tuple[str, tuple[list[Featured], list[DeadLetter]]]]) -> list[list[Featured]]:
    """The featured events of every shard call one activation brings, as one list (the next
    step splits one list per activation, not one per shard)."""
    if items:
        home.note(items[0][0])
    events = [f for _, (featured, _) in items for f in featured]
    return [events] if events else []


def _gather_duplicates(items: list[tuple[str, tuple[list[Featured], list[DeadLetter]]]]) -> list[DeadLetter]:
    return [d for _, (_, dups) in items for d in dups]


@operator
def entity_shards(
    step_id: str,
    up: Stream[list[Featured]],
    labels: Stream[KnownLabel] | None,
    kind: str,
    config: RiskConfig,
    shards: Sequence[str],
    ttl_s: float,
    snapshots: bool = True,
    clock: Callable[[], float] = time.time,
) -> Stream[list[Featured]]:
    """``kind``'s risk features on every event that has that entity (others pass by)."""
    key_of: Callable[[TransactionEvent], str | None] = ENTITY_KEYS[kind]

    routed: op.KeyedStream[Any] = op.flat_map_batch(
        "route", up, _split(lambda f: key_of(f.accepted.event), shards, FeaturedParcel)
    )
    passing = op.filter_map("without_key", routed, lambda kv: kv[1] if kv[0] == "" else None)
    keyed: op.KeyedStream[Any] = op.filter("with_key", routed, lambda kv: kv[0] != "")
    keyed_labels = _keyed_labels(labels, kind, shards)
    if keyed_labels is not None:
        keyed = op.merge("with_labels", keyed, keyed_labels)
    live = metrics.ENTITY_STATES.labels(kind)

    def process(shard: EntityShard, events: list[Featured], labs: list[KnownLabel], now: float) -> list[Any]:
        before = len(shard.windows)
        out = shard.process(events, labs, kind, key_of, config, now)
        live.inc(len(shard.windows) - before)
        return [out] if out else []

    def sweep(shard: EntityShard, now: float) -> None:
        live.dec(shard.sweep(now - ttl_s))

    every = _sweep_every(ttl_s)
    first_sweeps = _staggered(every, len(shards))

    def build(resume: bytes | None) -> _ShardLogic[EntityShard]:
        shard = EntityShard.restore(resume) if resume else EntityShard(snapshots)
        live.inc(len(shard.windows))
        return _ShardLogic(shard, process, sweep, every, clock, snapshots, "risk_windows", next(first_sweeps))

    windowed = op.flat_map_batch("gather", op.stateful_batch("windows", keyed, build), _gather_windowed)
    return op.merge("rejoin", windowed, passing)


def _gather_windowed(items: list[tuple[str, list[Featured]]]) -> list[list[Featured]]:
    """Every shard call's events of one activation as one list."""
    if items:
        home.note(items[0][0])
    events = [f for _, part in items for f in part]
    return [events] if events else []
