"""The input event contract and its validation.

Every byte string that reaches the job either becomes a :class:`TransactionEvent`
or an :class:`InvalidEvent` that says which field is wrong and why. Nothing is
dropped and nothing raises: invalid input is data for the dead-letter topic.

>>> ok = decode_event(b'{"event_id":"e1","user_id":"u1","amount":12.5,'
...                   b'"timestamp":"2024-05-01T12:00:00+02:00"}')
>>> ok.currency
'USD'
>>> bad = decode_event(b'{"event_id":"e1","user_id":"u1","amount":-1,'
...                    b'"timestamp":"2024-05-01T12:00:00Z"}')
>>> bad.error
'amount: Expected `float` >= 0.0'
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from operators.currencies import ISO_4217

__all__ = [
    "MAX_AMOUNT",
    "InvalidEvent",
    "Location",
    "TransactionEvent",
    "ValidationLimits",
    "decode_event",
    "decode_reason",
    "encode_event",
    "event_json_schema",
    "is_code",
    "undecodable_reason",
]

MAX_AMOUNT = 9_999_999_999.99
"""Largest amount the ``numeric(12,2)`` column holds."""

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Text = Annotated[str, msgspec.Meta(max_length=512)]
_AttrValue = str | float | int | bool | None
# The code patterns are published in the schema but checked by ``_semantic_error``, not by
# msgspec: its pattern check is a Python ``re`` call per field, half the decode's time.
_CURRENCY_PATTERN = "^[A-Z]{3}$"
_COUNTRY_PATTERN = "^[A-Z]{2}$"
_Currency = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": _CURRENCY_PATTERN})]
_Country = Annotated[str, msgspec.Meta(extra_json_schema={"pattern": _COUNTRY_PATTERN})]


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """Where the transaction happened (WGS84 degrees)."""

    latitude: Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
    longitude: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
    country: _Country | None = None
    city: _Text | None = None


class TransactionEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One payment attempt, as produced to the ``transactions`` topic."""

    event_id: _Id
    user_id: _Id
    amount: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_AMOUNT)]
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    currency: _Currency = "USD"
    merchant_name: _Text | None = None
    merchant_category: _Text | None = None
    merchant_id: _Text | None = None
    location: Location | None = None
    device_id: _Text | None = None
    ip_address: _Text | None = None
    user_agent: _Text | None = None
    attributes: dict[Annotated[str, msgspec.Meta(max_length=64)], _AttrValue] = {}


class InvalidEvent(msgspec.Struct, frozen=True):
    """A record that failed validation: the raw bytes and the reason."""

    raw: bytes
    error: str


class ValidationLimits(msgspec.Struct, frozen=True):
    """Bounds applied on top of the schema.

    ``max_future_skew`` rejects event times too far ahead of the wall clock
    (they would otherwise hold per-user windows open for years);
    ``dead_letter_bytes`` bounds the payload a dead letter keeps.
    """

    max_bytes: int = 65_536
    max_attributes: int = 32
    max_future_skew: timedelta = timedelta(days=1)
    dead_letter_bytes: int = 16_384


_DECODER = msgspec.json.Decoder(TransactionEvent)
_ENCODER = msgspec.json.Encoder()
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_DEFAULT_LIMITS = ValidationLimits()


def decode_reason(exc: msgspec.DecodeError) -> str:
    """Turn msgspec's message into ``field: why``."""
    text = str(exc)
    match = _PATH.search(text)
    path = match.group("path") if match else ""
    message = text[: match.start()] if match else text
    missing = _MISSING.match(message)
    if missing:
        field = f"{path}.{missing['field']}" if path else missing["field"]
        return f"{field}: required field is missing"
    return f"{path or 'payload'}: {message}"


def undecodable_reason(exc: Exception, raw: bytes = b"") -> str:
    """The reason for a decoder failure other than a schema error (``raw``: the
    payload, to place an encoding error in it rather than in one string).

    >>> bad = UnicodeDecodeError("utf-8", b"u\\xff", 1, 2, "invalid start byte")
    >>> undecodable_reason(bad, b'{"a":"u\\xff"}')
    'payload: invalid UTF-8 at byte 7 (invalid start byte)'
    >>> undecodable_reason(RecursionError("maximum recursion depth exceeded"))
    'payload: JSON is nested too deeply'
    """
    if isinstance(exc, UnicodeDecodeError):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as whole:
            exc = whole
        return f"payload: invalid UTF-8 at byte {exc.start} ({exc.reason})"
    if isinstance(exc, RecursionError):
        return "payload: JSON is nested too deeply"
    return f"payload: cannot be decoded ({type(exc).__name__}: {str(exc)[:200]})"


def _utf8_reason(raw: bytes) -> str:
    """Where ``raw`` stops being UTF-8 (msgspec's own message does not say)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return undecodable_reason(exc, raw)
    return "payload: invalid UTF-8"  # msgspec refused a lone surrogate escape, say


def _has_nul(event: TransactionEvent) -> str | None:
    """Postgres text and jsonb cannot hold NUL; name the first field with one."""
    for name in (
        "event_id",
        "user_id",
        "merchant_name",
        "merchant_category",
        "merchant_id",
        "device_id",
        "ip_address",
        "user_agent",
    ):
        value = getattr(event, name)
        if value is not None and "\x00" in value:
            return name
    if event.location is not None and event.location.city and "\x00" in event.location.city:
        return "location.city"
    for key, value in event.attributes.items():
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            return f"attributes.{key!r}"
    return None


def is_code(text: str, length: int) -> bool:
    """Whether ``text`` is ``length`` upper-case ASCII letters (a currency or country code).

    >>> is_code("EUR", 3), is_code("eur", 3), is_code("FR\\n", 2), is_code("É1", 2)
    (True, False, False, False)
    """
    return len(text) == length and text.isascii() and text.isalpha() and text.isupper()


def _semantic_error(
    event: TransactionEvent, limits: ValidationLimits, now: datetime, may_have_nul: bool = True
) -> str | None:
    """``may_have_nul``: False when the payload holds no ``\\u0000`` escape (JSON cannot
    carry a NUL otherwise), which skips the per-field search."""
    if not math.isfinite(event.amount):
        return "amount: must be a finite number"
    if not is_code(event.currency, 3):
        return f"currency: Expected `str` matching regex {_CURRENCY_PATTERN!r}"
    if event.currency not in ISO_4217:
        return f"currency: {event.currency!r} is not an ISO 4217 code"
    if (
        event.location is not None
        and event.location.country is not None
        and not is_code(event.location.country, 2)
    ):
        return f"location.country: Expected `str` matching regex {_COUNTRY_PATTERN!r}"
    if event.timestamp > now + limits.max_future_skew:
        return f"timestamp: {event.timestamp.isoformat()} is more than {limits.max_future_skew} ahead of now"
    if event.timestamp.year < 1970:
        return "timestamp: before 1970"
    if len(event.attributes) > limits.max_attributes:
        return f"attributes: more than {limits.max_attributes} entries"
    for key, value in event.attributes.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"attributes.{key}: must be a finite number"
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return f"attributes.{key}: integer out of the 64-bit range"
    nul_field = _has_nul(event) if may_have_nul else None
    if nul_field is not None:
        return f"{nul_field}: contains a NUL character"
    return None


def decode_event(
    raw: bytes | None,
    limits: ValidationLimits = _DEFAULT_LIMITS,
    now: datetime | None = None,
) -> TransactionEvent | InvalidEvent:
    """Decode and validate one message value; never raises for bad input."""
    if raw is None:
        return InvalidEvent(b"", "payload: message has no value")
    if len(raw) > limits.max_bytes:
        return InvalidEvent(raw, f"payload: {len(raw)} bytes exceeds the limit of {limits.max_bytes}")
    try:
        event = _DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        if str(exc).startswith("Invalid UTF-8"):  # msgspec >= 0.23; earlier: a UnicodeDecodeError
            return InvalidEvent(raw, _utf8_reason(raw))
        return InvalidEvent(raw, decode_reason(exc))
    except Exception as exc:  # any other failure on hostile bytes is still a dead letter
        return InvalidEvent(raw, undecodable_reason(exc, raw))
    # find, not ``in``: bytes.__contains__ first tries its argument as an integer and formats
    # the TypeError it then clears, about 1 us per event
    may_have_nul = raw.find(b"\\u0000") >= 0
    error = _semantic_error(event, limits, now if now is not None else datetime.now(UTC), may_have_nul)
    if error is not None:
        return InvalidEvent(raw, error)
    return event


def encode_event(event: TransactionEvent) -> bytes:
    """Serialise an event exactly as the contract describes it."""
    return _ENCODER.encode(event)


def event_to_builtins(event: TransactionEvent) -> dict[str, Any]:
    """The event as plain JSON-ready Python objects."""
    result: dict[str, Any] = msgspec.to_builtins(event)
    return result


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of the input event (published as ``docs/event.schema.json``).

    The schema covers structure and ranges; the job also checks ISO 4217
    membership, finiteness, NUL characters and the future-skew bound.
    """
    schema = msgspec.json.schema(TransactionEvent)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fraudstream transaction event",
        **schema,
    }
