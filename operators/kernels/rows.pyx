# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled ``scored_events`` rows in PostgreSQL's binary COPY format: the bytes psycopg
writes for :func:`operators.records.scored_event_row` (``binary=True``) typed
:data:`operators.records.SCORED_EVENT_COPY_TYPES`, byte for byte
(``tests/operators/kernels/test_rows.py``), without a tuple, a dumper call and a
``Decimal`` per value.

The Postgres sink sends :data:`SIGNATURE`, the rows of :func:`copy_rows` and
:data:`TRAILER` with ``Copy.write``. The row's columns and their order are those of
``scored_event_row``; change one, change both.
"""

from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_GET_SIZE,
    PyByteArray_Resize,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.datetime cimport datetime, import_datetime
from libc.stdint cimport int64_t, uint32_t, uint64_t
from cpython.mem cimport PyMem_Free
from libc.string cimport memcpy, strlen

from operators.kernels._time cimport epoch_micros, offset_micros, wall_micros

import msgspec

from operators.ensemble import Verdict
from operators.events import Location, TransactionEvent
from operators.records import SCORED_EVENT_COLUMNS
from operators.scoring import ScoredEvent

import_datetime()

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* type) except NULL

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

SIGNATURE = b"PGCOPY\n\xff\r\n\0" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
"""What a binary COPY starts with (signature, flags, header extension length)."""
TRAILER = b"\xff\xff"
"""What a binary COPY ends with."""

DEF COLUMNS = 37
if len(SCORED_EVENT_COLUMNS) != COLUMNS:
    raise ImportError("operators.kernels.rows: scored_events' columns changed; update the kernel")

_encode = msgspec.json.Encoder().encode
_astuple = msgspec.structs.astuple


cdef Py_ssize_t _field(object cls, str name) except -1:
    """Where ``name`` is in ``astuple`` of a ``cls`` (the structs' field order is read, not assumed)."""
    return cls.__struct_fields__.index(name)


cdef Py_ssize_t S_EVENT = _field(ScoredEvent, "event"), S_FEATURES = _field(ScoredEvent, "features")
cdef Py_ssize_t S_HITS = _field(ScoredEvent, "hits"), S_VERDICT = _field(ScoredEvent, "verdict")
cdef Py_ssize_t S_MODEL_VERSION = _field(ScoredEvent, "model_version")
cdef Py_ssize_t S_SCORED_AT = _field(ScoredEvent, "scored_at"), S_INGEST_MS = _field(ScoredEvent, "ingest_ms")
cdef Py_ssize_t S_PROCESSING_MS = _field(ScoredEvent, "processing_ms")
cdef Py_ssize_t S_CHALLENGER = _field(ScoredEvent, "challenger")
cdef Py_ssize_t S_RULES_VERSION = _field(ScoredEvent, "rules_version")
cdef Py_ssize_t S_SHADOW = _field(ScoredEvent, "shadow_rules")
cdef Py_ssize_t E_EVENT_ID = _field(TransactionEvent, "event_id"), E_USER_ID = _field(TransactionEvent, "user_id")
cdef Py_ssize_t E_AMOUNT = _field(TransactionEvent, "amount"), E_CURRENCY = _field(TransactionEvent, "currency")
cdef Py_ssize_t E_TIMESTAMP = _field(TransactionEvent, "timestamp")
cdef Py_ssize_t E_MERCHANT_NAME = _field(TransactionEvent, "merchant_name")
cdef Py_ssize_t E_MERCHANT_CATEGORY = _field(TransactionEvent, "merchant_category")
cdef Py_ssize_t E_MERCHANT_ID = _field(TransactionEvent, "merchant_id")
cdef Py_ssize_t E_LOCATION = _field(TransactionEvent, "location")
cdef Py_ssize_t E_DEVICE_ID = _field(TransactionEvent, "device_id")
cdef Py_ssize_t E_IP_ADDRESS = _field(TransactionEvent, "ip_address")
cdef Py_ssize_t E_USER_AGENT = _field(TransactionEvent, "user_agent")
cdef Py_ssize_t E_ATTRIBUTES = _field(TransactionEvent, "attributes")
cdef Py_ssize_t L_LATITUDE = _field(Location, "latitude"), L_LONGITUDE = _field(Location, "longitude")
cdef Py_ssize_t L_COUNTRY = _field(Location, "country"), L_CITY = _field(Location, "city")
cdef Py_ssize_t V_FRAUD_SCORE = _field(Verdict, "fraud_score"), V_RISK_LEVEL = _field(Verdict, "risk_level")
cdef Py_ssize_t V_DECISION = _field(Verdict, "decision"), V_IS_BLOCKED = _field(Verdict, "is_blocked")
cdef Py_ssize_t V_SCORES = _field(Verdict, "scores")


cdef long long _MICROS_1970_TO_2000 = 946_684_800 * 1_000_000


cdef long long _micros_since_2000(datetime dt) except? -1:
    """An aware datetime's microseconds since 2000-01-01 UTC (psycopg's datetime dumper)."""
    cdef long long micros = 0
    if epoch_micros(dt, &micros):  # UTC or a fixed offset
        return micros - _MICROS_1970_TO_2000
    offset = dt.utcoffset()
    if offset is None:
        raise ValueError("a timestamptz column needs an aware datetime")
    return wall_micros(dt) - offset_micros(offset) - _MICROS_1970_TO_2000


cdef long long _MICROS_PER_DAY = 86_400 * 1_000_000


def event_days(items):
    """The UTC days (since 1970-01-01) of the events of ``items`` (scored events), as
    :func:`operators.sinks.postgres.event_days` computes them: the days whose partitions
    their rows go to."""
    cdef set out = set()
    cdef long long micros, day
    for s in items:
        micros = _micros_since_2000(s.event.timestamp) + _MICROS_1970_TO_2000
        day = micros // _MICROS_PER_DAY  # C division truncates: floor it
        if micros % _MICROS_PER_DAY != 0 and micros < 0:
            day -= 1
        out.add(day)
    return out


cdef class _Buffer:
    """A growing byte buffer, written in network byte order."""

    cdef bytearray data
    cdef Py_ssize_t size

    def __cinit__(self, Py_ssize_t capacity):
        self.data = PyByteArray_FromStringAndSize(NULL, capacity if capacity > 64 else 64)
        self.size = 0

    cdef bytes take(self):
        """What was written, as bytes; the buffer is empty again (its memory kept)."""
        cdef bytes out = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.data), self.size)
        self.size = 0
        return out

    cdef inline char* reserve(self, Py_ssize_t n) except NULL:
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(self.data)
        if self.size + n > have:
            PyByteArray_Resize(self.data, max(2 * have, self.size + n))
        return PyByteArray_AS_STRING(self.data) + self.size

    cdef inline int u16(self, unsigned int v) except -1:
        cdef unsigned char* p = <unsigned char*>self.reserve(2)
        p[0] = (v >> 8) & 0xFF
        p[1] = v & 0xFF
        self.size += 2
        return 0

    cdef inline int u32(self, uint32_t v) except -1:
        cdef unsigned char* p = <unsigned char*>self.reserve(4)
        p[0] = (v >> 24) & 0xFF
        p[1] = (v >> 16) & 0xFF
        p[2] = (v >> 8) & 0xFF
        p[3] = v & 0xFF
        self.size += 4
        return 0

    cdef inline int u64(self, uint64_t v) except -1:
        cdef unsigned char* p = <unsigned char*>self.reserve(8)
        cdef int i
        for i in range(8):
            p[i] = (v >> (56 - 8 * i)) & 0xFF
        self.size += 8
        return 0

    cdef inline int raw(self, const char* src, Py_ssize_t n) except -1:
        cdef char* p = self.reserve(n)
        memcpy(p, src, n)
        self.size += n
        return 0

    cdef inline int null(self) except -1:
        return self.u32(0xFFFFFFFF)

    cdef int text(self, value) except -1:
        """A text field (NULL for None): its UTF-8, as psycopg's str dumper writes it."""
        cdef Py_ssize_t n
        cdef const char* s
        if value is None:
            return self.null()
        s = PyUnicode_AsUTF8AndSize(value, &n)
        if n > 0x7FFFFFFF:
            raise ValueError("text field over 2 GiB")
        self.u32(<uint32_t>n)
        return self.raw(s, n)

    cdef int blob(self, bytes value) except -1:
        """A field of bytes as they are (the jsonb and json columns)."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
        self.u32(<uint32_t>n)
        return self.raw(PyBytes_AS_STRING(value), n)

    cdef int jsonb(self, value) except -1:
        """jsonb's binary form: version 1, then the JSON text."""
        cdef bytes body = _encode(value)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        self.u32(<uint32_t>(n + 1))
        self.raw(b"\x01", 1)
        return self.raw(PyBytes_AS_STRING(body), n)

    cdef int float4(self, value) except -1:
        cdef float f
        cdef uint32_t bits
        if value is None:
            return self.null()
        f = <float><double>value
        memcpy(&bits, &f, 4)
        self.u32(4)
        return self.u32(bits)

    cdef int float8(self, value) except -1:
        cdef double d
        cdef uint64_t bits
        if value is None:
            return self.null()
        d = value
        memcpy(&bits, &d, 8)
        self.u32(8)
        return self.u64(bits)

    cdef int int4(self, value) except -1:
        cdef long long v
        if value is None:
            return self.null()
        v = value
        if not -2147483648 <= v <= 2147483647:
            raise OverflowError("int4 out of range")
        self.u32(4)
        return self.u32(<uint32_t>(<int>v))

    cdef int timestamptz(self, value) except -1:
        """Microseconds since 2000-01-01 UTC, as psycopg's datetime dumper computes them."""
        if value is None:
            return self.null()
        cdef long long micros = _micros_since_2000(value)
        self.u32(8)
        return self.u64(<uint64_t>(<int64_t>micros))

    cdef int cents(self, double amount) except -1:
        """``Decimal(f"{amount:.2f}")`` as psycopg's numeric dumper writes it."""
        # Python's own formatting (what f"{amount:.2f}" calls): glibc's printf rounds the
        # same way but took twice as long
        cdef char* text = PyOS_double_to_string(amount, b"f", 2, 0, NULL)
        cdef int length = strlen(text)
        cdef unsigned char digits[48]
        cdef int n = 0, i, negative = 0
        if length >= 40:
            PyMem_Free(text)
            raise ValueError(f"amount {amount!r} cannot be written as numeric")
        for i in range(length):
            if text[i] == b"-":
                negative = 1
            elif b"0" <= text[i] <= b"9":
                digits[n] = text[i] - 48
                n += 1
            elif text[i] != b".":
                PyMem_Free(text)
                raise ValueError(f"amount {amount!r} cannot be written as numeric")
        PyMem_Free(text)
        # Decimal's digits have no leading zeros (0.05 is (5,), 0.00 is (0,))
        cdef int start = 0
        while start < n - 1 and digits[start] == 0:
            start += 1
        cdef int ndigits = n - start, nzdigits = ndigits
        cdef int dscale = 2, exp = -2, wi = 0, mod, weight, tmp, pgdigit = 0
        cdef int weights[4]
        weights[0] = 1000
        weights[1] = 100
        weights[2] = 10
        weights[3] = 1
        while nzdigits > 0 and digits[start + nzdigits - 1] == 0:
            nzdigits -= 1
        cdef Py_ssize_t at = self.size
        self.u32(0)  # the length, set below
        if not nzdigits:
            self.u16(0)
            self.u16(0)
            self.u16(0)
            self.u16(dscale)
        else:
            mod = ((ndigits - dscale) % 4 + 4) % 4  # Python's modulo: never negative
            if mod:
                wi = 4 - mod
                ndigits += wi
            weight = (ndigits + exp) // 4 - 1 if ndigits + exp >= 0 else -((-(ndigits + exp) + 3) // 4) - 1
            tmp = nzdigits + wi
            self.u16(tmp // 4 + (1 if tmp % 4 else 0))
            self.u16(<unsigned int>(weight & 0xFFFF))
            self.u16(0x4000 if negative else 0)
            self.u16(dscale)
            for i in range(nzdigits):
                pgdigit += weights[wi] * digits[start + i]
                wi += 1
                if wi >= 4:
                    self.u16(pgdigit)
                    pgdigit = wi = 0
            if pgdigit:
                self.u16(pgdigit)
        cdef uint32_t size = <uint32_t>(self.size - at - 4)
        cdef unsigned char* p = <unsigned char*>PyByteArray_AS_STRING(self.data) + at
        p[0] = (size >> 24) & 0xFF
        p[1] = (size >> 16) & 0xFF
        p[2] = (size >> 8) & 0xFF
        p[3] = size & 0xFF
        return 0


cdef inline object _at(tuple t, Py_ssize_t i):
    return <object>PyTuple_GET_ITEM(t, i)


def copy_rows(items, Py_ssize_t start=0, Py_ssize_t stop=-1):
    """The binary COPY rows of ``items[start:stop]`` (every column of ``SCORED_EVENT_COLUMNS``),
    without the signature and the trailer."""
    cdef Py_ssize_t n = len(items), i
    if stop < 0 or stop > n:
        stop = n
    cdef _Buffer out = _BUFFER
    out.size = 0
    cdef tuple s, ev, v, loc
    last_ingest, last_ingest_dt = None, None
    for i in range(start, stop):
        # each struct's fields in one C call (astuple), not one attribute lookup each
        s = _astuple(items[i])
        ev = _astuple(_at(s, S_EVENT))
        v = _astuple(_at(s, S_VERDICT))
        location = _at(ev, E_LOCATION)
        hits = _at(s, S_HITS)
        scores = _at(v, V_SCORES)
        shadow = _at(s, S_SHADOW)
        challenger = _at(s, S_CHALLENGER)
        out.u16(COLUMNS)
        out.text(_at(ev, E_EVENT_ID))
        out.text(_at(ev, E_USER_ID))
        out.cents(_at(ev, E_AMOUNT))
        out.text(_at(ev, E_CURRENCY))
        out.timestamptz(_at(ev, E_TIMESTAMP))
        out.text(_at(ev, E_MERCHANT_NAME))
        out.text(_at(ev, E_MERCHANT_CATEGORY))
        if location is not None:
            loc = _astuple(location)
            out.float8(_at(loc, L_LATITUDE))
            out.float8(_at(loc, L_LONGITUDE))
            out.text(_at(loc, L_COUNTRY))
            out.text(_at(loc, L_CITY))
        else:
            out.null()
            out.null()
            out.null()
            out.null()
        out.text(_at(ev, E_DEVICE_ID))
        out.text(_at(ev, E_IP_ADDRESS))
        out.text(_at(ev, E_USER_AGENT))
        out.jsonb(_at(ev, E_ATTRIBUTES))
        out.text(_at(ev, E_MERCHANT_ID))
        out.float4(_at(v, V_FRAUD_SCORE))
        out.text(_at(v, V_RISK_LEVEL))
        out.text(_at(v, V_DECISION))
        out.u32(1)
        out.raw(b"\x01" if _at(v, V_IS_BLOCKED) else b"\x00", 1)
        if hits:
            out.jsonb([h.rule for h in hits])
            out.jsonb([h.reason for h in hits])
        else:
            out.jsonb(_EMPTY_LIST_VALUE)
            out.jsonb(_EMPTY_LIST_VALUE)
        out.float4(scores.get("rules"))
        out.float4(scores.get("isolation_forest"))
        out.float4(scores.get("autoencoder"))
        out.float4(scores.get("supervised"))
        out.text(_at(s, S_MODEL_VERSION))
        out.blob(_encode(_at(s, S_FEATURES)))
        ingest_ms = _at(s, S_INGEST_MS)
        if ingest_ms:
            if ingest_ms != last_ingest:
                last_ingest, last_ingest_dt = ingest_ms, _from_ms(ingest_ms)
            out.timestamptz(last_ingest_dt)
        else:
            out.null()
        out.timestamptz(_at(s, S_SCORED_AT))
        out.float4(_at(s, S_PROCESSING_MS))
        if challenger:
            out.text(challenger[0])
            out.float4(challenger[1])
        else:
            out.null()
            out.null()
        out.int4(_at(s, S_RULES_VERSION))
        if shadow:
            out.int4(shadow.version)
            out.float4(shadow.fraud_score)
            out.jsonb(shadow.triggered)
        else:
            out.null()
            out.null()
            out.null()
    return out.take()


_EMPTY_LIST_VALUE = []
cdef _Buffer _BUFFER = _Buffer(256 * 1024)
"""One buffer for every call, its memory kept: a new one per call cost page faults."""

from datetime import UTC
from datetime import datetime as _datetime


def _from_ms(ms):
    """``datetime.fromtimestamp(ms / 1000.0, UTC)``, as ``scored_event_row`` writes ``ingested_at``."""
    return _datetime.fromtimestamp(ms / 1000.0, UTC)
