"""Per-account behaviour features, one event at a time: the real-time execution of the definition in
transforms/features.py (its windows, tie order, prior/inclusive rules and rounding), read from there.

An event's features are the batch definition over the account's events this state has seen, its own
included: the windows hold the events whose order key lies in [own key - window, own key], the averages
and the largest earlier amount the earlier ones, the previous (located) event is the one just before it in
that order. Events arriving in event-time order therefore get exactly the batch path's features; a late
event is placed in order among what the state holds, and the decisions already made are not revisited (a
replay through the batch path recomputes them). tests/realtime/test_account_state.py proves the parity.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import xxhash

from compliance_assets.transforms.features import MAX_WINDOW, MIN_TRAVEL_SECONDS, TIE_SLOTS, WINDOWS_SECONDS
from compliance_assets.transforms.geo import EARTH_RADIUS_KM

SPARK_HASH_SEED = 42  # Spark's xxhash64 default seed


def tie_slot(transaction_id: str) -> int:
    """Spark's `pmod(xxhash64(transaction_id), TIE_SLOTS)`: XXH64 of the UTF-8 bytes, seed 42, as a signed long."""
    unsigned = xxhash.xxh64_intdigest(transaction_id.encode("utf-8"), seed=SPARK_HASH_SEED)
    signed = unsigned - (1 << 64) if unsigned >= (1 << 63) else unsigned
    return signed % TIE_SLOTS  # Python's modulo is Spark's pmod for a positive divisor


def order_key(transaction_id: str, event_time: dt.datetime) -> int:
    """The account's total order of transactions: event second, then the tie slot (features.py `_ord`)."""
    return int(event_time.replace(tzinfo=dt.timezone.utc).timestamp() if event_time.tzinfo is None else event_time.timestamp()) * TIE_SLOTS + tie_slot(transaction_id)


def spark_round(value: float | None, digits: int) -> float | None:
    """Spark's round() of a double: HALF_UP on the value's shortest decimal form."""
    if value is None or math.isnan(value):
        return None
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def haversine_km(lat1, lon1, lat2, lon2) -> float | None:
    """transforms/geo.haversine_km in Python (null if any coordinate is null)."""
    if None in (lat1, lon1, lat2, lon2):
        return None
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    a = math.sin(math.radians(lat2 - lat1) / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(order=True)
class _Seen:
    key: int
    ts: int = field(compare=False)
    cents: int = field(compare=False)
    latitude: float | None = field(compare=False)
    longitude: float | None = field(compare=False)


@dataclass
class AccountState:
    """One account's events of the history window, in order; `update` adds an event and returns its features."""

    events: list[_Seen] = field(default_factory=list)

    def update(self, transaction_id: str, event_time: dt.datetime, amount_base: Decimal | float, latitude: float | None = None,
               longitude: float | None = None, delivery_latitude: float | None = None, delivery_longitude: float | None = None) -> dict:
        key = order_key(transaction_id, event_time)
        cents = int(Decimal(str(amount_base)).scaleb(2).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        seen = _Seen(key, key // TIE_SLOTS, cents, latitude, longitude)
        at = bisect.bisect_right(self.events, seen)
        self.events.insert(at, seen)
        upto = self.events[: at + 1]  # the events up to this one in the order (peers included, as a range frame)
        out: dict = {}
        for name, seconds in WINDOWS_SECONDS.items():
            inside = [e for e in upto if e.key >= key - seconds * TIE_SLOTS]
            out[f"txn_count_{name}"] = len(inside)
            out[f"amount_sum_{name}"] = sum(e.cents for e in inside) / 100.0
        earlier = upto[:-1]
        prior = [e.cents for e in earlier if key - WINDOWS_SECONDS[MAX_WINDOW] * TIE_SLOTS <= e.key <= key - 1]
        max_prior = max(prior) if prior else None
        amount = float(amount_base)
        prior_count = out["txn_count_30d"] - 1
        avg = spark_round((out["amount_sum_30d"] - amount) / prior_count, 2) if prior_count > 0 else None
        out["amount_avg_30d_prior"] = avg
        out["amount_to_avg_30d"] = spark_round(amount / avg, 4) if avg is not None and avg > 0 else None
        out[f"amount_max_{MAX_WINDOW}_prior"] = spark_round(max_prior / 100.0, 2) if max_prior is not None else None
        out[f"amount_to_max_{MAX_WINDOW}"] = spark_round(amount / (max_prior / 100.0), 4) if max_prior else None
        out["delivery_distance_km"] = spark_round(haversine_km(latitude, longitude, delivery_latitude, delivery_longitude), 3)
        prev = earlier[-1] if earlier else None  # in key order, so also the latest second
        located = next((e for e in reversed(earlier) if e.latitude is not None and e.longitude is not None), None)
        out["seconds_since_prev_txn"] = seen.ts - prev.ts if prev else None
        dist_prev = haversine_km(located.latitude, located.longitude, latitude, longitude) if located else None
        out["distance_from_prev_km"] = spark_round(dist_prev, 3)
        out["travel_speed_kmh"] = spark_round(dist_prev / (max(seen.ts - located.ts, MIN_TRAVEL_SECONDS) / 3600.0), 3) if dist_prev is not None else None
        out["previous_event_date"] = dt.datetime.fromtimestamp(prev.ts, dt.timezone.utc).date() if prev else None
        return out
