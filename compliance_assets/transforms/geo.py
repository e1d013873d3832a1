"""Geographic helpers: Spark column expressions and their one-value twins for the real-time lane."""

from __future__ import annotations

import math

from pyspark.sql import Column
from pyspark.sql import functions as F

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    """Great-circle distance in km between two points (null if any coordinate is null)."""
    phi1, phi2 = F.radians(lat1), F.radians(lat2)
    dphi, dlmb = F.radians(lat2 - lat1), F.radians(lon2 - lon1)
    a = F.pow(F.sin(dphi / 2), 2) + F.cos(phi1) * F.cos(phi2) * F.pow(F.sin(dlmb / 2), 2)
    # least() skips nulls: without the guard a missing coordinate would give half the Earth's circumference
    return F.lit(2 * EARTH_RADIUS_KM) * F.asin(F.when(a.isNotNull(), F.least(F.lit(1.0), F.sqrt(a))))


def haversine_km_value(lat1: float | None, lon1: float | None, lat2: float | None, lon2: float | None) -> float | None:
    """`haversine_km` for one pair of points, with the same formula and guard (null if any coordinate is null)."""
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = math.sin(math.radians(lat2 - lat1) / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
