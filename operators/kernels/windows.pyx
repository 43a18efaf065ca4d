# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled :func:`operators.entity_risk.update_window`: the same risk features and the
same window, bit for bit (``tests/operators/kernels/test_windows.py``); and
:func:`update_windows`, ``operators.shards._windows`` (a batch grouped by entity, each
window warmed and updated) in one call.

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

import msgspec

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

_Raw = msgspec.Raw

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
    if i != n:
        return False
    if not window.frauds and out[0] >= day - <long long>config.retention_days:
        return False  # the usual case: no day fell out, no fraud labels to drop
    return window._evict(day, config)


def _order(item):
    return -INFINITY if isinstance(item, KnownLabel) else item.accepted.ts


cdef list _ordered(list items):
    """Labels first, then events in event-time order (a stable sort, as the reference's);
    a list of events already in order is returned as it is, without sorting."""
    cdef Py_ssize_t i, n = len(items)
    cdef double ts, prev = -INFINITY
    if n < 2:
        return items
    for i in range(n):
        item = items[i]
        if isinstance(item, KnownLabel):
            return sorted(items, key=_order)
        ts = item.accepted.ts
        if not ts >= prev:  # out of order (or NaN): the sort decides
            return sorted(items, key=_order)
        prev = ts
    return items


cdef int _update(window, list items, str prefix, long long delay, tuple windows, config, list out) except -1:
    """:func:`update_window` over ``items``, appending the events to ``out``."""
    cdef bint known = False
    cdef long long end = 0, day
    cdef double lo = 0.0, hi = 0.0, ts
    cdef dict features = None
    for item in _ordered(items):
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
    return 0


def update_window(window, items, str kind, config):
    """:func:`operators.entity_risk.update_window`: labels, then events in event-time order;
    events come back with their risk features (added to ``features.risk`` in place)."""
    cdef list out = []
    _update(window, list(items), f"{kind}_", config.label_delay_days, tuple(config.windows), config, out)
    return out


cdef inline int _group(dict groups, key, item) except -1:
    """``item`` onto ``key``'s list in ``groups`` (nothing for a None key)."""
    if key is None:
        return 0
    group = groups.get(key)
    if group is None:
        groups[key] = [item]
    else:
        (<list>group).append(item)
    return 0


def update_windows(dict table, featured, labels, str kind, key_of, config, double now, hot, decoder, new):
    """``operators.shards._windows``: each entity's labels, then its events (those with a key)
    in event-time order, through its window in ``table`` (warmed as ``_warm`` does: decoded
    from msgpack by ``decoder`` when cold, ``new()`` when absent, noted in ``hot``); the
    events come back with the risk features, entity by entity, and each window's
    ``touched_at`` is ``now``."""
    cdef dict groups = {}
    cdef list out = []
    for lab in labels:
        _group(groups, lab.key(kind), lab)
    for item in featured:
        _group(groups, key_of(item.accepted.event), item)
    cdef str prefix = f"{kind}_"
    cdef long long delay = config.label_delay_days
    cdef tuple windows = tuple(config.windows)
    for key, items in groups.items():
        window = table.get(key)
        if window is None:
            window = table[key] = new()
            if hot is not None:
                hot.add(key)
        elif type(window) is _Raw:
            window = table[key] = decoder.decode(window)
            if hot is not None:
                hot.add(key)
        _update(window, <list>items, prefix, delay, windows, config, out)
        window.touched_at = now
    return out
