"""The compiled ``check_batch`` against :func:`operators.validation.check_batch`: the
same accepted events and the same dead letters, in order, for hostile payloads mixed with
valid ones, broker timestamps and request-id headers, and values at every limit."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.events import ValidationLimits
from operators.validation import REQUEST_ID_HEADER, RawBatch, check_batch
from tests.fuzz_corpus import corpus
from tests.operators.kernels.conftest import compiled

NOW = 1_749_000_000.0


def _batch(values: list[bytes | None], seed: int = 0) -> RawBatch:
    n = len(values)
    stamps = [None if i % 5 == 0 else ((i % 3), 1_748_999_000_000 + i) for i in range(n)]
    headers = [
        None if i % 4 else [("other", b"x"), (REQUEST_ID_HEADER, f"req-{i}-{seed}".encode() * (i % 9))]
        for i in range(n)
    ]
    return RawBatch("t", 3, list(range(100, 100 + n)), [b"k"] * n, values, stamps, headers)


@pytest.mark.parametrize("seed", range(6))
def test_hostile_and_valid_payloads_give_the_reference_events_and_dead_letters(seed):
    kernel = compiled("validation")
    batch = _batch([v for _, v in corpus(seed, 400)] + [None, b""], seed)
    limits = ValidationLimits()
    got_ok, got_dead = kernel.check_batch(batch, limits, NOW)
    want_ok, want_dead = check_batch(batch, limits, NOW)
    assert got_ok == want_ok and got_dead == want_dead
    assert len(got_ok) > 50 and len(got_dead) > 50


def _event(**extra: object) -> bytes:
    ev = {"event_id": "e", "user_id": "u", "amount": 1.5, "timestamp": "2025-06-04T01:00:00Z", **extra}
    return json.dumps(ev).encode()


def test_values_at_every_limit_give_the_reference():
    kernel = compiled("validation")
    limits = ValidationLimits(max_bytes=300, max_attributes=2)
    values = [
        _event(),
        _event(attributes={"a": 1, "b": 2}),
        _event(attributes={"a": 1, "b": 2, "c": 3}),
        _event(attributes={"big": 2**63 - 1, "t": True, "n": None}),
        _event(attributes={"big": 2**63}),
        _event(attributes={"neg": -(2**63)}),
        _event(attributes={"f": 1e308}),
        _event(merchant_name="a\u0000b"),
        _event(merchant_name="x" * 280),
        _event(timestamp="2025-06-05T01:20:00Z"),  # a day and a little ahead of NOW
        _event(timestamp="1970-01-01T00:00:00Z"),
        _event(timestamp="1970-01-01T00:30:00+01:00"),
        _event(currency="XXX"),
        _event(currency="ABC"),
        _event(currency="usd"),
        _event(currency="US\n"),
        *(
            _event(location={"latitude": 1.0, "longitude": 2.0, "country": country})
            for country in ("FR", "fr", "F1", "FRA", "FR\n", "\u00c9S", None)
        ),
        _event(amount=0),
        _event(amount=9_999_999_999.99),
    ]
    batch = _batch(values)
    got = kernel.check_batch(batch, limits, NOW)
    assert got == check_batch(batch, limits, NOW)
    reasons = [dead.error for dead in got[1]]
    assert "currency: Expected `str` matching regex '^[A-Z]{3}$'" in reasons
    assert reasons.count("location.country: Expected `str` matching regex '^[A-Z]{2}$'") == 5


# Hypothesis takes naive bounds and applies ``timezones`` to what it draws
_EARLIEST = datetime(1969, 12, 30)  # noqa: DTZ001
_LATEST = datetime(2200, 12, 31)  # noqa: DTZ001


@settings(max_examples=300, deadline=None)
@given(
    stamps=st.lists(
        st.datetimes(_EARLIEST, _LATEST, timezones=st.just(UTC))
        | st.datetimes(
            _EARLIEST,
            _LATEST,
            timezones=st.timedeltas(timedelta(hours=-23), timedelta(hours=23)).map(
                lambda d: timezone(timedelta(minutes=d // timedelta(minutes=1)))
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_any_instant_gives_the_reference_epoch_seconds_bit_for_bit(stamps):
    """The kernel computes a UTC instant's epoch seconds itself: the same double as
    ``datetime.timestamp()``, microseconds, leap days, offsets and centuries included."""
    kernel = compiled("validation")
    limits = ValidationLimits(max_future_skew=timedelta(days=100_000))
    batch = _batch([_event(timestamp=stamp.isoformat()) for stamp in stamps])
    got = kernel.check_batch(batch, limits, NOW)
    assert got == check_batch(batch, limits, NOW)
    want = [stamp.timestamp() for stamp in stamps if stamp.year >= 1970]
    assert [struct.pack("<d", a.ts) for a in got[0]] == [struct.pack("<d", w) for w in want]


@pytest.mark.parametrize("offset_min", [0, 60, -330, 23 * 60])
def test_the_future_skew_bound_is_the_reference_to_the_microsecond(offset_min):
    """The kernel compares whole microseconds with the deadline, not datetimes: an event
    at the deadline is accepted, one microsecond after it is not, at any fixed offset."""
    kernel = compiled("validation")
    limits = ValidationLimits()
    deadline = datetime.fromtimestamp(NOW, UTC) + limits.max_future_skew
    zone = timezone(timedelta(minutes=offset_min))
    stamps = [(deadline + timedelta(microseconds=d)).astimezone(zone) for d in (-1, 0, 1, 1_000_000)]
    batch = _batch([_event(timestamp=s.isoformat()) for s in stamps])
    got = kernel.check_batch(batch, limits, NOW)
    assert got == check_batch(batch, limits, NOW)
    assert [a.event.timestamp for a in got[0]] == stamps[:2]
    assert len(got[1]) == 2
