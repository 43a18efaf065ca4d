"""Raw messages to events or bounded dead letters: nothing raises, nothing is unbounded."""

from __future__ import annotations

import hashlib

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.events import ValidationLimits
from operators.validation import (
    REQUEST_ID_HEADER,
    Accepted,
    DeadLetter,
    Message,
    RawBatch,
    check_batch,
    check_message,
)

TS = b'"timestamp":"2025-06-02T12:00:00Z"'


def msg(value: bytes | None, key: bytes | None = b"u1", headers=None) -> KafkaSourceMessage:
    return KafkaSourceMessage(key, value, topic="t", partition=1, offset=9, headers=headers or [])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"event_id":"e","user_id":"u\xff","amount":1,' + TS + b"}", "payload: invalid UTF-8 at byte 28"),
        (
            b'{"event_id":"e","user_id":"u","amount":1,' + TS + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}",
            "payload: JSON is nested too deeply",
        ),
        (
            b'{"event_id":"e","user_id":"u","amount":1,' + TS + b',"attributes":{"n":' + b"9" * 30 + b"}}",
            "attributes.n: integer out of the 64-bit range",
        ),
    ],
)
def test_payloads_that_used_to_raise_are_dead_letters_with_a_reason(payload, reason):
    out = check_message(msg(payload), ValidationLimits(), now=1.8e9)
    assert isinstance(out, DeadLetter) and out.error.startswith(reason), out


def test_dead_letters_are_bounded_and_describe_the_whole_payload():
    payload = b"\xff" * 760_000
    out = check_message(msg(payload, key=b"k" * 10_000), ValidationLimits(dead_letter_bytes=1024), now=0.0)
    assert isinstance(out, DeadLetter)
    assert out.truncated and out.value_bytes == 760_000
    assert out.value_sha256 == hashlib.sha256(payload).hexdigest()
    assert out.value_encoding == "base64" and len(out.value) <= 1024 * 4 // 3 + 4
    assert out.key is not None and len(out.key) <= 256


def test_a_utf8_prefix_is_not_cut_inside_a_character():
    payload = b'{"merchant_name":"' + "é".encode() * 40_000 + b'"}'
    out = check_message(msg(payload), ValidationLimits(dead_letter_bytes=1001), now=0.0)
    assert isinstance(out, DeadLetter) and out.value_encoding == "utf-8" and out.truncated
    assert len(out.value.encode()) in (999, 1000, 1001)


def test_accepted_events_carry_digest_origin_and_request_token():
    payload = b'{"event_id":"e","user_id":"u","amount":1,' + TS + b"}"
    out = check_message(msg(payload, headers=[(REQUEST_ID_HEADER, b"tok-1")]), ValidationLimits(), now=1.8e9)
    assert isinstance(out, Accepted)
    assert out.digest == hashlib.sha256(payload).digest()
    assert (out.request_id, out.origin) == ("tok-1", ("t", 1, 9))


_VALID = b'{"event_id":"e%d","user_id":"u1","amount":12.5,' + TS + b"}"
_payloads = st.one_of(
    st.integers(0, 10**6).map(lambda k: _VALID.replace(b"%d", str(k).encode())),
    st.sampled_from(
        [
            None,
            b"",
            b"not json",
            b'{"event_id":"e","user_id":"u\xff","amount":1,' + TS + b"}",
            b'{"event_id":"e","user_id":"u","amount":-1,' + TS + b"}",
            b'{"event_id":"e","user_id":"u","amount":1,"timestamp":"2999-01-01T00:00:00Z"}',
            b'{"event_id":"e","user_id":"u\\u0000","amount":1,' + TS + b"}",
        ]
    ),
    st.binary(max_size=64),
)
_messages = st.lists(
    st.tuples(
        _payloads,
        st.one_of(st.none(), st.tuples(st.integers(0, 2), st.integers(-5, 2**41))),
        st.one_of(
            st.none(), st.lists(st.tuples(st.sampled_from([REQUEST_ID_HEADER, "x"]), st.binary(max_size=80)))
        ),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(_messages)
def test_a_batch_gives_what_checking_each_message_gives(rows):
    """check_batch reads the batch's columns without building each message; it must give
    exactly what check_message gives message by message, dead letters included."""
    messages = [
        Message(b"k", value, "t", 3, 100 + i, ts, headers) for i, (value, ts, headers) in enumerate(rows)
    ]
    limits, now = ValidationLimits(), 1.8e9
    accepted, dead = check_batch(RawBatch.of(messages), limits, now)
    one_by_one = [check_message(m, limits, now) for m in messages]
    assert accepted == [r for r in one_by_one if isinstance(r, Accepted)]
    assert dead == [r for r in one_by_one if isinstance(r, DeadLetter)]
