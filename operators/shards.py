"""State shards: the unit of state on the hot path.

Per-user state, the ids already accepted and the user's risk window live in a
:class:`UserShard`; merchant and device risk windows in an :class:`EntityShard`.
A shard is one Bytewax key (``shard_names(...)[shard_index(key, shards)]``) and processes a whole
batch per call, so Bytewax routes a few lists per poll instead of one item per
event, and the per-key cost of a stateful step is paid per shard, not per
event. Idle entries are dropped by a sweep, not one timer each; a snapshot is
one compact msgpack document.

>>> shard, cfg = UserShard(), UserShardConfig()
>>> from datetime import UTC, datetime
>>> from operators.events import TransactionEvent
>>> ev = TransactionEvent("e1", "u1", 10.0, datetime(2025, 6, 2, 12, tzinfo=UTC))
>>> acc = Accepted(ev, ev.timestamp.timestamp(), None, 0.0, b"d" * 32)
>>> featured, dups = shard.process([acc, acc], [], now=0.0, config=cfg)
>>> len(featured), len(dups), dups[0].error.split(" (")[0]
(1, 1, 'event_id: duplicate of an event already accepted')
>>> UserShard.restore(shard.snapshot()).user("u1").count
1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import msgspec

from operators import kernels
from operators.dedup import DedupConfig, SeenEvents
from operators.entity_risk import LegacyRiskWindow, RiskConfig, RiskWindow
from operators.events import TransactionEvent
from operators.features import Featured
from operators.kernels import admit, update_profile, update_window
from operators.labels import KnownLabel
from operators.routing import shard_index
from operators.shard_names import BALANCE_MODULUS, BALANCED_NAMES
from operators.state import LegacyUserState, StateLimits, UserState
from operators.validation import Accepted, DeadLetter

__all__ = [
    "EntityShard",
    "UserShard",
    "UserShardConfig",
    "shard_index",
    "shard_names",
    "shards_per_worker",
]


def shard_names(shards: int, balanced: bool = True) -> tuple[str, ...]:
    """Each shard's Bytewax key: the names that spread evenly over the workers
    (:mod:`operators.shard_names`; numbers beyond its table), or the numbers
    (``balanced=False``: recovery directories from before the names).

    >>> shard_names(3, balanced=False), len(set(shard_names(64)))
    (('0', '1', '2'), 64)
    """
    if not balanced:
        return tuple(str(i) for i in range(shards))
    return tuple(BALANCED_NAMES[i] if i < len(BALANCED_NAMES) else str(i) for i in range(shards))


def shards_per_worker(shards: int, workers: int, balanced: bool = True) -> tuple[int, int] | None:
    """The fewest and most shards a worker runs, or None where Bytewax's hash decides
    (numbered shards, a shard beyond the names' table, a worker count the names do
    not divide; see :mod:`operators.shard_names`).

    >>> shards_per_worker(64, 8), shards_per_worker(64, 3), shards_per_worker(64, 17)
    ((8, 8), (21, 22), None)
    """
    if not balanced or shards > len(BALANCED_NAMES) or BALANCE_MODULUS % workers:
        return None
    return shards // workers, -(-shards // workers)


@dataclass(frozen=True, slots=True)
class UserShardConfig:
    """What a user shard needs: state bounds, the id memory, the user risk window (None: off)."""

    limits: StateLimits = field(default_factory=StateLimits)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    risk: RiskConfig | None = None
    dead_letter_bytes: int = 16_384


_UserShardSnapshot = tuple[dict[str, UserState], dict[str, RiskWindow], bytes]
_LegacyUserShardSnapshot = tuple[dict[str, LegacyUserState], dict[str, LegacyRiskWindow], bytes]
"""Snapshots written before user events and window days were packed (restored and upgraded)."""


T = TypeVar("T")

_USER = msgspec.msgpack.Decoder(UserState)
_WINDOW = msgspec.msgpack.Decoder(RiskWindow)
_ENCODER = msgspec.msgpack.Encoder()

Users = dict[str, UserState | msgspec.Raw]
"""A shard's users: live structs, or (once snapshotted and not touched since) their
msgpack encoding."""
Windows = dict[str, RiskWindow | msgspec.Raw]
"""A shard's risk windows, live or encoded as :data:`Users`."""


def _warm(
    table: dict[str, Any],
    key: str,
    decoder: msgspec.msgpack.Decoder[T],
    new: Callable[[], T],
    hot: set[str] | None,
) -> T:
    """``key``'s live entry: decoded if it was cold, new if there was none (noted in
    ``hot``, the keys the next snapshot encodes, when the shard keeps one)."""
    value = table.get(key)
    if value is None:
        value = table[key] = new()
    elif type(value) is msgspec.Raw:
        value = table[key] = decoder.decode(value)
    else:
        return value
    if hot is not None:
        hot.add(key)
    return value


def _chill(table: dict[str, Any], keys: Iterable[str] | None = None) -> None:
    """The live entries of ``table`` among ``keys`` (None: all of it) to their msgpack
    encoding: a snapshot then copies the encodings instead of encoding every entry at every
    epoch, and an idle entry takes its encoded size in memory; the next event of an entry
    decodes it again. With the keys warmed since the last snapshot, the untouched entries
    are not even visited (visiting 1M entries scattered in memory took about 0.3 s)."""
    if keys is None:
        keys = list(table)
    for key in keys:
        value = table.get(key)
        if value is not None and type(value) is not msgspec.Raw:
            table[key] = msgspec.Raw(_ENCODER.encode(value))


def _touched_at(value: Any, decoder: msgspec.msgpack.Decoder[Any]) -> float:
    return (decoder.decode(value) if type(value) is msgspec.Raw else value).touched_at


def _sweep(table: dict[str, Any], before: float, decoder: msgspec.msgpack.Decoder[Any]) -> int:
    idle = [key for key, value in table.items() if _touched_at(value, decoder) < before]
    for key in idle:
        del table[key]
    return len(idle)


class UserShard:
    """The users of one shard: their state, the event ids they sent, their risk windows."""

    __slots__ = ("hot", "seen", "users", "windows")

    def __init__(self, snapshots: bool = False) -> None:
        self.users: Users = {}
        self.windows: Windows = {}
        self.seen = SeenEvents()
        self.hot: set[str] | None = set() if snapshots else None
        """With ``snapshots``: the users (and user windows) decoded or created since the last
        snapshot, which the next one encodes; without, nothing is noted (a snapshot then
        visits every entry)."""

    def user(self, uid: str) -> UserState | None:
        """``uid``'s state (decoded if it was cold), or None."""
        return _warm(self.users, uid, _USER, UserState, self.hot) if uid in self.users else None

    def window(self, uid: str) -> RiskWindow | None:
        """``uid``'s risk window (decoded if it was cold), or None."""
        return _warm(self.windows, uid, _WINDOW, RiskWindow, self.hot) if uid in self.windows else None

    def process(
        self, batch: Sequence[Accepted], labels: Sequence[KnownLabel], now: float, config: UserShardConfig
    ) -> tuple[list[Featured], list[DeadLetter]]:
        """Events in arrival order: a re-used id becomes a dead letter; the others get the
        user's features (and the user risk window's), then update the state."""
        checked, _ = admit(self.seen, list(batch), now, config.dedup, config.dead_letter_bytes)
        dups: list[DeadLetter] = []
        featured: list[Featured] = []
        users, limits = self.users, config.limits
        for item in checked:
            if isinstance(item, DeadLetter):
                dups.append(item)
                continue
            state = _warm(users, item.event.user_id, _USER, UserState, self.hot)
            featured.append(update_profile(state, item, limits))
            state.touched_at = now
        if config.risk is not None and (featured or labels):
            featured = _windows(self.windows, featured, labels, "user", _user_of, config.risk, now, self.hot)
        return featured, dups

    def sweep(self, users_before: float, windows_before: float) -> int:
        """Drop users idle since before ``users_before`` and risk windows idle since
        ``windows_before``; how many users went."""
        _sweep(self.windows, windows_before, _WINDOW)
        return _sweep(self.users, users_before, _USER)

    def snapshot(self) -> bytes:
        """Users, their windows and the id memory as one msgpack document; the users and
        windows stay encoded until their next event (see :func:`_chill`)."""
        _chill(self.users, self.hot)
        _chill(self.windows, self.hot)
        if self.hot is not None:
            self.hot.clear()
        return _ENCODER.encode([self.users, self.windows, self.seen.snapshot()])

    @classmethod
    def restore(cls, data: bytes) -> UserShard:
        try:
            users, windows, seen = msgspec.msgpack.decode(data, type=_UserShardSnapshot)
        except msgspec.ValidationError:
            old_users, old_windows, seen = msgspec.msgpack.decode(data, type=_LegacyUserShardSnapshot)
            users = {key: state.upgrade() for key, state in old_users.items()}
            windows = {key: window.upgrade() for key, window in old_windows.items()}
        shard = cls(snapshots=True)
        shard.users = cast(Users, users)
        shard.windows = cast(Windows, windows)
        _chill(shard.users)  # restored idle users take their encoded size until their next event
        _chill(shard.windows)
        shard.seen = SeenEvents.restore(seen)
        return shard


def _user_of(ev: TransactionEvent) -> str | None:
    return ev.user_id


def _windows(
    windows: Windows,
    featured: Sequence[Featured],
    labels: Sequence[KnownLabel],
    kind: str,
    key_of: Callable[[TransactionEvent], str | None],
    config: RiskConfig,
    now: float,
    hot: set[str] | None,
) -> list[Featured]:
    """Each entity's labels, then its events in event-time order (see
    :func:`operators.entity_risk.update_window`); events come back with the risk features.
    Compiled where built (``operators.kernels.windows.update_windows``), else
    :func:`_windows_reference`."""
    if kernels.windows is not None:
        return kernels.windows.update_windows(
            windows, featured, labels, kind, key_of, config, now, hot, _WINDOW, RiskWindow
        )
    return _windows_reference(windows, featured, labels, kind, key_of, config, now, hot)


def _windows_reference(
    windows: Windows,
    featured: Sequence[Featured],
    labels: Sequence[KnownLabel],
    kind: str,
    key_of: Callable[[TransactionEvent], str | None],
    config: RiskConfig,
    now: float,
    hot: set[str] | None,
) -> list[Featured]:
    """:func:`_windows` in Python, one entity at a time."""
    groups: dict[str, list[Featured | KnownLabel]] = {}
    for lab in labels:
        key = lab.key(kind)
        if key is not None:
            groups.setdefault(key, []).append(lab)
    for item in featured:
        key = key_of(item.accepted.event)
        if key is not None:
            groups.setdefault(key, []).append(item)
    out: list[Featured] = []
    for key, items in groups.items():
        window = _warm(windows, key, _WINDOW, RiskWindow, hot)
        out.extend(update_window(window, items, kind, config))
        window.touched_at = now
    return out


class EntityShard:
    """The merchant (or device) risk windows of one shard."""

    __slots__ = ("hot", "windows")

    def __init__(self, snapshots: bool = False) -> None:
        self.windows: Windows = {}
        self.hot: set[str] | None = set() if snapshots else None
        """The windows decoded or created since the last snapshot (see :class:`UserShard`)."""

    def process(
        self,
        featured: Sequence[Featured],
        labels: Sequence[KnownLabel],
        kind: str,
        key_of: Callable[[TransactionEvent], str | None],
        config: RiskConfig,
        now: float,
    ) -> list[Featured]:
        return _windows(self.windows, featured, labels, kind, key_of, config, now, self.hot)

    def window(self, key: str) -> RiskWindow | None:
        """``key``'s window (decoded if it was cold), or None."""
        return _warm(self.windows, key, _WINDOW, RiskWindow, self.hot) if key in self.windows else None

    def sweep(self, before: float) -> int:
        return _sweep(self.windows, before, _WINDOW)

    def snapshot(self) -> bytes:
        """The windows as one msgpack document; they stay encoded until their next event."""
        _chill(self.windows, self.hot)
        if self.hot is not None:
            self.hot.clear()
        return _ENCODER.encode(self.windows)

    @classmethod
    def restore(cls, data: bytes) -> EntityShard:
        shard = cls(snapshots=True)
        try:
            shard.windows = cast(Windows, msgspec.msgpack.decode(data, type=dict[str, RiskWindow]))
        except msgspec.ValidationError:
            old = msgspec.msgpack.decode(data, type=dict[str, LegacyRiskWindow])
            shard.windows = {key: window.upgrade() for key, window in old.items()}
        _chill(shard.windows)
        return shard
