import pickle

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.state import LegacyUserState, Seen, StateLimits, UserState


def test_running_mean_and_std_match_batch_statistics():
    s = UserState()
    amounts = [10.0, 20.0, 30.0, 100.0]
    for i, a in enumerate(amounts):
        s.push(Seen(float(i), a))
    assert s.count == 4
    assert abs(s.mean - 40.0) < 1e-9
    assert abs(s.std - 40.824829046) < 1e-6


def test_recent_is_sorted_even_when_events_arrive_out_of_order():
    s = UserState()
    for ts in (100.0, 50.0, 75.0):
        s.push(Seen(ts, 1.0))
    assert [x.ts for x in s.history()] == [50.0, 75.0, 100.0]
    assert s.first_seen == 50.0


def test_events_older_than_the_window_are_evicted():
    limits = StateLimits(window_s=3600.0)
    s = UserState()
    s.push(Seen(0.0, 1.0), limits=limits)
    s.push(Seen(3000.0, 1.0), limits=limits)
    s.push(Seen(4000.0, 1.0), limits=limits)
    assert [x.ts for x in s.history()] == [3000.0, 4000.0]
    assert s.count == 3  # running statistics keep the whole history


def test_devices_are_bounded_least_recently_used_first_out():
    limits = StateLimits(max_devices=2)
    s = UserState()
    for i, d in enumerate(["a", "b", "a", "c"]):
        s.push(Seen(float(i), 1.0), device_id=d, limits=limits)
    assert s.devices == ("a", "c")


def test_snapshot_is_independent_and_picklable():
    s = UserState()
    s.push(Seen(1.0, 5.0, 40.0, -70.0), device_id="d")
    snap = s.snapshot()
    s.push(Seen(2.0, 5.0), device_id="e")
    assert len(snap.history()) == 1 and snap.devices == ("d",)
    assert pickle.loads(pickle.dumps(snap)) == snap


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1e7), st.floats(0, 1e6), st.sampled_from("abcdefghijklmnopqrst")), max_size=300
    )
)
def test_state_size_is_bounded_whatever_the_input(pushes):
    limits = StateLimits(window_s=3600.0, max_events=16, max_devices=4)
    s = UserState()
    for ts, amount, device in pushes:
        s.push(Seen(ts, amount), device_id=device, limits=limits)
        recent = s.history()
        assert len(recent) <= 16 and len(s.recent) == 40 * len(recent)
        assert len(s.devices) <= 4
        assert recent == sorted(recent, key=lambda x: x.ts)
        assert recent[-1].ts - recent[0].ts <= 3600.0
    assert s.count == len(pushes)


def test_habits_rank_amounts_and_share_hours_once_five_events_are_known():
    s = UserState()
    for amount in (10.0, 12.0, 14.0, 40.0):
        s.learn_habits(amount, hour=13)
    assert s.amount_rank(1000.0) is None and s.hour_share(13) is None  # four events: no habits yet
    s.learn_habits(9.0, hour=2)
    assert s.amount_rank(1000.0) == 1.0  # above everything seen
    assert s.amount_rank(0.5) == 0.0
    assert s.amount_rank(11.0) == 0.4  # 9-14 share its power-of-two bin (8-16): half of those count
    assert s.hour_share(14) == 0.8  # 12:00-15:00 holds four of five
    assert s.hour_share(1) == 0.2 and s.hour_share(23) == 0.0


def test_habit_histograms_stay_bounded_and_recent_habits_weigh_more():
    s = UserState()
    for _ in range(1000):
        s.learn_habits(20.0, hour=12)
    for _ in range(200):
        s.learn_habits(500.0, hour=3)
    assert sum(s.habits[16:]) <= 250 and len(s.habits) == 24
    assert (s.hour_share(3) or 0) > 0.5  # 200 recent night events outweigh 1,000 older ones


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e9, allow_nan=False), st.integers(0, 23)), max_size=3000))
def test_habit_counts_always_fit_a_byte(pushes):
    s = UserState()
    for amount, hour in pushes:
        s.learn_habits(amount, hour)  # a count past 255 would raise here
    assert len(s.habits) in (0, 24) and sum(s.habits) <= 2 * 240 + 2


def test_a_snapshot_from_before_the_habits_decodes_with_empty_habits():
    old = msgspec.msgpack.encode([[[1.0, 5.0, None, None]], 1, 5.0, 0.0, ["d"], 1.0, 2.0])
    s = msgspec.msgpack.decode(old, type=LegacyUserState).upgrade()
    assert s.history() == [Seen(1.0, 5.0)] and not s.habits and s.amount_rank(5.0) is None


def test_a_snapshot_with_recent_events_as_a_list_upgrades_to_the_packed_layout():
    old = msgspec.msgpack.encode(
        [[[1.0, 5.0, 40.0, -70.0, 1], [2.0, 6.0, None, None, 0]], 2, 5.5, 0.5, ["d"], 1.0, 2.0, bytes(24)]
    )
    s = msgspec.msgpack.decode(old, type=LegacyUserState).upgrade()
    assert s.history() == [Seen(1.0, 5.0, 40.0, -70.0, 1), Seen(2.0, 6.0)]
    assert (s.count, s.mean, s.devices, len(s.habits)) == (2, 5.5, ("d",), 24)
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(old, type=UserState)


def test_recent_events_take_forty_bytes_each_and_round_trip_through_a_snapshot():
    s = UserState()
    s.push(Seen(2.0, 7.5, 51.5, -0.1, 1 << 16), device_id="d")
    s.push(Seen(1.0, 3.0), device_id="d")
    assert len(s.recent) == 80
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(s), type=UserState)
    assert back.history() == [Seen(1.0, 3.0), Seen(2.0, 7.5, 51.5, -0.1, 1 << 16)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.floats(0, 1e4)), max_size=120))
def test_recent_events_are_what_a_sorted_list_trimmed_by_window_and_count_holds(pushes):
    """In order, out of order and at equal times: the packed history equals a plain list
    kept sorted (a later push after equal times) and trimmed to the window before the
    latest event and to ``max_events``."""
    limits = StateLimits(window_s=100.0, max_events=8)
    s, reference = UserState(), []
    for ts, amount in pushes:
        s.push(Seen(float(ts), amount), limits=limits)
        at = sum(1 for t, _ in reference if t <= ts)
        reference.insert(at, (float(ts), amount))
        latest = reference[-1][0]
        keep = [r for r in reference if r[0] >= latest - limits.window_s][-limits.max_events :]
        reference = keep
        assert [(x.ts, x.amount) for x in s.history()] == reference
