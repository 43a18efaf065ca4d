from datetime import UTC, datetime

from operators.events import InvalidEvent
from operators.labels import Label, decode_label, encode_label


def test_round_trip():
    label = Label("e1", True, datetime(2026, 1, 2, tzinfo=UTC), "chargeback")
    key, value = encode_label(label)
    assert key == b"e1"
    assert decode_label(value) == label


def test_bad_labels_name_the_field():
    cases = {
        b"{": "payload",
        b'{"is_fraud": true, "label_time": "2026-01-01T00:00:00Z"}': "event_id: required field is missing",
        b'{"event_id": "e", "is_fraud": true, "label_time": "2026-01-01T00:00:00"}': "label_time",
        b'{"event_id": "e", "is_fraud": true, "label_time": "2026-01-01T00:00:00Z", "source": "A B"}': "source",
        b'{"event_id": "", "is_fraud": true, "label_time": "2026-01-01T00:00:00Z"}': "event_id",
        b'{"event_id": "e\\u0000", "is_fraud": true, "label_time": "2026-01-01T00:00:00Z"}': "event_id",
        b"x" * 5000: "payload",
    }
    for raw, field in cases.items():
        result = decode_label(raw)
        assert isinstance(result, InvalidEvent), raw
        assert result.error.startswith(field), (raw, result.error)
    assert isinstance(decode_label(None), InvalidEvent)


def test_default_source_and_unknown_fields():
    label = decode_label(b'{"event_id":"e","is_fraud":false,"label_time":"2026-01-01T00:00:00+02:00","x":1}')
    assert isinstance(label, Label) and label.source == "analyst" and not label.is_fraud
    assert label.label_ts == datetime(2025, 12, 31, 22, tzinfo=UTC).timestamp()
