"""Great-circle distance on the WGS84 mean sphere."""

from __future__ import annotations

import math

__all__ = ["EARTH_RADIUS_KM", "haversine_km"]

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in km between two points given in degrees.

    >>> round(haversine_km(40.7128, -74.0060, 51.5074, -0.1278))
    5570
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    # squares as products, not ``** 2``: libm's pow is not always correctly rounded, and a
    # C compiler turns pow(x, 2) into x * x, so the compiled kernel and this reference
    # would differ in the last bit (operators/kernels/profile.pyx)
    sp, sl = math.sin(dp / 2), math.sin(dl / 2)
    a = sp * sp + math.cos(p1) * math.cos(p2) * (sl * sl)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
