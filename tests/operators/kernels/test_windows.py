"""The compiled ``update_window`` against :func:`operators.entity_risk.update_window`: the
same risk features on every event and the same window after every call, for any order of
events and labels, fraud or legitimate, known before or after the events, with days
evicted on the way."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.entity_risk import DAY, RiskConfig, RiskWindow, update_window
from operators.events import TransactionEvent
from operators.features import Featured, compute_features
from operators.labels import EventRef, KnownLabel, Label
from operators.state import UserState
from operators.validation import Accepted
from tests.operators.kernels.conftest import compiled

BASE = 20_000 * DAY


def _featured(i: int, ts: float) -> Featured:
    ev = TransactionEvent(f"e{i}", "u", 5.0, datetime.fromtimestamp(ts, UTC), merchant_id="m")
    return Featured(Accepted(ev, ts, None, 0.0), compute_features(UserState(), ev, ts))


def _label(i: int, event_ts: float, fraud: bool, label_ts: float) -> KnownLabel:
    label = Label(f"e{i}", fraud, datetime.fromtimestamp(label_ts, UTC))
    return KnownLabel(label, EventRef(event_ts, {"merchant": "m"}))


_call = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.floats(0, 50 * DAY, allow_nan=False)),
        st.tuples(
            st.just("label"),
            st.floats(0, 50 * DAY, allow_nan=False),
            st.booleans(),
            st.floats(0, 60 * DAY, allow_nan=False),
        ),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(_call, min_size=1, max_size=8),
    delay=st.integers(0, 3),
    windows=st.sampled_from([(1,), (1, 7, 30), (2, 5)]),
    max_frauds=st.sampled_from([2, 4096]),
)
def test_any_calls_give_the_reference_features_and_window(calls, delay, windows, max_frauds):
    kernel = compiled("windows")
    config = RiskConfig(label_delay_days=delay, windows=windows, max_frauds=max_frauds)
    ours, theirs = RiskWindow(), RiskWindow()
    n = 0
    for call in calls:
        mine: list[Featured | KnownLabel] = []
        for item in call:
            n += 1
            if item[0] == "event":
                mine.append(_featured(n, BASE + item[1]))
            else:
                _, event_s, fraud, label_s = item
                mine.append(_label(n % 7, BASE + event_s, fraud, BASE + label_s))
        ref = copy.deepcopy(mine)
        got = kernel.update_window(ours, mine, "merchant", config)
        want = update_window(theirs, ref, "merchant", config)
        assert [(f.accepted.event.event_id, f.features.risk) for f in got] == [
            (f.accepted.event.event_id, f.features.risk) for f in want
        ]
        assert ours == theirs


def test_a_busy_merchant_over_a_year_gives_the_reference():
    kernel = compiled("windows")
    config = RiskConfig()
    ours, theirs = RiskWindow(), RiskWindow()
    for day in range(0, 365):
        batch = [_featured(day * 100 + k, BASE + day * DAY + k * 800.0) for k in range(20)]
        if day % 9 == 0:
            batch.append(_label(day * 100, BASE + (day - 3) * DAY, True, BASE + day * DAY))
        got = kernel.update_window(ours, batch, "merchant", config)
        want = update_window(theirs, copy.deepcopy(batch), "merchant", config)
        assert [f.features.risk for f in got] == [f.features.risk for f in want], day
        assert ours == theirs, day


def _shard_featured(i: int, merchant: str | None, ts: float) -> Featured:
    ev = TransactionEvent(f"e{i}", "u", 5.0, datetime.fromtimestamp(ts, UTC), merchant_id=merchant)
    return Featured(Accepted(ev, ts, None, 0.0), compute_features(UserState(), ev, ts))


def _shard_label(i: int, merchant: str, event_ts: float, fraud: bool) -> KnownLabel:
    label = Label(f"e{i}", fraud, datetime.fromtimestamp(event_ts + DAY, UTC))
    return KnownLabel(label, EventRef(event_ts, {"merchant": merchant}))


_shard_call = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3", None]),
        st.floats(0, 20 * DAY, allow_nan=False),
        st.sampled_from(["event", "event", "fraud", "legit"]),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(calls=st.lists(_shard_call, min_size=1, max_size=6), hot=st.booleans())
def test_a_shards_batches_give_the_reference_features_windows_and_hot_keys(calls, hot):
    """``update_windows`` against ``operators.shards._windows_reference``: events without
    the entity pass by, labels go first, windows are made, warmed from their encoding
    (as after a snapshot) and touched."""
    from operators.labels import ENTITY_KEYS
    from operators.shards import _WINDOW, _chill, _windows_reference

    kernel = compiled("windows")
    config = RiskConfig(label_delay_days=1, windows=(1, 7))
    ours: dict = {}
    theirs: dict = {}
    ours_hot: set[str] | None = set() if hot else None
    theirs_hot: set[str] | None = set() if hot else None
    n = 0
    for step, call in enumerate(calls):
        featured: list[Featured] = []
        labels: list[KnownLabel] = []
        for merchant, at, kind in call:
            n += 1
            if kind == "event":
                featured.append(_shard_featured(n, merchant, BASE + at))
            elif merchant is not None:
                labels.append(_shard_label(n % 5, merchant, BASE + at, kind == "fraud"))
        now = 100.0 * step
        key_of = ENTITY_KEYS["merchant"]
        got = kernel.update_windows(
            ours, featured, labels, "merchant", key_of, config, now, ours_hot, _WINDOW, RiskWindow
        )
        want = _windows_reference(
            theirs,
            copy.deepcopy(featured),
            copy.deepcopy(labels),
            "merchant",
            key_of,
            config,
            now,
            theirs_hot,
        )
        assert [(f.accepted.event.event_id, f.features.risk) for f in got] == [
            (f.accepted.event.event_id, f.features.risk) for f in want
        ]
        assert ours == theirs and ours_hot == theirs_hot
        if step % 2:  # a snapshot: every window encoded, warmed again by its next event
            _chill(ours)
            _chill(theirs)
            for h in (ours_hot, theirs_hot):
                if h is not None:
                    h.clear()
