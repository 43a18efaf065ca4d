from datetime import UTC, datetime

import msgspec

from operators.entity_risk import DAY, LegacyRiskWindow, RiskConfig
from operators.events import Location, TransactionEvent
from operators.shards import EntityShard, UserShard, UserShardConfig
from operators.state import LegacyUserState, Seen
from operators.validation import Accepted

CONFIG = UserShardConfig(risk=RiskConfig())


def _accepted(event_id: str, user: str, ts: float, amount: float = 10.0) -> Accepted:
    ev = TransactionEvent(
        event_id,
        user,
        amount,
        datetime.fromtimestamp(ts, UTC),
        location=Location(40.7, -74.0, "US"),
        device_id="d1",
    )
    return Accepted(ev, ts, None, ts, event_id.encode().ljust(32, b"."))


def test_a_user_shard_snapshot_restores_the_same_state_windows_and_ids():
    shard = UserShard()
    t0 = 20_000 * DAY
    shard.process([_accepted("e1", "u1", t0), _accepted("e2", "u1", t0 + 60, 30.0)], [], 5.0, CONFIG)
    back = UserShard.restore(shard.snapshot())
    assert back.users == shard.users and back.windows == shard.windows
    assert back.users["u1"].history() == shard.users["u1"].history()
    featured, dups = back.process([_accepted("e2", "u1", t0 + 60)], [], 6.0, CONFIG)
    assert featured == [] and len(dups) == 1  # the id memory came back too


def test_a_user_shard_snapshot_of_the_previous_layout_is_upgraded():
    """Snapshots written before the packed layout (recent events as lists, window days as
    a map) restore: a recovery store from the previous version keeps working."""
    t0 = 20_000 * DAY
    old_state = LegacyUserState(
        [Seen(t0, 10.0, 40.7, -74.0, 0)], 1, 10.0, 0.0, ["d1"], t0, 5.0, bytearray(24)
    )
    old_window = LegacyRiskWindow({20_000: 1}, {}, 20_000, 5.0)
    seen = UserShard().seen.snapshot()
    data = msgspec.msgpack.encode([{"u1": old_state}, {"u1": old_window}, seen])
    shard = UserShard.restore(data)
    assert shard.users["u1"].history() == [Seen(t0, 10.0, 40.7, -74.0, 0)]
    assert shard.windows["u1"].day_counts() == {20_000: 1} and shard.windows["u1"].frauds is None
    (item,), _ = shard.process([_accepted("e9", "u1", t0 + 3600, 20.0)], [], 6.0, CONFIG)
    assert item.features.user_event_count == 1 and item.features.distance_km == 0.0


def test_an_entity_shard_snapshot_of_the_previous_layout_is_upgraded():
    old = {"m1": LegacyRiskWindow({20_001: 3, 20_000: 2}, {20_000: {"e1": ((1.0, True),)}}, 20_001, 5.0)}
    shard = EntityShard.restore(msgspec.msgpack.encode(old))
    assert shard.windows["m1"].day_counts() == {20_000: 2, 20_001: 3}
    assert shard.windows["m1"].frauds == {20_000: {"e1": ((1.0, True),)}}
    assert EntityShard.restore(shard.snapshot()).windows == shard.windows
