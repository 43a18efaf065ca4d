# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled :func:`operators.validation.check_batch`: the same events and dead letters
(``tests/operators/kernels/test_validation.py``).

A message is decoded by the same msgspec decoder and checked as
:func:`operators.events.decode_event` checks it; whatever is not plainly valid (no value,
too big, a decode error, any failed check, a ``\\u0000`` escape) goes to the reference
:func:`operators.validation.check_message`, which says why or accepts it after all. So
this kernel may send a valid event the slow way, never let an invalid one through.
Change one, change both.
"""

import hashlib

from cpython.datetime cimport PyDateTime_GET_YEAR, datetime, import_datetime
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.math cimport isfinite

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)
    void* PyUnicode_DATA(object text)

cdef extern from "string.h":
    void* memmem(const void* haystack, size_t haystacklen, const void* needle, size_t needlelen)

from operators.currencies import ISO_4217
from operators.events import _DECODER, is_code
from operators.validation import REQUEST_ID_HEADER, Accepted, check_message

from operators.kernels._time cimport epoch_micros

import_datetime()

from datetime import UTC
from datetime import datetime as _datetime

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

_sha256 = hashlib.sha256
_decode = _DECODER.decode
_currencies = ISO_4217
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63


cdef double _epoch_seconds(datetime stamp, long long micros) except? -1.0:
    """``stamp.timestamp()``, bit for bit, from its whole microseconds since the epoch.

    CPython divides the whole microseconds since the epoch, an exact integer, by 10**6 with
    correct rounding; below 2**53 the same integer is exact as a double and one IEEE
    division rounds the same quotient the same way."""
    if not -9007199254740992 < micros < 9007199254740992:  # 2**53
        return stamp.timestamp()
    return <double>micros / 1e6


cdef inline bint _is_code(str text, Py_ssize_t length) except -1:
    """:func:`operators.events.is_code`: ``length`` ASCII letters A to Z (upper case, ASCII
    and letters together are exactly those)."""
    if not PyUnicode_IS_COMPACT_ASCII(text) or PyUnicode_GET_LENGTH(text) != length:
        return PyUnicode_GET_LENGTH(text) == length and is_code(text, length)
    cdef const unsigned char* p = <const unsigned char*>PyUnicode_DATA(text)
    cdef Py_ssize_t i
    for i in range(length):
        if not (65 <= p[i] <= 90):
            return False
    return True


cdef bint _attributes_ok(dict attributes, Py_ssize_t most) except -1:
    """The attribute checks of :func:`operators.events._semantic_error`."""
    if len(attributes) > most:
        return False
    for value in attributes.values():
        if type(value) is float:
            if not isfinite(value):
                return False
        elif isinstance(value, float):
            return False  # a float subclass: let the reference judge
        elif isinstance(value, int) and not _INT64_MIN <= value < _INT64_MAX:
            return False
    return True


cdef object _request_id(headers):
    """:func:`operators.validation._header_request_id`."""
    if not headers:
        return None
    for name, value in headers:
        if name == REQUEST_ID_HEADER and value:
            return value[:64].decode("utf-8", "replace")
    return None


cdef object _accept(value, timestamp, headers, tuple origin, limits, Py_ssize_t max_bytes,
                    Py_ssize_t max_attributes, deadline, long long deadline_micros, double now):
    """The :class:`Accepted` event of a plainly valid message, else None."""
    if type(value) is not bytes or len(<bytes>value) > max_bytes:
        return None
    # memmem, not ``in``: bytes.__contains__ first tries its argument as an integer and
    # formats the TypeError it then clears, about 1 us per event
    if memmem(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), b"\\u0000", 6) != NULL:
        return None
    try:
        event = _decode(value)
    except Exception:
        return None
    if not isfinite(event.amount) or event.currency not in _currencies:
        return None
    location = event.location
    if location is not None and location.country is not None and not _is_code(location.country, 2):
        return None
    cdef datetime stamp = event.timestamp
    cdef long long micros = 0
    if PyDateTime_GET_YEAR(stamp) < 1970:
        return None
    if epoch_micros(stamp, &micros):  # UTC or a fixed offset: no Python call
        if micros > deadline_micros:
            return None
        ts = _epoch_seconds(stamp, micros)
    elif stamp > deadline:
        return None
    else:
        ts = stamp.timestamp()
    attributes = event.attributes
    if attributes and not _attributes_ok(attributes, max_attributes):
        return None
    broker_ms = None
    if timestamp is not None:
        kind, ms = timestamp
        if kind != 0 and ms > 0:
            broker_ms = ms
    return Accepted(
        event,
        ts,
        broker_ms,
        now,
        _sha256(value).digest(),
        _request_id(headers),
        origin,
    )


def check_batch(batch, limits, double now):
    """:func:`operators.validation.check_batch`: every message of ``batch`` to an event or a
    dead letter, in order; never raises."""
    cdef list accepted = [], dead = []
    now_dt = _datetime.fromtimestamp(now, UTC)
    deadline = now_dt + limits.max_future_skew
    cdef long long deadline_micros = 0
    if not epoch_micros(deadline, &deadline_micros):
        raise ValueError("check_batch: the deadline is not at UTC")
    cdef Py_ssize_t max_bytes = limits.max_bytes, max_attributes = limits.max_attributes
    topic, partition = batch.topic, batch.partition
    cdef list offsets = batch.offsets, values = batch.values, stamps = batch.timestamps
    cdef list headers = batch.headers
    cdef Py_ssize_t i, n = len(values)
    if len(offsets) != n or len(stamps) != n or len(headers) != n:
        raise ValueError("check_batch: the batch's columns differ in length")
    for i in range(n):
        try:
            result = _accept(
                values[i], stamps[i], headers[i], (topic, partition, offsets[i]), limits,
                max_bytes, max_attributes, deadline, deadline_micros, now,
            )
        except Exception:
            result = None
        if result is None:  # a dead letter (rare), and the reference says why
            result = check_message(batch.message(i), limits, now)
        if type(result) is Accepted:
            accepted.append(result)
        else:
            dead.append(result)
    return accepted, dead
