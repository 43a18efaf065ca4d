"""The compiled ``featured_matrix`` against :func:`operators.features.featured_matrix`: the
same ``float32`` matrix, bit for bit, for any features (missing values, booleans, risk
windows present or not), any column order and domain attributes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.events import TransactionEvent
from operators.features import FEATURE_NAMES, Featured, Features, featured_matrix
from operators.validation import Accepted
from tests.operators.kernels.conftest import compiled

_float = (
    st.floats(-1e300, 1e300)
    | st.floats(-1e30, 1e30)
    | st.floats(0, 1e4)
    | st.sampled_from([math.inf, -math.inf, 5e-324])
)
_maybe = st.none() | _float
_count = st.integers(0, 2**40)
_RISK = ("merchant_fraud_share_7d", "device_events_30d", "user_frauds_1d")
_features = st.builds(
    Features,
    amount=_float,
    hour_of_day=st.integers(0, 23),
    day_of_week=st.integers(0, 6),
    days_since_last_event=_maybe,
    amount_mean_10=_maybe,
    amount_std_10=_maybe,
    events_10m=_count,
    events_1h=_count,
    events_24h=_count,
    velocity_events=_count,
    distance_km=_maybe,
    seconds_since_last_location=_maybe,
    speed_kmh=_maybe,
    amount_zscore=_maybe,
    user_mean_amount=_maybe,
    user_event_count=_count,
    device_known=st.sampled_from([None, True, False]),
    known_devices=_count,
    spend_24h=_float,
    spend_ratio_24h=_maybe,
    amount_rank=_maybe,
    hour_share=_maybe,
    large_48h=_count,
    odd_hour_48h=_count,
    risk=st.dictionaries(st.sampled_from(_RISK), st.none() | _float | _count),
)
_attributes = st.dictionaries(
    st.sampled_from(["trip_distance", "duration_minutes", "fare_amount", "payment_type"]),
    st.none() | st.booleans() | _float | st.integers(-100, 100) | st.text(max_size=3),
)
_COLUMNS = (*FEATURE_NAMES, *_RISK, "attr:trip_distance", "attr:fare_per_mile", "attr:trip_speed_mph")


@st.composite
def _featured(draw: st.DrawFn, i: int) -> Featured:
    ev = TransactionEvent(f"e{i}", "u", 12.5, datetime(2025, 6, 2, tzinfo=UTC), attributes=draw(_attributes))
    return Featured(Accepted(ev, ev.timestamp.timestamp(), None, 5.0), draw(_features))


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 9),
    columns=st.lists(st.sampled_from(_COLUMNS), unique=True, max_size=len(_COLUMNS)) | st.just(FEATURE_NAMES),
)
def test_any_batch_gives_the_reference_matrix_bit_for_bit(data, n, columns):
    kernel = compiled("matrix")
    batch = [data.draw(_featured(i)) for i in range(n)]
    got = kernel.featured_matrix(batch, columns)
    want = featured_matrix(batch, columns)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (n, len(columns))
    assert got.tobytes() == want.tobytes()
    assert kernel.featured_matrix(tuple(batch), columns).tobytes() == want.tobytes()


def test_a_value_beyond_float32_is_infinite_in_both_without_a_warning():
    """A taxi trip of 1e-131 miles gives a fare per mile far beyond float32: ±inf (the models
    map it to a finite value), never an overflow warning, which the tests turn into an error."""
    kernel = compiled("matrix")
    ev = TransactionEvent(
        "e", "u", 12.5, datetime(2025, 6, 2, tzinfo=UTC), attributes={"trip_distance": 3e-131}
    )
    features = Features(-1e300, 1, 2, None, None, None, 1, 1, 1, 1, None, None, None, None, None, 0, None, 0)
    batch = [Featured(Accepted(ev, 0.0, None, 0.0), features)]
    columns = ("amount", "attr:fare_per_mile")
    want = featured_matrix(batch, columns)
    assert want.tolist() == [[-math.inf, math.inf]]
    assert kernel.featured_matrix(batch, columns).tobytes() == want.tobytes()


def test_missing_values_are_nan_and_an_unknown_column_is_refused_like_the_reference():
    kernel = compiled("matrix")
    batch = [
        Featured(
            Accepted(TransactionEvent("e", "u", 1.0, datetime(2025, 6, 2, tzinfo=UTC)), 0.0, None, 0.0),
            Features(3.0, 1, 2, None, None, None, 1, 1, 1, 1, None, None, None, None, None, 0, None, 0),
        )
    ]
    got = kernel.featured_matrix(batch, ("amount", "distance_km", "device_novelty", "merchant_events_7d"))
    assert got[0, 0] == 3.0 and np.isnan(got[0, 1:]).all()
    with pytest.raises(AttributeError, match="no_such_column"):
        featured_matrix(batch, ("no_such_column",))
    with pytest.raises(AttributeError, match="no_such_column"):
        kernel.featured_matrix(batch, ("no_such_column",))
