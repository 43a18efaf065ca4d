"""Raw messages to events or bounded dead letters: nothing raises, nothing is unbounded."""

from __future__ import annotations

import hashlib

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

from operators.events import ValidationLimits
from operators.validation import REQUEST_ID_HEADER, Accepted, DeadLetter, check_message

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
