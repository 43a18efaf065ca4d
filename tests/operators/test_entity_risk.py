import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.entity_risk import DAY, RiskConfig, RiskWindow, risk_feature_names

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
    assert len(w.days) <= CFG.retention_days + 1
    assert len(w.frauds) <= CFG.retention_days + 1
    assert not w.apply_label("old", 1 * DAY, True, 400 * DAY, CFG)  # older than every window
    capped = RiskWindow()
    small = RiskConfig(max_frauds=16)
    for k in range(100):
        capped.apply_label(f"x{k}", (k // 10) * DAY, True, 0.0, small)
    assert sum(len(v) for v in capped.frauds.values()) <= 16


def test_snapshot_is_independent_and_picklable():
    w = window_with({1: 2})
    w.apply_label("a", DAY, True, DAY, CFG)
    snap = pickle.loads(pickle.dumps(w.snapshot()))
    w.add_event(1 * DAY, CFG)
    assert snap.days == {1: 2} and snap.frauds == {1: {"a": ((DAY, True),)}}


def test_feature_names():
    assert len(risk_feature_names("device", CFG)) == 9
    assert "merchant_fraud_share_30d" in risk_feature_names("merchant", CFG)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.floats(0, 10 * DAY)),
        st.tuples(st.just("label"), st.floats(0, 10 * DAY), st.booleans(), st.floats(0, 12 * DAY)),
        st.tuples(st.just("features"), st.floats(0, 10 * DAY)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_ops, st.integers(0, 3))
def test_cached_features_equal_a_fresh_computation(ops, delay):
    """The per-window cache never serves a stale answer, whatever the order of
    events, labels and queries (a fresh copy of the window has no cache)."""
    cfg = RiskConfig(label_delay_days=delay, windows=(1, 3, 7))
    w = RiskWindow()
    for i, op in enumerate(ops):
        if op[0] == "event":
            w.add_event(op[1], cfg)
        elif op[0] == "label":
            w.apply_label(f"e{i % 7}", op[1], op[2], op[3], cfg)
        else:
            fresh = RiskWindow(dict(w.days), {d: dict(v) for d, v in w.frauds.items()}, w.latest_day)
            assert w.features(op[1], cfg, "m_") == fresh.features(op[1], cfg, "m_")
