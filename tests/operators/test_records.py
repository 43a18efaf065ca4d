from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from operators.records import _cents, decision_record, encode_decision, scored_event_row
from tests.support import scored_events


def test_the_decision_message_is_the_decision_record_as_json():
    events = scored_events(12)
    assert any(s.hits for s in events) and any(not s.hits for s in events)
    with_request = [msgspec.structs.replace(s, request_id=f"r{i}") for i, s in enumerate(events[:3])]
    for s in events + with_request:
        key, value, ts = encode_decision(s)
        assert key == s.event.event_id.encode() and ts == s.ingest_ms
        assert value == msgspec.json.encode(decision_record(s))
    assert b'"request_id":"r0"' in encode_decision(with_request[0])[1]
    assert b"request_id" not in encode_decision(events[0])[1]


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_an_amount_is_rounded_to_cents_as_round_rounds_it(amount):
    assert _cents(amount) == round(Decimal(amount), 2)
    assert str(_cents(amount)) == str(round(Decimal(amount), 2))


def test_the_binary_row_holds_empty_lists_for_an_event_without_hits():
    quiet = next(s for s in scored_events(12) if not s.hits)
    row = dict(zip(("rules", "reasons"), scored_event_row(quiet, binary=True)[20:22], strict=True))
    assert row == {"rules": b"\x01[]", "reasons": b"\x01[]"}
    assert scored_event_row(quiet)[20:22] == ("[]", "[]")
