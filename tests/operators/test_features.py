import math
import statistics
from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from operators.events import Location, TransactionEvent
from operators.features import FEATURE_NAMES, compute_features, feature_matrix
from operators.state import Seen, UserState

T0 = datetime(2025, 6, 2, 12, tzinfo=UTC)


def ev(
    minutes: float = 0,
    amount: float = 10.0,
    loc: Location | None = None,
    device: str | None = None,
    tz: timezone = UTC,
) -> TransactionEvent:
    return TransactionEvent(
        "e", "u", amount, (T0 + timedelta(minutes=minutes)).astimezone(tz), location=loc, device_id=device
    )


def push(state: UserState, e: TransactionEvent) -> None:
    loc = e.location
    state.push(
        Seen(
            e.timestamp.timestamp(), e.amount, loc.latitude if loc else None, loc.longitude if loc else None
        ),
        e.device_id,
    )


def test_first_event_has_missing_history_features():
    f = compute_features(UserState(), ev(), T0.timestamp())
    assert f.days_since_last_event is None
    assert f.amount_mean_10 is None and f.amount_zscore is None and f.distance_km is None
    assert (f.events_10m, f.events_1h, f.events_24h) == (1, 1, 1)
    assert f.user_event_count == 0


def test_window_counts_include_the_event_and_respect_boundaries():
    s = UserState()
    for m in (-1500, -61, -59, -11, -9, -1):
        push(s, ev(m))
    f = compute_features(s, ev(0), T0.timestamp())
    assert f.events_10m == 3  # -9, -1 and the event itself
    assert f.events_1h == 5  # -59, -11, -9, -1, self
    assert f.events_24h == 6  # -1500 min is more than a day ago


def test_spend_in_money_over_a_day_against_the_users_usual_daily_spend():
    s = UserState()
    assert compute_features(s, ev(0, amount=50), T0.timestamp()).spend_ratio_24h is None
    for day in range(10, 0, -1):  # one 20.00 purchase a day for ten days
        push(s, ev(-day * 1440, amount=20))
    push(s, ev(-60, amount=30))  # and 30.00 an hour ago
    f = compute_features(s, ev(0, amount=250), T0.timestamp())
    assert f.spend_24h == 280.0  # 250 now + 30 an hour ago; the purchase exactly a day ago is out
    usual = (10 * 20 + 30) / 10  # 230 over the 10 days since first seen
    assert math.isclose(f.spend_ratio_24h or 0, 280 / usual)
    young = UserState()
    push(young, ev(-30, amount=40))  # history shorter than a day counts as one day
    assert math.isclose(compute_features(young, ev(0, amount=40), T0.timestamp()).spend_ratio_24h or 0, 2.0)


def test_velocity_events_count_in_the_given_window():
    s = UserState()
    for m in (-61, -59, -11, -9, -1):
        push(s, ev(m))
    assert compute_features(s, ev(0), T0.timestamp()).velocity_events == 3  # default: 10 minutes
    assert compute_features(s, ev(0), T0.timestamp(), velocity_window_s=120).velocity_events == 2
    assert compute_features(s, ev(0), T0.timestamp(), velocity_window_s=3600).velocity_events == 5


def test_distance_and_speed_from_the_previous_located_event():
    s = UserState()
    push(s, ev(-30, loc=Location(40.7128, -74.0060)))
    push(s, ev(-10))  # no location: skipped
    f = compute_features(s, ev(0, loc=Location(51.5074, -0.1278)), T0.timestamp())
    assert f.distance_km is not None and 5500 < f.distance_km < 5600
    assert f.seconds_since_last_location == 1800
    assert f.speed_kmh is not None and abs(f.speed_kmh - f.distance_km * 2) < 1e-6


def test_local_hour_uses_the_events_own_offset():
    tokyo = timezone(timedelta(hours=9))
    f = compute_features(UserState(), ev(0, tz=tokyo), T0.timestamp())
    assert f.hour_of_day == 21


def test_zscore_and_device_novelty():
    s = UserState()
    for m, a in ((-300, 10.0), (-200, 20.0), (-100, 30.0)):
        push(s, ev(m, amount=a, device="d1"))
    f = compute_features(s, ev(0, amount=40.0, device="d2"), T0.timestamp())
    assert math.isclose(f.amount_zscore or 0, (40 - 20) / 10)
    assert f.device_known is False and f.known_devices == 1
    assert math.isclose(f.amount_mean_10 or 0, 20.0)


def test_feature_matrix_marks_missing_as_nan():
    first = compute_features(UserState(), ev(), T0.timestamp())
    x = feature_matrix([first, first])
    assert x.shape == (2, len(FEATURE_NAMES)) and x.dtype == np.float32
    assert np.isnan(x[0, FEATURE_NAMES.index("distance_km")])
    assert np.isnan(x[0, FEATURE_NAMES.index("device_novelty")])
    assert x[0, FEATURE_NAMES.index("amount")] == 10.0
    assert feature_matrix([]).shape == (0, len(FEATURE_NAMES))


def test_a_burst_of_large_purchases_at_odd_hours_is_counted_over_48_hours():
    from operators.features import update_profile
    from operators.state import StateLimits
    from operators.validation import Accepted

    s, limits = UserState(), StateLimits()

    def feed(day: float, hour: float, amount: float):
        e = TransactionEvent("e", "u", amount, T0 + timedelta(days=day, hours=hour - 12))
        return update_profile(s, Accepted(e, e.timestamp.timestamp(), None, 0.0), limits).features

    for day in range(-30, -2):  # a month of lunchtime coffees and an evening dinner
        feed(day, 12.5, 4.0)
        feed(day, 19.5, 30.0)
    usual = feed(-2, 12.5, 4.5)
    assert usual.amount_rank is not None and usual.amount_rank < 0.5 and usual.hour_share == 0.5
    assert (usual.large_48h, usual.odd_hour_48h) == (0, 0)
    burst = [feed(-1, 2.0, 900.0), feed(-1, 3.0, 850.0), feed(0, 1.5, 990.0)]
    assert burst[0].amount_rank == 1.0 and burst[0].hour_share == 0.0
    assert [(f.large_48h, f.odd_hour_48h) for f in burst] == [(1, 1), (2, 2), (3, 3)]
    later = feed(3, 19.5, 30.0)  # the burst is more than 48 hours old
    assert (later.large_48h, later.odd_hour_48h) == (0, 0)


def test_history_statistics_are_the_named_ones():
    """Day of week, the spread of the last ten amounts and the user's mean, each against a
    plain computation (the struct is built positionally: a swapped field shows here)."""
    state = UserState()
    amounts = [12.5, 30.1, 7.7, 99.0, 45.2, 13.3, 8.8, 21.0, 17.5, 60.0, 5.0, 11.0]
    for i, a in enumerate(amounts):
        push(state, ev(minutes=i, amount=a))
    e = ev(minutes=20, amount=42.0, tz=timezone(timedelta(hours=-14)))  # the day before, locally
    f = compute_features(state, e, e.timestamp.timestamp())
    assert f.day_of_week == e.timestamp.weekday() == (T0.weekday() - 1) % 7
    assert f.amount_std_10 is not None
    assert math.isclose(f.amount_std_10, statistics.pstdev(amounts[-10:]), rel_tol=1e-12)
    assert f.amount_mean_10 is not None and math.isclose(f.amount_mean_10, statistics.fmean(amounts[-10:]))
    assert f.user_mean_amount is not None and math.isclose(f.user_mean_amount, statistics.fmean(amounts))
    assert f.user_event_count == len(amounts) and f.amount == 42.0 and f.risk == {}


def _cell(f: object, name: str) -> float:
    """One matrix cell as the contract says: NaN for missing, novelty = not known."""
    if name == "device_novelty":
        known = f.device_known  # type: ignore[attr-defined]
        return math.nan if known is None else float(not known)
    value = f.risk.get(name) if name.startswith(("merchant_", "device_", "user_")) else getattr(f, name)  # type: ignore[attr-defined]
    return math.nan if value is None else float(value)


def test_feature_matrix_equals_the_cell_by_cell_reference_bit_for_bit():
    import random

    from operators.entity_risk import risk_feature_names

    rng = random.Random(7)
    risk_names = risk_feature_names("merchant") + risk_feature_names("device")
    state = UserState()
    rows = []
    for k in range(300):
        e = ev(
            k * rng.choice((1, 7, 90)),
            amount=round(rng.uniform(0.01, 5000), 2),
            loc=Location(40 + rng.random(), -73 - rng.random()) if rng.random() < 0.7 else None,
            device=rng.choice((None, "d1", "d2", "d3")),
        )
        f = compute_features(state, e, e.timestamp.timestamp())
        push(state, e)
        for name in risk_names:  # some windows absent, some shares None
            if rng.random() < 0.8:
                f.risk[name] = rng.choice((None, rng.randint(0, 50), rng.random()))
        rows.append(f)
    columns = (*FEATURE_NAMES, *risk_names)
    x = feature_matrix(rows, None, columns)
    expected = np.array([[_cell(f, c) for c in columns] for f in rows], dtype=np.float32)
    assert x.dtype == np.float32 and x.shape == expected.shape
    assert x.tobytes() == expected.tobytes()  # NaNs included
    assert np.isnan(x).any() and (x[:, FEATURE_NAMES.index("device_novelty")] == 1.0).any()
    one = feature_matrix(rows, None, ("amount",))
    assert one.tobytes() == expected[:, :1].tobytes()


def test_a_denormal_amount_has_no_spend_ratio_instead_of_dividing_by_zero():
    """5e-324 is a valid amount; the user's usual daily spend over two days rounds to 0."""
    state = UserState()
    push(state, ev(0, amount=5e-324))
    f = compute_features(state, ev(3 * 24 * 60, amount=5e-324), (T0 + timedelta(days=3)).timestamp())
    assert f.spend_ratio_24h is None and f.user_mean_amount == 5e-324
