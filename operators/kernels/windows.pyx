# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled :func:`operators.entity_risk.update_window`: the same risk features and the
same window, bit for bit (``tests/operators/kernels/test_windows.py``).

The usual cases run in C over the window's packed days (``RiskWindow.days``: ``(day,
count)`` int32 pairs): the counts of an entity with no fraud label, and an event on a day
the window already holds or a new latest day. The rest calls the reference's own methods
(:meth:`RiskWindow.features_until` once the entity has fraud labels, ``_evict`` when a new
day may push old ones out, :meth:`RiskWindow.apply_label`), so the two cannot drift
apart there. Change one, change both.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Update
from libc.math cimport INFINITY, floor, fmod
from libc.string cimport memcpy

from operators.entity_risk import DAY, _counted, _empty
from operators.labels import KnownLabel

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

cdef double _DAY = DAY
cdef long long _INT32_MIN = -2147483648
cdef long long _INT32_MAX = 2147483647


cdef inline double _floordiv(double vx, double wx) noexcept nogil:
    """Python's ``vx // wx`` for floats (``float_floor_div`` in CPython), ``wx`` > 0."""
    cdef double mod = fmod(vx, wx)
    cdef double div = (vx - mod) / wx
    cdef double floordiv
    if mod and ((wx < 0) != (mod < 0)):
        div -= 1.0
    if div:
        floordiv = floor(div)
        if div - floordiv > 0.5:
            floordiv += 1.0
        return floordiv
    return 0.0


cdef inline Py_ssize_t _left(const int* pairs, long long day, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """``bisect.bisect_left`` over the days (every other int32)."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) // 2
        if pairs[2 * mid] < day:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef tuple _features_until(window, double ts, config, tuple windows, long long delay, str prefix):
    """:meth:`RiskWindow.features_until`; the reference itself once there are fraud labels."""
    frauds = window.frauds
    if frauds:
        return window.features_until(ts, config, prefix)
    cdef long long end = <long long>_floordiv(ts, _DAY) - delay
    cdef bytes packed = window.days
    cdef const int* pairs = <const int*>PyBytes_AS_STRING(packed)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(packed) // 8
    cdef long long longest = max(windows)
    cdef Py_ssize_t first = _left(pairs, end - longest, 0, n)
    cdef Py_ssize_t stop = _left(pairs, end, first, n)
    if first == stop:
        return -INFINITY, INFINITY, _empty(prefix, windows)
    cdef list events = []
    cdef Py_ssize_t i, start
    cdef long long total
    for w in windows:
        start = _left(pairs, end - <long long>w, first, stop)
        total = 0
        for i in range(start, stop):
            total += pairs[2 * i + 1]
        events.append(total)
    return -INFINITY, INFINITY, _counted(prefix, windows, tuple(events))


cdef bint _add_event(window, double ts, config) except -1:
    """:meth:`RiskWindow.add_event`: count one event at ``ts``; True when older days went."""
    cdef double whole = _floordiv(ts, _DAY)
    if not (_INT32_MIN <= whole <= _INT32_MAX):
        return window.add_event(ts, config)  # the reference raises as it does
    cdef long long day = <long long>whole
    cdef bytes packed = window.days
    cdef const int* pairs = <const int*>PyBytes_AS_STRING(packed)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(packed) // 8
    cdef Py_ssize_t i
    cdef bytes grown
    cdef int* out
    if n and pairs[2 * (n - 1)] == day:  # the usual case: another event of the latest day
        i = n - 1
    else:
        i = _left(pairs, day, 0, n)
    if i < n and pairs[2 * i] == day:
        if pairs[2 * i + 1] == _INT32_MAX:
            return window.add_event(ts, config)  # the reference raises as it does
        grown = PyBytes_FromStringAndSize(<const char*>pairs, n * 8)
        out = <int*>PyBytes_AS_STRING(grown)
        out[2 * i + 1] += 1
        window.days = grown
        return False
    grown = PyBytes_FromStringAndSize(NULL, (n + 1) * 8)
    out = <int*>PyBytes_AS_STRING(grown)
    memcpy(out, pairs, i * 8)
    out[2 * i] = <int>day
    out[2 * i + 1] = 1
    memcpy(out + 2 * (i + 1), pairs + 2 * i, (n - i) * 8)
    window.days = grown
    return i == n and window._evict(day, config)


def _order(item):
    return -INFINITY if isinstance(item, KnownLabel) else item.accepted.ts


def update_window(window, items, str kind, config):
    """:func:`operators.entity_risk.update_window`: labels, then events in event-time order;
    events come back with their risk features (added to ``features.risk`` in place)."""
    cdef list out = []
    ordered = sorted(items, key=_order) if len(items) > 1 else items
    cdef str prefix = f"{kind}_"
    cdef long long delay = config.label_delay_days
    cdef tuple windows = tuple(config.windows)
    cdef bint known = False
    cdef long long end = 0, day
    cdef double lo = 0.0, hi = 0.0, ts
    cdef dict features = None
    for item in ordered:
        if isinstance(item, KnownLabel):
            lab = item.label
            window.apply_label(lab.event_id, item.ref.event_ts, lab.is_fraud, lab.label_ts, config)
            continue
        ts = item.accepted.ts
        day = <long long>_floordiv(ts, _DAY)
        if not known or end != day - delay or not lo <= ts < hi:
            lo, hi, features = _features_until(window, ts, config, windows, delay, prefix)
            end = day - delay
            known = True
        PyDict_Update(item.features.risk, features)
        if _add_event(window, ts, config):
            known = False  # days were evicted: compute again
        out.append(item)
    return out
