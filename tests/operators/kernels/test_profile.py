"""The compiled ``update_profile`` against :func:`operators.features.update_profile`: the
same features and the same state after every event, bit for bit, on generated traffic and
on hand-made edge cases (out of order, no location, the caps, the habit halving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.replay.workload import generate
from operators.events import Location, TransactionEvent, decode_event
from operators.features import update_profile
from operators.state import StateLimits, UserState
from operators.validation import Accepted
from tests.operators.kernels.conftest import compiled

T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)


def _same(events: list[TransactionEvent], limits: StateLimits | None = None) -> int:
    """Both implementations over ``events`` in order, each user's state fresh; how many compared."""
    kernel = compiled("profile")
    limits = limits or StateLimits()
    ours: dict[str, UserState] = {}
    theirs: dict[str, UserState] = {}
    for i, ev in enumerate(events):
        acc = Accepted(ev, ev.timestamp.timestamp(), None, 0.0)
        want = update_profile(theirs.setdefault(ev.user_id, UserState()), acc, limits)
        got = kernel.update_profile(ours.setdefault(ev.user_id, UserState()), acc, limits)
        assert msgspec.json.encode(got.features) == msgspec.json.encode(want.features), i
        assert got.features == want.features and got.accepted is acc, i
        assert ours[ev.user_id] == theirs[ev.user_id], i
    return len(events)


def test_generated_traffic_gives_the_reference_features_and_state():
    w = generate(events=6_000, users=150, fraud_share=0.05, malformed=0, seed=7)
    events = [e for _, raw in w.messages if isinstance(e := decode_event(raw), TransactionEvent)]
    assert _same(events) > 5_000


_locations = st.one_of(
    st.none(),
    st.builds(
        Location,
        st.floats(-90, 90, allow_nan=False),
        st.floats(-180, 180, allow_nan=False),
        st.sampled_from([None, "US", "KP"]),
    ),
)


@st.composite
def _events(draw: st.DrawFn) -> list[TransactionEvent]:
    n = draw(st.integers(1, 120))
    out = []
    for i in range(n):
        minutes = draw(st.floats(-3_000, 6_000, allow_nan=False))  # out of order, days apart
        offset = timezone(timedelta(hours=draw(st.integers(-12, 14))))
        out.append(
            TransactionEvent(
                f"e{i}",
                draw(st.sampled_from(["u1", "u2", "u3"])),
                draw(st.one_of(st.just(0.0), st.floats(0, 20_000, allow_nan=False))),
                (T0 + timedelta(minutes=minutes)).astimezone(offset),
                location=draw(_locations),
                device_id=draw(st.sampled_from([None, "", "d1", "d2", "d3", "d4"])),
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(events=_events(), max_events=st.integers(8, 20), max_devices=st.integers(1, 3))
def test_any_order_of_events_gives_the_reference(events, max_events, max_devices):
    limits = StateLimits(
        window_s=86_400.0, max_events=max_events, max_devices=max_devices, velocity_window_s=900
    )
    _same(events, limits)


def test_a_user_with_hundreds_of_events_halves_habits_as_the_reference():
    events = [
        TransactionEvent(f"e{i}", "u", 40.0 + i % 3, T0 + timedelta(minutes=7 * i), device_id=f"d{i % 20}")
        for i in range(700)
    ]
    _same(events)


def test_a_state_that_is_not_packed_bytes_is_a_type_error_not_a_crash():
    kernel = compiled("profile")
    state = UserState()
    state.recent = "not bytes"  # type: ignore[assignment]
    ev = TransactionEvent("e", "u", 1.0, T0)
    try:
        kernel.update_profile(state, Accepted(ev, T0.timestamp(), None, 0.0), StateLimits())
    except TypeError:
        return
    raise AssertionError("expected a TypeError")
