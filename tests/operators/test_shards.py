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
    assert back.user("u1") == shard.user("u1") and back.user("u2") is None
    assert back.windows.keys() == shard.windows.keys() == {"u1"}
    assert back.snapshot() == shard.snapshot(), "restored, the shard snapshots to the same bytes"
    user = back.user("u1")
    assert user is not None and [s.amount for s in user.history()] == [10.0, 30.0]
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
    user, window = shard.user("u1"), shard.window("u1")
    assert user is not None and user.history() == [Seen(t0, 10.0, 40.7, -74.0, 0)]
    assert window is not None and window.day_counts() == {20_000: 1} and window.frauds is None
    (item,), _ = shard.process([_accepted("e9", "u1", t0 + 3600, 20.0)], [], 6.0, CONFIG)
    assert item.features.user_event_count == 1 and item.features.distance_km == 0.0


def test_an_entity_shard_snapshot_of_the_previous_layout_is_upgraded():
    old = {"m1": LegacyRiskWindow({20_001: 3, 20_000: 2}, {20_000: {"e1": ((1.0, True),)}}, 20_001, 5.0)}
    shard = EntityShard.restore(msgspec.msgpack.encode(old))
    window = shard.window("m1")
    assert window is not None and window.day_counts() == {20_000: 2, 20_001: 3}
    assert window.frauds == {20_000: {"e1": ((1.0, True),)}}
    assert EntityShard.restore(shard.snapshot()).window("m1") == window


def test_a_snapshot_leaves_users_and_windows_encoded_and_their_next_events_see_the_same():
    """After a snapshot every user and window is held as its encoding (a snapshot copies
    encodings; an idle user takes its encoded size); its next event decodes it and gets
    exactly the features of a shard that never snapshotted. A shard built for snapshots
    notes what it decoded or created, and each snapshot leaves nothing live. The sweep
    reads encoded entries."""
    t0 = 20_000 * DAY
    batches = [
        [_accepted(f"e{b}-{i}", f"u{i % 5}", t0 + b * 3600 + i * 7, 10.0 + i) for i in range(12)]
        for b in range(6)
    ]
    plain, snapping = UserShard(), UserShard(snapshots=True)
    featured = []
    for b, batch in enumerate(batches):
        expected, _ = plain.process(batch, [], float(b), CONFIG)
        got, _ = snapping.process(batch, [], float(b), CONFIG)
        featured += got
        assert [f.features for f in got] == [f.features for f in expected]
        snapping.snapshot()
        assert all(type(v) is msgspec.Raw for v in (*snapping.users.values(), *snapping.windows.values()))
    assert snapping.user("u1") == plain.user("u1")
    assert snapping.sweep(users_before=10.0, windows_before=10.0) == 5 and not snapping.windows
    entities = EntityShard(snapshots=True)
    entities.process(featured, [], "device", lambda ev: ev.device_id, RiskConfig(), 9.0)
    entities.snapshot()
    assert type(entities.windows["d1"]) is msgspec.Raw
    assert entities.sweep(before=5.0) == 0 and entities.sweep(before=10.0) == 1


def test_a_restored_shard_holds_its_users_encoded_and_notes_what_it_decodes():
    t0 = 20_000 * DAY
    shard = UserShard()
    shard.process([_accepted("e1", "u1", t0), _accepted("e2", "u2", t0 + 5)], [], 5.0, CONFIG)
    back = UserShard.restore(shard.snapshot())
    assert all(type(v) is msgspec.Raw for v in (*back.users.values(), *back.windows.values()))
    back.process([_accepted("e3", "u1", t0 + 60)], [], 6.0, CONFIG)
    assert back.hot == {"u1"} and type(back.users["u2"]) is msgspec.Raw
    back.snapshot()
    assert back.hot == set() and type(back.users["u1"]) is msgspec.Raw
    back.process([_accepted("e4", "u2", t0 + 90)], [], 7.0, UserShardConfig())  # no risk window
    assert back.hot == {"u2"}, "a user decoded without its window is noted too"
    back.snapshot()
    assert type(back.users["u2"]) is msgspec.Raw
