# cython: language_level=3
"""Aware datetimes to whole microseconds, shared by the kernels that need it
(``validation``, ``rows``). setup.py and ``operators.kernels`` fold it into the source
digest of each module that cimports it, so a change here marks those builds stale."""

from cpython.datetime cimport (
    PyDateTime_DATE_GET_HOUR,
    PyDateTime_DATE_GET_MICROSECOND,
    PyDateTime_DATE_GET_MINUTE,
    PyDateTime_DATE_GET_SECOND,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    datetime,
    datetime_tzinfo,
    get_utc,
    timedelta,
    timedelta_days,
    timedelta_microseconds,
    timedelta_seconds,
)


cdef inline long long days_from_civil(long long y, long long m, long long d) noexcept nogil:
    """Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's
    ``days_from_civil``), for years 1 to 9999."""
    y -= m <= 2
    cdef long long era = y // 400  # y >= 0 here
    cdef long long yoe = y - era * 400
    cdef long long doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


cdef inline long long offset_micros(timedelta delta) noexcept:
    return (
        (<long long>timedelta_days(delta) * 86400 + timedelta_seconds(delta)) * 1000000
        + timedelta_microseconds(delta)
    )


cdef inline long long wall_micros(datetime dt) noexcept:
    """``dt``'s wall-clock fields as microseconds since 1970-01-01, its offset not applied."""
    cdef long long days = days_from_civil(
        PyDateTime_GET_YEAR(dt), PyDateTime_GET_MONTH(dt), PyDateTime_GET_DAY(dt)
    )
    cdef long long seconds = (
        days * 86400
        + PyDateTime_DATE_GET_HOUR(dt) * 3600
        + PyDateTime_DATE_GET_MINUTE(dt) * 60
        + PyDateTime_DATE_GET_SECOND(dt)
    )
    return seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(dt)


cdef inline bint epoch_micros(datetime dt, long long* out) except -1:
    """The whole microseconds since 1970-01-01 UTC of ``dt`` into ``out`` and True when it
    is at UTC or at a fixed offset (a :class:`datetime.timezone`, what msgspec decodes to);
    False for any other zone or a naive ``dt``, which the caller leaves to CPython. A fixed
    offset costs one method call; comparing two aware datetimes, or ``dt.utcoffset()``,
    calls ``utcoffset`` through Python's method lookup for each of them."""
    tz = datetime_tzinfo(dt)
    utc = get_utc()
    cdef long long offset = 0
    if tz is not utc:
        if type(tz) is not type(utc):
            return False
        offset = offset_micros(tz.utcoffset(None))
    out[0] = wall_micros(dt) - offset
    return True
