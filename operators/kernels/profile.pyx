# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled :func:`operators.features.update_profile`: the same features and the same new
state, bit for bit (``tests/operators/kernels/test_profile.py``), about five times faster.

A line-by-line port of the reference in ``operators/features.py`` and
``operators/state.py``: the user's packed recent events (``UserState.recent``: five
doubles per event) are read in place, every bisect and sum runs over them in C, in the
reference's order of operations (so float results are identical), and the state is
updated as :meth:`UserState.push` and :meth:`UserState.learn_habits` update it. Change
one, change both.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport PyDateTime_DATE_GET_HOUR, datetime, import_datetime
from libc.math cimport NAN, asin, cos, frexp, isnan, sin, sqrt
from libc.string cimport memcpy, memset

from operators.features import LARGE_RANK, ODD_SHARE, RECENT_S, Featured, Features
from operators.geo import EARTH_RADIUS_KM
from operators.state import AMOUNT_BINS, FIELDS, HABIT_CAP, HOUR_BANDS, LARGE, MIN_HABIT, ODD_HOUR

import_datetime()

cdef extern from *:
    """
    #ifndef KERNEL_SOURCE_DIGEST
    #define KERNEL_SOURCE_DIGEST ""
    #endif
    """
    const char* KERNEL_SOURCE_DIGEST

SOURCE_DIGEST = KERNEL_SOURCE_DIGEST.decode()
"""SHA-256 of this file when it was compiled (``operators.kernels`` refuses a stale build)."""

DEF F = 5  # doubles per packed event: ts, amount, lat, lon, flags
DEF BINS = 16
DEF BANDS = 8

if FIELDS != F or AMOUNT_BINS != BINS or HOUR_BANDS != BANDS:
    raise ImportError("operators.kernels.profile: the state layout changed; rebuild the kernel")

cdef double _DEG = 3.141592653589793 / 180.0  # math.radians: x * (pi / 180)
cdef double _TWICE_RADIUS = 2 * <double>EARTH_RADIUS_KM
cdef double _LARGE_RANK = LARGE_RANK
cdef double _ODD_SHARE = ODD_SHARE
cdef double _RECENT_S = RECENT_S
cdef long _LARGE = LARGE
cdef long _ODD_HOUR = ODD_HOUR
cdef long _MIN_HABIT = MIN_HABIT
cdef long _HABIT_LIMIT = 2 * HABIT_CAP


cdef inline Py_ssize_t _right(const double* p, double x, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """``bisect.bisect_right`` over the times (every ``F``-th double)."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) // 2
        if x < p[mid * F]:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef inline Py_ssize_t _left(const double* p, double x, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """``bisect.bisect_left`` over the times."""
    cdef Py_ssize_t mid
    while lo < hi:
        mid = (lo + hi) // 2
        if p[mid * F] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline double _sum(const double* p, Py_ssize_t column, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """``sum()`` of one column over events ``[lo, hi)``, left to right as Python adds."""
    cdef double total = 0.0
    cdef Py_ssize_t i
    for i in range(lo, hi):
        total += p[i * F + column]
    return total


cdef inline double _haversine(double lat1, double lon1, double lat2, double lon2) noexcept nogil:
    """:func:`operators.geo.haversine_km`, operation for operation."""
    cdef double p1 = lat1 * _DEG
    cdef double p2 = lat2 * _DEG
    cdef double dp = p2 - p1
    cdef double dl = (lon2 - lon1) * _DEG
    cdef double sp = sin(dp / 2)
    cdef double sl = sin(dl / 2)
    cdef double a = sp * sp + cos(p1) * cos(p2) * (sl * sl)
    cdef double root = sqrt(a)
    if 1.0 < root:  # min(1.0, root)
        root = 1.0
    return _TWICE_RADIUS * asin(root)


cdef inline int _amount_bin(double amount) noexcept nogil:
    """:func:`operators.state.amount_bin`."""
    cdef int exponent
    if not amount >= 1.0:
        return 0
    frexp(amount, &exponent)
    return BINS - 1 if exponent > BINS - 1 else exponent


def update_profile(state, acc, limits):
    """:func:`operators.features.update_profile`: features of ``acc`` against ``state``,
    then ``acc`` pushed into ``state``."""
    ev = acc.event
    cdef double ts = acc.ts
    cdef bytes rec = state.recent
    cdef const double* p = <const double*>PyBytes_AS_STRING(rec)
    cdef Py_ssize_t held = PyBytes_GET_SIZE(rec) // (8 * F)
    cdef Py_ssize_t n = _right(p, ts, 0, held)  # the events before this one (at or before ts)
    cdef double amount = ev.amount
    cdef Py_ssize_t i, first10 = n - 10 if n > 10 else 0, last10 = n - first10
    cdef double total, deviation, mean10 = 0.0, std10 = 0.0
    if last10 > 0:
        mean10 = _sum(p, 1, first10, n) / last10
        if last10 > 1:
            total = 0.0
            for i in range(first10, n):
                deviation = p[i * F + 1] - mean10
                total += deviation * deviation
            std10 = sqrt(total / last10)

    loc = ev.location
    distance = since_loc = speed = None
    cdef double lat = NAN, lon = NAN, km, since, hours
    if loc is not None:
        lat = loc.latitude
        lon = loc.longitude
        for i in range(n - 1, -1, -1):
            if not (isnan(p[i * F + 2]) or isnan(p[i * F + 3])):  # the event had a location
                km = _haversine(p[i * F + 2], p[i * F + 3], lat, lon)
                since = ts - p[i * F]
                hours = since / 3600.0
                if 1.0 / 60.0 > hours:  # max(hours, 1 / 60)
                    hours = 1.0 / 60.0
                distance, since_loc, speed = km, since, km / hours
                break

    cdef long count = state.count
    cdef double mean = state.mean
    cdef double m2 = state.m2
    cdef double std = sqrt(m2 / (count - 1)) if count > 1 else 0.0
    local = ev.timestamp
    cdef int hour = PyDateTime_DATE_GET_HOUR(<datetime?>local)
    cdef Py_ssize_t day_start = _right(p, ts - 86_400.0, 0, n)
    cdef double spend = amount + _sum(p, 1, day_start, n)

    cdef bytes habits = state.habits
    cdef const unsigned char* h = <const unsigned char*>PyBytes_AS_STRING(habits)
    cdef bint has_habits = PyBytes_GET_SIZE(habits) >= BINS + BANDS
    cdef long weight = 0, below = 0
    cdef int b = _amount_bin(amount)
    cdef double rank_v = 0.0, share_v = 0.0
    cdef bint has_rank = False, has_share = False
    if has_habits:
        for i in range(BINS):
            weight += h[i]
        if weight >= _MIN_HABIT:
            for i in range(b):
                below += h[i]
            rank_v = (below + 0.5 * h[b]) / weight
            has_rank = True
        weight = 0
        for i in range(BINS, BINS + BANDS):
            weight += h[i]
        if weight >= _MIN_HABIT:
            share_v = h[BINS + hour // 3] / <double>weight
            has_share = True
    cdef long habit_flags = (_LARGE if has_rank and rank_v >= _LARGE_RANK else 0) | (
        _ODD_HOUR if has_share and share_v < _ODD_SHARE else 0
    )
    cdef Py_ssize_t recent_start = _right(p, ts - _RECENT_S, 0, n)
    cdef long flags = habit_flags + <long>_sum(p, 4, recent_start, n)

    device = ev.device_id
    devices = state.devices
    first_seen = state.first_seen
    ratio = None
    cdef double days, usual
    if count and first_seen is not None and mean > 0:
        days = (ts - <double>first_seen) / 86_400.0
        if not days > 1.0:  # max(1.0, days)
            days = 1.0
        usual = count * mean / days
        if usual > 0:
            ratio = spend / usual

    features = Features(
        amount,
        hour,
        local.weekday(),
        (ts - p[(n - 1) * F]) / 86_400.0 if n else None,
        mean10 if last10 > 0 else None,
        std10 if last10 > 1 else None,
        n - _right(p, ts - 600.0, 0, n) + 1,
        n - _right(p, ts - 3600.0, 0, n) + 1,
        n - day_start + 1,
        n - _right(p, ts - <double>limits.velocity_window_s, 0, n) + 1,
        distance,
        since_loc,
        speed,
        (amount - mean) / std if std > 0 else None,
        mean if count else None,
        count,
        (device in devices) if device else None,
        len(devices),
        spend,
        ratio,
        rank_v if has_rank else None,
        share_v if has_share else None,
        flags & 0xFFFF,
        flags >> 16,
        {},
    )

    # UserState.push: the event inserted in event-time order, the window and the cap applied
    cdef double seen[F]
    seen[0] = ts
    seen[1] = amount
    seen[2] = lat
    seen[3] = lon
    seen[4] = <double>habit_flags
    cdef Py_ssize_t at = _right(p, ts, 0, held), now_held = held + 1, keep
    cdef bytes grown = PyBytes_FromStringAndSize(NULL, now_held * 8 * F)
    cdef char* out = PyBytes_AS_STRING(grown)
    memcpy(out, p, at * 8 * F)
    memcpy(out + at * 8 * F, seen, 8 * F)
    memcpy(out + (at + 1) * 8 * F, p + at * F, (held - at) * 8 * F)
    cdef const double* q = <const double*>out
    keep = _left(q, q[(now_held - 1) * F] - <double>limits.window_s, 0, now_held)
    if now_held - <Py_ssize_t>limits.max_events > keep:
        keep = now_held - <Py_ssize_t>limits.max_events
    state.recent = grown[keep * 8 * F :] if keep > 0 else grown
    count += 1
    deviation = amount - mean
    mean += deviation / count
    m2 += deviation * (amount - mean)
    state.count = count
    state.mean = mean
    state.m2 = m2
    if first_seen is None or ts < first_seen:
        state.first_seen = ts
    cdef Py_ssize_t known = len(devices), cap
    if device is not None and (known == 0 or devices[known - 1] != device):
        moved = (*(d for d in devices if d != device), device)
        cap = limits.max_devices
        state.devices = moved[len(moved) - cap :] if len(moved) > cap else moved

    # UserState.learn_habits
    cdef unsigned char counts[BINS + BANDS]
    cdef long added = 0
    if has_habits:
        memcpy(counts, h, BINS + BANDS)
    else:
        memset(counts, 0, BINS + BANDS)
    counts[b] += 1
    counts[BINS + hour // 3] += 1
    for i in range(BINS + BANDS):
        added += counts[i]
    if added > _HABIT_LIMIT:
        for i in range(BINS + BANDS):
            counts[i] = (counts[i] + 1) >> 1
    state.habits = PyBytes_FromStringAndSize(<char*>counts, BINS + BANDS)
    return Featured(acc, features)
