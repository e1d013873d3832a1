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
import struct
from array import array
from decimal import ROUND_HALF_UP, Decimal

import xxhash

from compliance_assets.transforms.features import MAX_WINDOW, MIN_TRAVEL_SECONDS, TIE_SLOTS, WINDOWS_SECONDS, spark_round
from compliance_assets.transforms.geo import haversine_km_value as haversine_km

SPARK_HASH_SEED = 42  # Spark's xxhash64 default seed


def tie_slot(transaction_id: str) -> int:
    """Spark's `pmod(xxhash64(transaction_id), TIE_SLOTS)`: XXH64 of the UTF-8 bytes, seed 42, as a signed long."""
    return _slot(transaction_hash(transaction_id))


def _slot(unsigned: int) -> int:
    signed = unsigned - (1 << 64) if unsigned >= (1 << 63) else unsigned
    return signed % TIE_SLOTS  # Python's modulo is Spark's pmod for a positive divisor


def _second(event_time: dt.datetime) -> int:
    return int(event_time.replace(tzinfo=dt.timezone.utc).timestamp() if event_time.tzinfo is None else event_time.timestamp())


def order_key(transaction_id: str, event_time: dt.datetime) -> int:
    """The account's total order of transactions: event second, then the tie slot (features.py `_ord`)."""
    return _second(event_time) * TIE_SLOTS + tie_slot(transaction_id)


def event_key(transaction_id: str, event_time: dt.datetime) -> tuple[int, int]:
    """(order_key, transaction_hash) of an event, hashing its id once: what `holds` and `update` may be handed."""
    h = transaction_hash(transaction_id)
    return _second(event_time) * TIE_SLOTS + _slot(h), h


_NO_COORDINATE = float("nan")  # a missing latitude/longitude in the float columns


def transaction_hash(transaction_id: str) -> int:
    """The unsigned 64-bit XXH64 of a transaction id: what the state keeps to recognise a re-delivered transaction."""
    return xxhash.xxh64_intdigest(transaction_id.encode("utf-8"), seed=SPARK_HASH_SEED)


# the windows' feature names and spans in order keys, in the order `update` writes them (shortest first)
_WINDOWS = tuple((f"txn_count_{name}", f"amount_sum_{name}", seconds * TIE_SLOTS) for name, seconds in WINDOWS_SECONDS.items())
assert [span for _, _, span in _WINDOWS] == sorted(span for _, _, span in _WINDOWS)
_MAX_SPAN = WINDOWS_SECONDS[MAX_WINDOW] * TIE_SLOTS
_MAX_PRIOR, _TO_MAX = f"amount_max_{MAX_WINDOW}_prior", f"amount_to_max_{MAX_WINDOW}"
_ONE = Decimal(1)
_UTC = dt.timezone.utc


class AccountState:
    """One account's events of the history window in the account's order, as five packed columns (40 bytes
    an event); `update` adds an event and returns its features."""

    __slots__ = ("keys", "cents", "lat", "lon", "ids")

    def __init__(self) -> None:
        self.keys, self.cents, self.ids = array("q"), array("q"), array("Q")
        self.lat, self.lon = array("d"), array("d")

    def __len__(self) -> int:
        return len(self.keys)

    def holds(self, transaction_id: str, event_time: dt.datetime, keyed: tuple[int, int] | None = None) -> bool:
        """Whether this transaction (its id, at its time) is already in the state: a duplicate delivery
        (`keyed`: its `event_key`, if known)."""
        key, h = keyed or event_key(transaction_id, event_time)
        keys, ids = self.keys, self.ids
        at = bisect.bisect_left(keys, key)
        while at < len(keys) and keys[at] == key:
            if ids[at] == h:
                return True
            at += 1
        return False

    def forget_before(self, event_date: dt.date) -> None:
        """Drop the events before `event_date` (UTC): outside every window a later delivery reads."""
        cut = int(dt.datetime(event_date.year, event_date.month, event_date.day, tzinfo=dt.timezone.utc).timestamp()) * TIE_SLOTS
        n = bisect.bisect_left(self.keys, cut)
        if n:
            for column in (self.keys, self.cents, self.ids, self.lat, self.lon):
                del column[:n]

    def update(self, transaction_id: str, event_time: dt.datetime, amount_base: Decimal | float, latitude: float | None = None,
               longitude: float | None = None, delivery_latitude: float | None = None, delivery_longitude: float | None = None,
               keyed: tuple[int, int] | None = None) -> dict:
        """Add the event (`keyed`: its `event_key`, if known) and return its features."""
        key, h = keyed or event_key(transaction_id, event_time)
        exact = amount_base if type(amount_base) is Decimal else Decimal(str(amount_base))
        cents = int(exact.scaleb(2).quantize(_ONE, rounding=ROUND_HALF_UP))
        ts = key // TIE_SLOTS
        keys, column, lat = self.keys, self.cents, self.lat
        at = bisect.bisect_right(keys, key)
        keys.insert(at, key)
        column.insert(at, cents)
        self.ids.insert(at, h)
        located_here = latitude is not None and longitude is not None
        lat.insert(at, latitude if located_here else _NO_COORDINATE)
        self.lon.insert(at, longitude if located_here else _NO_COORDINATE)

        # each window holds the keys in [key - window, key], peers included as in a range frame: the events from the
        # window's first key up to this one in the order (found by bisection, summed in C over the column's slice)
        out: dict = {}
        bisect_left = bisect.bisect_left
        hi, total = at + 1, 0  # the windows nest (shortest first): each adds the events before the previous one's
        for count_name, sum_name, span in _WINDOWS:
            lo = bisect_left(keys, key - span, 0, hi)
            total += sum(column[lo:hi])
            out[count_name] = at + 1 - lo
            out[sum_name] = total / 100.0
            hi = lo
        lo = bisect_left(keys, key - _MAX_SPAN, 0, at)
        max_prior = max(column[lo:at]) if lo < at else None
        amount = float(amount_base)
        prior_count = out["txn_count_30d"] - 1
        avg = spark_round((out["amount_sum_30d"] - amount) / prior_count, 2) if prior_count > 0 else None
        out["amount_avg_30d_prior"] = avg
        out["amount_to_avg_30d"] = spark_round(amount / avg, 4) if avg is not None and avg > 0 else None
        out[_MAX_PRIOR] = spark_round(max_prior / 100.0, 2) if max_prior is not None else None
        out[_TO_MAX] = spark_round(amount / (max_prior / 100.0), 4) if max_prior else None
        delivery = haversine_km(latitude, longitude, delivery_latitude, delivery_longitude)
        out["delivery_distance_km"] = spark_round(delivery, 3) if delivery is not None else None
        prev_ts = keys[at - 1] // TIE_SLOTS if at > 0 else None  # in key order, so also the latest second
        j = at - 1
        while j >= 0 and lat[j] != lat[j]:  # NaN: not located
            j -= 1
        dist_prev = haversine_km(lat[j], self.lon[j], latitude, longitude) if j >= 0 else None
        out["seconds_since_prev_txn"] = ts - prev_ts if prev_ts is not None else None
        out["distance_from_prev_km"] = spark_round(dist_prev, 3) if dist_prev is not None else None
        out["travel_speed_kmh"] = spark_round(dist_prev / (max(ts - keys[j] // TIE_SLOTS, MIN_TRAVEL_SECONDS) / 3600.0), 3) if dist_prev is not None else None
        out["previous_event_date"] = dt.datetime.fromtimestamp(prev_ts, _UTC).date() if prev_ts is not None else None
        return out


_HEADER = struct.Struct("<HI")  # account id length, event count


def dump_states(states: dict[str, "AccountState"]) -> bytes:
    """A partition's states as bytes (for snapshots): per account its id and its five columns."""
    parts = []
    for account, state in states.items():
        name = account.encode("utf-8")
        parts += [_HEADER.pack(len(name), len(state)), name, state.keys.tobytes(), state.cents.tobytes(), state.ids.tobytes(), state.lat.tobytes(), state.lon.tobytes()]
    return b"".join(parts)


def load_states(data: bytes) -> dict[str, "AccountState"]:
    """`dump_states`' inverse."""
    states: dict[str, AccountState] = {}
    view, at = memoryview(data), 0
    while at < len(data):
        size, n = _HEADER.unpack_from(view, at)
        at += _HEADER.size
        account = bytes(view[at : at + size]).decode("utf-8")
        at += size
        state = AccountState()
        for column in (state.keys, state.cents, state.ids, state.lat, state.lon):
            column.frombytes(view[at : at + 8 * n])
            at += 8 * n
        states[account] = state
    return states
