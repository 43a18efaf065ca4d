import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.events import InvalidEvent, TransactionEvent, decode_event, encode_event
from tests.support import encode, event

NOW = datetime(2025, 6, 3, tzinfo=UTC)


def test_minimal_event_defaults_currency_and_attributes():
    ev = decode_event(encode(event("e1")), now=NOW)
    assert isinstance(ev, TransactionEvent)
    assert ev.currency == "USD"
    assert ev.attributes == {}
    assert ev.timestamp.utcoffset() == timedelta(0)


def test_full_event_round_trips():
    raw = event(
        "e1",
        currency="EUR",
        merchant_name="Café",
        merchant_category="food",
        location={"latitude": 48.85, "longitude": 2.35, "country": "FR", "city": "Paris"},
        device_id="d1",
        ip_address="10.0.0.1",
        user_agent="ua",
        attributes={"trip_distance": 3.2, "payment_type": "card"},
    )
    ev = decode_event(encode(raw), now=NOW)
    assert isinstance(ev, TransactionEvent)
    assert decode_event(encode_event(ev), now=NOW) == ev


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("event_id"), "event_id: required field is missing"),
        (lambda e: e.update(amount="12"), "amount: Expected `float`, got `str`"),
        (lambda e: e.update(amount=-0.01), "amount: Expected `float` >= 0.0"),
        (lambda e: e.update(amount=1e11), "amount: Expected `float` <="),
        (lambda e: e.update(amount=True), "amount: Expected `float`, got `bool`"),
        (lambda e: e.update(currency="ABC"), "currency: 'ABC' is not an ISO 4217 code"),
        (lambda e: e.update(currency="usd"), "currency: Expected `str` matching"),
        (
            lambda e: e.update(timestamp="2025-06-02T12:00:00"),
            "timestamp: Expected `datetime` with a timezone",
        ),
        (lambda e: e.update(timestamp="yesterday"), "timestamp: Invalid RFC3339"),
        (lambda e: e.update(timestamp="2999-01-01T00:00:00Z"), "timestamp: 2999-01-01"),
        (
            lambda e: e.update(location={"latitude": 91, "longitude": 0}),
            "location.latitude: Expected `float` <= 90.0",
        ),
        (lambda e: e.update(location={"latitude": 0, "longitude": -181}), "location.longitude"),
        (lambda e: e.update(location={"latitude": 0, "longitude": 0, "country": "usa"}), "location.country"),
        (
            lambda e: e.update(location={"latitude": 0, "longitude": 0, "country": "us"}),
            "location.country: Expected `str` matching regex '^[A-Z]{2}$'",
        ),
        (lambda e: e.update(user_id=""), "user_id: Expected `str` of length >= 1"),
        (lambda e: e.update(user_id="x" * 200), "user_id: Expected `str` of length <= 128"),
        (lambda e: e.update(merchant_name="a\x00b"), "merchant_name: contains a NUL character"),
        (
            lambda e: e.update(attributes={"k": [1]}),
            "attributes[...]: Expected `bool | int | float | str | null`",
        ),
        (lambda e: e.update(attributes={f"k{i}": i for i in range(40)}), "attributes: more than 32"),
    ],
)
def test_invalid_events_name_the_field(mutate, field):
    raw = event("e1")
    mutate(raw)
    result = decode_event(encode(raw), now=NOW)
    assert isinstance(result, InvalidEvent)
    assert result.error.startswith(field), result.error


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"null", b"[]", b"\xff\xfe", b'{"amount": NaN}', b'{"amount": Infinity}']
)
def test_malformed_payloads_are_invalid_not_exceptions(raw):
    result = decode_event(raw, now=NOW)
    assert isinstance(result, InvalidEvent)
    assert result.raw == raw
    assert ":" in result.error


def test_oversized_payload_is_rejected_before_parsing():
    raw = encode(event("e1", merchant_name="x" * 100)) + b" " * 70_000
    result = decode_event(raw, now=NOW)
    assert isinstance(result, InvalidEvent)
    assert result.error.startswith("payload: ") and "exceeds the limit" in result.error


def test_missing_value_is_invalid():
    assert decode_event(None, now=NOW).error == "payload: message has no value"  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw):
    assert isinstance(decode_event(raw, now=NOW), TransactionEvent | InvalidEvent)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["event_id", "user_id", "amount", "timestamp", "currency", "location", "device_id", "attributes"]
        ),
        json_values,
    )
)
def test_arbitrary_json_objects_never_raise(obj):
    result = decode_event(json.dumps(obj).encode(), now=NOW)
    if isinstance(result, InvalidEvent):
        assert result.error.split(":")[0]


def test_published_json_schema_matches_the_code():
    from pathlib import Path

    from operators.events import event_json_schema

    published = json.loads((Path(__file__).resolve().parents[2] / "docs" / "event.schema.json").read_text())
    assert published == event_json_schema(), "regenerate docs/event.schema.json (see docs/contract.md)"
