"""Reading and re-submitting dead letters, without a broker (the CLI: test_cli_dlq.py)."""

import hashlib
import json

import msgspec
import pytest

from apps.dead_letters import DeadLetterEntry, NotResubmittable, Selection, original_payload, preview
from operators.dedup import duplicate_letter
from operators.events import ValidationLimits
from operators.validation import Accepted, Message, check_message

NOW = 1_750_000_000.0


def letter_of(value: bytes, key: bytes | None = b"u1", offset: int = 7, dead_letter_bytes: int = 16_384):
    limits = ValidationLimits(dead_letter_bytes=dead_letter_bytes)
    out = check_message(Message(key, value, "tx", 1, offset), limits, NOW)
    assert not isinstance(out, Accepted)
    return DeadLetterEntry.of(0, 3, msgspec.json.encode(out))


def test_the_original_payload_comes_back_byte_for_byte_utf8_or_binary():
    text = b'{"event_id": "e1", "user_id": "u1", "amount": -5, "timestamp": "2025-06-02T12:00:00Z"}'
    entry = letter_of(text)
    assert (entry.field, entry.source) == ("amount", "tx/1@7")
    assert original_payload(entry.letter) == text
    binary = b"\xff\xfe\x00garbage"
    entry = letter_of(binary)
    assert entry.letter.value_encoding == "base64"
    assert original_payload(entry.letter) == binary
    assert preview(entry).startswith("(binary, 10 bytes) base64:")


def test_truncated_and_duplicate_dead_letters_cannot_be_resubmitted():
    big = json.dumps({"event_id": "e2", "user_id": "u1", "amount": -1, "pad": "x" * 1000}).encode()
    entry = letter_of(big, dead_letter_bytes=256)
    assert entry.letter.truncated
    with pytest.raises(NotResubmittable, match=r"truncated: the dead letter kept 256 of 10\d\d bytes"):
        original_payload(entry.letter)
    sent = b'{"event_id":"e3","user_id":"u1","amount":1.0,"timestamp":"2025-06-02T12:00:00Z"}'
    first = check_message(Message(b"u1", sent, "tx", 0, 1), ValidationLimits(), NOW)
    assert isinstance(first, Accepted)
    other = int.from_bytes(hashlib.sha256(b"other").digest()[:8], signed=True)
    dup = duplicate_letter(first, other, NOW, 16_384)
    with pytest.raises(NotResubmittable, match="a duplicate of an event_id the job already scored"):
        original_payload(dup)


def test_a_payload_that_does_not_match_its_hash_is_not_resubmitted():
    entry = letter_of(b"not json")
    altered = msgspec.structs.replace(entry.letter, value="not jsoN")
    with pytest.raises(NotResubmittable, match="not the payload that was sent"):
        original_payload(altered)


def test_selection_by_source_offset_and_error_field():
    entry = letter_of(b"not json", offset=41)
    assert entry.field == "payload"
    assert Selection.parse(["1:41"], []).matches(entry)
    assert Selection.parse(["41"], []).matches(entry)
    assert Selection.parse(["1@41", "9"], []).matches(entry)
    assert not Selection.parse(["0:41"], []).matches(entry)
    assert Selection.parse([], ["payload"]).matches(entry)
    assert not Selection.parse([], ["amount"]).matches(entry)
    assert not Selection.parse(["41"], ["amount"]).matches(entry)
    assert Selection().empty and Selection().matches(entry)
    with pytest.raises(ValueError, match="--offset: expected"):
        Selection.parse(["x:1"], [])


def test_a_record_that_is_not_a_dead_letter_is_shown_not_fatal():
    entry = DeadLetterEntry.of(2, 9, b"\x00 not a dead letter")
    assert entry.letter is None and entry.field == "(unreadable dead letter)" and entry.source == "?"
    assert "not a dead letter" in preview(entry)
