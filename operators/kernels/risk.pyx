# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled Redis commands of the risk sink: the bytes of
:func:`operators.sinks.redis.risk_commands`, byte for byte
(``tests/operators/kernels/test_risk.py``), packed in one buffer per chunk instead of a
formatting and two joins per user. Change one, change both.
"""

from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_GET_SIZE,
    PyByteArray_Resize,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    PyDateTime_DATE_GET_HOUR,
    PyDateTime_DATE_GET_MICROSECOND,
    PyDateTime_DATE_GET_MINUTE,
    PyDateTime_DATE_GET_SECOND,
    PyDateTime_DELTA_GET_DAYS,
    PyDateTime_DELTA_GET_MICROSECONDS,
    PyDateTime_DELTA_GET_SECONDS,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    datetime,
    import_datetime,
    timedelta,
)
from libc.string cimport memcpy

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

import_datetime()

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""


cdef inline int _fixed(char* out, long value, int width) noexcept nogil:
    """``value`` (>= 0) in ``width`` digits, zero-padded (``%0<width>ld``)."""
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + value % 10)
        value //= 10
    return width


cdef inline int _decimal(char* out, Py_ssize_t value) noexcept nogil:
    """``value`` (>= 0) in decimal (``%zd``)."""
    cdef char digits[24]
    cdef int n = 0, i
    if value == 0:
        out[0] = b"0"
        return 1
    while value:
        digits[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


cdef class _Buffer:
    cdef bytearray data
    cdef Py_ssize_t size

    def __cinit__(self, Py_ssize_t capacity):
        self.data = PyByteArray_FromStringAndSize(NULL, capacity)
        self.size = 0

    cdef inline char* reserve(self, Py_ssize_t n) except NULL:
        cdef Py_ssize_t have = PyByteArray_GET_SIZE(self.data)
        if self.size + n > have:
            PyByteArray_Resize(self.data, max(2 * have, self.size + n))
        return PyByteArray_AS_STRING(self.data) + self.size

    cdef inline int raw(self, const char* src, Py_ssize_t n) except -1:
        memcpy(self.reserve(n), src, n)
        self.size += n
        return 0

    cdef inline int bytes_(self, bytes value) except -1:
        return self.raw(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))

    cdef int bulk(self, const char* s, Py_ssize_t n, const char* prefix=NULL, Py_ssize_t p=0) except -1:
        """``$<len>\\r\\n<prefix><s>\\r\\n``."""
        cdef char head[32]
        head[0] = b"$"
        cdef int h = 1 + _decimal(head + 1, n + p)
        head[h] = b"\r"
        head[h + 1] = b"\n"
        self.raw(head, h + 2)
        if p:
            self.raw(prefix, p)
        self.raw(s, n)
        return self.raw("\r\n", 2)

    cdef int text(self, str value) except -1:
        cdef Py_ssize_t n
        cdef const char* s = PyUnicode_AsUTF8AndSize(value, &n)
        return self.bulk(s, n)

    cdef int isoformat(self, datetime dt) except -1:
        """``dt.isoformat()`` as a bulk string, formatted as CPython's datetime formats it
        (microseconds only when not zero; the UTC offset's seconds and microseconds only
        when not zero)."""
        cdef char text[64]
        cdef int n = 0, us = PyDateTime_DATE_GET_MICROSECOND(dt)
        cdef int year = PyDateTime_GET_YEAR(dt)
        n += _fixed(text + n, year, 4)
        text[n] = b"-"
        n += 1 + _fixed(text + n + 1, PyDateTime_GET_MONTH(dt), 2)
        text[n] = b"-"
        n += 1 + _fixed(text + n + 1, PyDateTime_GET_DAY(dt), 2)
        text[n] = b"T"
        n += 1 + _fixed(text + n + 1, PyDateTime_DATE_GET_HOUR(dt), 2)
        text[n] = b":"
        n += 1 + _fixed(text + n + 1, PyDateTime_DATE_GET_MINUTE(dt), 2)
        text[n] = b":"
        n += 1 + _fixed(text + n + 1, PyDateTime_DATE_GET_SECOND(dt), 2)
        if us:
            text[n] = b"."
            n += 1 + _fixed(text + n + 1, us, 6)
        offset = dt.utcoffset()
        cdef timedelta off
        cdef char sign = b"+"
        cdef long seconds, micros, hours, minutes
        if offset is not None:
            off = offset
            if PyDateTime_DELTA_GET_DAYS(off) < 0:
                sign = b"-"
                off = -off
            seconds = PyDateTime_DELTA_GET_SECONDS(off)
            micros = PyDateTime_DELTA_GET_MICROSECONDS(off)
            hours = seconds // 3600
            seconds -= hours * 3600
            minutes = seconds // 60
            seconds -= minutes * 60
            text[n] = sign
            n += 1 + _fixed(text + n + 1, hours, 2)
            text[n] = b":"
            n += 1 + _fixed(text + n + 1, minutes, 2)
            if micros or seconds:
                text[n] = b":"
                n += 1 + _fixed(text + n + 1, seconds, 2)
            if micros:
                text[n] = b"."
                n += 1 + _fixed(text + n + 1, micros, 6)
        return self.bulk(text, n)

    cdef bytes take(self):
        cdef bytes out = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.data), self.size)
        self.size = 0
        return out


cdef _Buffer _KEYS = _Buffer(64 * 1024)
cdef _Buffer _ARGS = _Buffer(256 * 1024)


def risk_commands(list items, bytes prefix, bytes ttl, Py_ssize_t chunk, dict levels, dict decisions):
    """:func:`operators.sinks.redis.risk_commands` (``prefix``: the risk keys' prefix;
    ``levels`` and ``decisions``: their values as bulk strings)."""
    cdef list out = []
    cdef Py_ssize_t start, i, stop, n = len(items), idn
    cdef _Buffer keys = _KEYS, args = _ARGS
    cdef const char* uid
    scored_at, updated = None, b""
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        keys.size = 0
        args.size = 0
        args.bytes_(ttl)
        for i in range(start, stop):
            user_id, s = items[i]
            uid = PyUnicode_AsUTF8AndSize(user_id, &idn)
            keys.bulk(uid, idn, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix))
            if s.scored_at is not scored_at:
                scored_at = s.scored_at
                updated = scored_at.isoformat().encode()
            v = s.verdict
            ev = s.event
            score = repr(v.fraud_score).encode()
            args.bulk(PyBytes_AS_STRING(score), PyBytes_GET_SIZE(score))
            level = levels.get(v.risk_level)
            if level is None:
                args.text(v.risk_level)
            else:
                args.bytes_(level)
            decision = decisions.get(v.decision)
            if decision is None:
                args.text(v.decision)
            else:
                args.bytes_(decision)
            args.text(ev.event_id)
            stamp = ev.timestamp
            if type(stamp) is datetime:
                args.isoformat(stamp)
            else:  # a subclass may format itself otherwise
                args.text(stamp.isoformat())
            args.bulk(PyBytes_AS_STRING(updated), PyBytes_GET_SIZE(updated))
        out.append((stop - start, keys.take() + args.take()))
    return out
