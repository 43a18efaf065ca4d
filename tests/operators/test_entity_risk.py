import pickle
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from operators.entity_risk import (
    DAY,
    LegacyRiskWindow,
    RiskConfig,
    RiskWindow,
    risk_feature_names,
    update_window,
)
from operators.events import TransactionEvent
from operators.features import Featured, compute_features
from operators.labels import EventRef, KnownLabel, Label
from operators.state import UserState
from operators.validation import Accepted

CFG = RiskConfig(label_delay_days=7, windows=(1, 7, 30))


def window_with(days: dict[int, int]) -> RiskWindow:
    w = RiskWindow()
    for day, n in sorted(days.items()):
        for k in range(n):
            w.add_event(day * DAY + k, CFG)
    return w


def test_windows_end_a_label_delay_before_the_event():
    w = window_with({0: 3, 10: 5, 12: 2, 19: 4})
    f = w.features(20.5 * DAY, CFG)  # day 20: 1-day window = day 12, 7-day = days 6..12, 30-day = up to 12
    assert (f["events_1d"], f["events_7d"], f["events_30d"]) == (2, 7, 10)
    assert f["fraud_share_7d"] == 0.0
    assert w.features(100 * DAY, CFG)["fraud_share_1d"] is None  # no events in the window: unknown, not 0


def test_only_labels_known_at_the_event_time_count():
    w = window_with({10: 4})
    w.apply_label("a", 10 * DAY, True, label_time=15 * DAY, config=CFG)
    w.apply_label("b", 10 * DAY + 1, True, label_time=19 * DAY, config=CFG)
    assert w.features(18 * DAY, CFG)["frauds_7d"] == 1  # b's label lies in the event's future
    assert w.features(19 * DAY, CFG)["frauds_7d"] == 2
    assert w.features(19 * DAY, CFG)["fraud_share_7d"] == pytest.approx(0.5)


def test_duplicate_and_reversed_labels():
    w = window_with({10: 4})
    assert w.apply_label("a", 10 * DAY, True, 12 * DAY, CFG)
    before = pickle.dumps(w)
    assert not w.apply_label("a", 10 * DAY, True, 12 * DAY, CFG)  # the same label again
    assert pickle.dumps(w) == before
    assert not w.apply_label("z", 10 * DAY, False, 12 * DAY, CFG)  # legit label of an unflagged event
    assert w.apply_label("a", 10 * DAY, False, 16 * DAY, CFG)  # confirmed legit later
    assert w.features(18.5 * DAY, CFG)["frauds_7d"] == 0  # the reversal (day 16) is known by day 18.5
    w2 = window_with({10: 4})
    w2.apply_label("a", 10 * DAY, True, 12 * DAY, CFG)
    w2.apply_label("a", 10 * DAY, False, 19.2 * DAY, CFG)
    assert w2.features(18.5 * DAY, CFG)["frauds_7d"] == 1  # fraud known since day 12, not yet reversed
    assert w2.features(19.5 * DAY, CFG)["frauds_7d"] == 0  # reversed


def test_state_stays_bounded():
    w = RiskWindow()
    for day in range(400):
        w.add_event(day * DAY, CFG)
        w.apply_label(f"e{day}", day * DAY, True, day * DAY + 1, CFG)
    assert len(w.day_counts()) <= CFG.retention_days + 1 and len(w.days) == 8 * len(w.day_counts())
    assert len(w.frauds or {}) <= CFG.retention_days + 1
    assert not w.apply_label("old", 1 * DAY, True, 400 * DAY, CFG)  # older than every window
    capped = RiskWindow()
    small = RiskConfig(max_frauds=16)
    for k in range(100):
        capped.apply_label(f"x{k}", (k // 10) * DAY, True, 0.0, small)
    assert sum(len(v) for v in (capped.frauds or {}).values()) <= 16


def test_snapshot_is_independent_and_picklable():
    w = window_with({1: 2})
    w.apply_label("a", DAY, True, DAY, CFG)
    snap = pickle.loads(pickle.dumps(w.snapshot()))
    w.add_event(1 * DAY, CFG)
    assert snap.day_counts() == {1: 2} and snap.frauds == {1: {"a": ((DAY, True),)}}


def test_feature_names():
    assert len(risk_feature_names("device", CFG)) == 9
    assert "merchant_fraud_share_30d" in risk_feature_names("merchant", CFG)


_quarter_days = st.integers(0, 20).map(lambda q: q * DAY / 4)
_between = st.integers(0, 24).map(lambda q: (2 * q + 1) * DAY / 8)  # label times between events
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("event"), _quarter_days),
        st.tuples(st.just("label"), _quarter_days, st.booleans(), _between),
        st.tuples(st.just("flush")),
    ),
    min_size=10,
    max_size=60,
)


def _featured(k: int, ts: float) -> Featured:
    ev = TransactionEvent(f"e{k}", "u", 1.0, datetime.fromtimestamp(ts, UTC), merchant_id="m")
    return Featured(Accepted(ev, ts, None, ts), compute_features(UserState(), ev, ts))


@settings(max_examples=300, deadline=None)
@given(_ops, st.integers(0, 3))
@example(  # a label known between two events of one day: the second must count it
    [
        ("event", 1 * DAY),
        ("flush",),
        ("label", 1 * DAY, True, 3.5 * DAY),
        ("event", 3.25 * DAY),
        ("event", 3.75 * DAY),
    ],
    0,
)
def test_reused_features_equal_a_fresh_computation(ops, delay):
    """update_window computes a window's features once for the events of a day and reuses
    them; whatever the order of events and labels in a call, each event gets what computing
    its features afresh, right before it is counted, gives."""
    cfg = RiskConfig(label_delay_days=delay, windows=(1, 3, 7))
    window, twin = RiskWindow(), RiskWindow()
    batch: list[Featured | KnownLabel] = []
    for i, op in enumerate([*ops, ("flush",)]):
        if op[0] == "event":
            batch.append(_featured(i, op[1]))
        elif op[0] == "label":
            label = Label(f"e{i % 7}", op[2], datetime.fromtimestamp(op[3], UTC), "test")
            batch.append(KnownLabel(label, EventRef(op[1], {"merchant": "m"})))
        else:
            got = update_window(window, batch, "merchant", cfg)
            for lab in [b for b in batch if isinstance(b, KnownLabel)]:
                twin.apply_label(
                    lab.label.event_id, lab.ref.event_ts, lab.label.is_fraud, lab.label.label_ts, cfg
                )
            events = sorted((b for b in batch if isinstance(b, Featured)), key=lambda f: f.accepted.ts)
            for item in events:
                expected = twin.features(item.accepted.ts, cfg, "merchant_")
                assert item.features.risk == expected
                twin.add_event(item.accepted.ts, cfg)
            assert got == events and window == twin
            batch = []


def test_days_stay_in_order_whatever_order_events_come_in():
    w = RiskWindow()
    for day in (12, 10, 12, 11, 48, 10):
        w.add_event(day * DAY + 5, CFG)
    # day 48 evicts days before 11 (7 days' delay + 30 days kept); a late event counts again
    assert w.day_counts() == {10: 1, 11: 1, 12: 2, 48: 1} and w.latest_day == 48
    assert list(w.day_counts()) == sorted(w.day_counts())


def test_a_snapshot_with_days_as_a_map_upgrades_to_the_packed_layout():
    old = msgspec.msgpack.encode([{10: 4, 9: 1}, {10: {"a": [[DAY * 12, True]]}}, 10, 5.0])
    w = msgspec.msgpack.decode(old, type=LegacyRiskWindow).upgrade()
    assert w.day_counts() == {9: 1, 10: 4} and w.latest_day == 10 and w.touched_at == 5.0
    assert w.features(20 * DAY, CFG)["frauds_7d"] == 1
    empty = msgspec.msgpack.decode(msgspec.msgpack.encode([{}, {}, None, 0.0]), type=LegacyRiskWindow)
    assert empty.upgrade().frauds is None and empty.upgrade().latest_day is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 80), st.booleans(), st.integers(0, 80)),
        max_size=60,
    ),
    st.lists(st.floats(0, 90 * DAY), max_size=8),
)
def test_reused_features_equal_features_computed_afresh(events, probes):
    """update_window reuses one computation for the events of a day; it must give what
    computing each afresh gives, labels and late events included."""
    cfg = RiskConfig(label_delay_days=2, windows=(1, 7, 30))
    w = RiskWindow()
    for k, (day, fraud, label_day) in enumerate(events):
        ts = day * DAY + k
        if fraud:
            w.apply_label(f"e{k}", ts, True, label_day * DAY, cfg)
        w.add_event(ts, cfg)
    for ts in sorted(probes):
        lo, hi, got = w.features_until(ts, cfg, "")
        assert lo <= ts < hi and got == w.features(ts, cfg)
        earlier = max(lo, ts - 0.5)
        if earlier // DAY == ts // DAY:  # the answer holds within ts's day only (update_window checks it)
            assert w.features_until(earlier, cfg, "")[2] == got
