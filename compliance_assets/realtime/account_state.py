"""Per-account behaviour features, one event at a time: the real-time execution of the definition in
transforms/features.py (its windows, tie order, prior/inclusive rules and rounding), read from there.

An event's features are the batch definition over the account's events this state has seen, its own
included: the windows hold the events whose order key lies in [own key - window, own key], the averages
and the largest earlier amount the earlier ones, the previous (located) event is the one just before it in
that order. Events arriving in event-time order therefore get exactly the batch path's features; a late
event is placed in order among what the state holds, and the decisions already made are not revisited (a
replay through the batch path recomputes them). tests/realtime/test_account_state.py proves the parity.

A partition's states are an `AccountStates`: its most recently used accounts hot (`AccountState`s, 40 bytes an
event, 48 with the running totals an update builds, plus ~700 bytes of Python objects), the others frozen into
one compact `bytes` blob each (`freeze`, about 30 bytes an event at full-precision coordinates, 17 at the
5-decimal ones the sources send, ~90 bytes of overhead), thawed on use with exactly the columns they had, so
every feature stays bit-identical.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import math
import struct
from array import array
from collections import OrderedDict
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterator, Mapping

import numpy as np
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
_NO_RUNNING = False  # AccountState.running: the totals do not fit 64 bits
_SCAN_IN_PYTHON = 48  # up to this many amounts, a window's maximum is quicker in Python than through numpy


@functools.lru_cache(maxsize=64)
def _first_key(event_date: dt.date) -> int:
    """The smallest order key of an event on `event_date` (UTC)."""
    return int(dt.datetime(event_date.year, event_date.month, event_date.day, tzinfo=dt.timezone.utc).timestamp()) * TIE_SLOTS


class AccountState:
    """One account's events of the history window in the account's order, as five packed columns (40 bytes
    an event); `update` adds an event and returns its features.

    `running` is derived, never stored: the running totals of `cents` (entry i: the sum of the first i + 1),
    built on an account's first `update` after it was made, thawed or trimmed, then kept up by `update`, so a
    window's sum is one subtraction and not a pass over the window (an account with thousands of events in
    30 days costs what one with ten does). None: not built; `_NO_RUNNING`: the totals exceed 64 bits, the
    windows are summed from `cents`."""

    __slots__ = ("keys", "cents", "lat", "lon", "ids", "running")

    def __init__(self) -> None:
        self.keys, self.cents, self.ids = array("q"), array("q"), array("Q")
        self.lat, self.lon = array("d"), array("d")
        self.running: array | bool | None = None

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
        n = bisect.bisect_left(self.keys, _first_key(event_date))
        if n:
            for column in (self.keys, self.cents, self.ids, self.lat, self.lon):
                del column[:n]
            self.running = None

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
        running = self._running_with(at, cents)
        self.ids.insert(at, h)
        located_here = latitude is not None and longitude is not None
        lat.insert(at, latitude if located_here else _NO_COORDINATE)
        self.lon.insert(at, longitude if located_here else _NO_COORDINATE)

        # each window holds the keys in [key - window, key], peers included as in a range frame: the events from the
        # window's first key up to this one in the order (found by bisection, summed as a difference of running totals)
        out: dict = {}
        bisect_left = bisect.bisect_left
        hi, total = at + 1, 0  # the windows nest (shortest first): each adds the events before the previous one's
        for count_name, sum_name, span in _WINDOWS:
            lo = bisect_left(keys, key - span, 0, hi)
            if running is not None:
                total = running[at] - (running[lo - 1] if lo else 0)
            else:
                total += sum(column[lo:hi])
            out[count_name] = at + 1 - lo
            out[sum_name] = total / 100.0
            hi = lo
        lo = bisect_left(keys, key - _MAX_SPAN, 0, at)
        if at - lo > _SCAN_IN_PYTHON:  # a long window: its maximum in C, without an int object per element
            max_prior = int(np.frombuffer(column, np.int64, at - lo, lo * 8).max())
        else:
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

    def _running_with(self, at: int, cents: int) -> array | None:
        """The running totals once `cents` has been inserted into `cents` at `at` (built or kept up), or None
        where they exceed 64 bits."""
        running = self.running
        if running is _NO_RUNNING:
            return None
        try:
            if running is None:
                running = self.running = array("q", itertools.accumulate(self.cents))
            elif at == len(running):  # the usual case: the account's latest event
                running.append((running[-1] if at else 0) + cents)
            else:  # an event placed among earlier ones: the totals from it on move by its amount
                running.insert(at, (running[at - 1] if at else 0) + cents)
                tail = np.frombuffer(running, np.int64)[at + 1:]  # a view: released before the array is resized again
                if int(tail.max()) > _INT64_MAX - cents if cents > 0 else int(tail.min()) < -_INT64_MAX - 1 - cents:
                    raise OverflowError
                tail += cents
                del tail
        except OverflowError:
            self.running = _NO_RUNNING
            return None
        return running


# ---- cold accounts: one packed blob each ------------------------------------------------------------------
# An account not used recently is kept as `freeze(state)`: its five columns, each made of small non-negative
# integers losslessly (the keys as the deltas of their seconds, the tie slot left out when it is the id's, as
# `update` writes it; the amounts less their least; coordinates that are decimals of at most 5 (or 7) places as
# integers of 1e-5 (1e-7) degrees less their least, a missing one in a bit mask; other coordinates' bit patterns
# XORed with the first's) and bit-packed at the width of the column's largest (delta / frame-of-reference
# bit-packing, as Parquet's DELTA_BINARY_PACKED). `thaw(freeze(s))` has exactly `s`'s columns, bit for bit.

_KEY_SECONDS, _DEC5, _DEC7, _MASKED, _ONE_MASK = 1, 2, 4, 8, 16  # modes: keys as seconds; coordinates as decimals; NaN mask(s), one for both
_SCALES = ((_DEC5, 1e5), (_DEC7, 1e7))
_NAN_BITS = np.array([_NO_COORDINATE]).view(np.uint64)[0]  # a missing coordinate's bit pattern
_BIT = np.arange(64)
_INT64_MAX = np.iinfo(np.int64).max
_FREEZE_LIMIT = 9e7  # |coordinate| below this: times 1e7 it is an exact integer in a float64


def _varints(values) -> bytes:
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def _read_varints(blob: bytes, at: int, count: int) -> tuple[list[int], int]:
    values = []
    for _ in range(count):
        v = shift = 0
        while True:
            byte = blob[at]
            at += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        values.append(v)
    return values, at


def _zz(v: int) -> int:  # zigzag of a signed 64-bit int: a small magnitude is a small number
    return (v << 1) ^ (v >> 63) if v >= 0 else ((v << 1) ^ -1) & 0xFFFFFFFFFFFFFFFF


def _unzz(u: int) -> int:
    return (u >> 1) ^ -(u & 1)


@functools.lru_cache(maxsize=4096)
def _selector(widths: tuple[int, ...]) -> np.ndarray:
    """(5, 64) booleans: the bit planes below each column's width."""
    return _BIT < np.array(widths)[:, None]


def _scales_for(lat: array, lon: array) -> tuple[tuple[int, float], ...]:
    """The decimal scales (`_SCALES`) that the first located latitude and longitude are exact at (a quick test
    before the columns'): a full-precision coordinate is not tried as a decimal at all."""
    found = _SCALES
    for column in (lat, lon):
        x = next((x for x in column if x == x), None)  # the first that is not NaN
        if x is None:
            continue
        if not abs(x) < _FREEZE_LIMIT or (x == 0.0 and math.copysign(1.0, x) < 0):
            return ()
        found = tuple((mode, scale) for mode, scale in found if round(x * scale) / scale == x)
    return found


def freeze(state: "AccountState") -> bytes:
    """The state packed as one bytes blob (`thaw` is its inverse)."""
    n = len(state.keys)
    if not n:
        return b"\x00"
    keys, ids = np.frombuffer(state.keys, np.int64), np.frombuffer(state.ids, np.uint64)
    seconds, slots = np.divmod(keys, TIE_SLOTS)
    modes = 0
    if not (slots != ids.view(np.int64) % TIE_SLOTS).any():  # numpy's % is Python's (and Spark's pmod) for a positive divisor
        modes, keys = _KEY_SECONDS, seconds
    columns = np.empty((5, n), np.int64)
    columns[0, 0] = 0
    np.subtract(keys[1:], keys[:-1], out=columns[0, 1:])  # the keys are in order: the deltas are >= 0
    cents = np.frombuffer(state.cents, np.int64)
    least_cents = int(cents.min())
    np.subtract(cents, least_cents, out=columns[1])
    columns[2] = ids.view(np.int64)

    coordinates = np.concatenate([np.frombuffer(state.lat, np.float64), np.frombuffer(state.lon, np.float64)]).reshape(2, n)
    bits = coordinates.view(np.uint64)
    scales = _scales_for(state.lat, state.lon)  # the decimal scales the first located coordinates allow
    masks, refs = b"", [0, 0]
    if scales:
        missing = np.isnan(coordinates)
        if not missing.any():
            missing = None
        elif (bits[missing] != _NAN_BITS).any():
            scales = ()  # a NaN other than _NO_COORDINATE: kept as a bit pattern
        located = coordinates if missing is None else np.where(missing, 0.0, coordinates)
        if scales and not (np.abs(located) < _FREEZE_LIMIT).all():
            scales = ()
        for mode, scale in scales:
            ints = np.rint(located * scale).astype(np.int64)
            back = (ints / scale).view(np.uint64)
            if not (back == bits if missing is None else np.where(missing, _NAN_BITS, back) == bits).all():
                continue  # not all such decimals (or a -0.0)
            if missing is None:
                least = ints.min(axis=1)
                np.subtract(ints, least[:, None], out=columns[3:])
            else:
                least = np.where(missing, _INT64_MAX, ints).min(axis=1)
                least[least == _INT64_MAX] = 0  # a column without a location
                np.subtract(ints, least[:, None], out=columns[3:])
                columns[3:][missing] = 0
                lat_mask, lon_mask = (m.tobytes() for m in np.packbits(missing, axis=1))
                masks = lat_mask if lat_mask == lon_mask else lat_mask + lon_mask
                modes |= _MASKED | (_ONE_MASK if lat_mask == lon_mask else 0)
            modes |= mode
            refs = [_zz(x) for x in least.tolist()]
            break
    if not modes & (_DEC5 | _DEC7):
        first = bits[:, :1]
        np.bitwise_xor(bits, first, out=columns[3:].view(np.uint64))
        refs = first[:, 0].tolist()
    widths = [x.bit_length() for x in columns.view(np.uint64).max(axis=1).tolist()]
    # bit b of value i of column c is planes[c, b, i]: the planes below each column's width, packed
    planes = np.unpackbits(columns.view(np.uint8), bitorder="little").reshape(5, n, 64).transpose(0, 2, 1)
    packed = np.packbits(planes[_selector(tuple(widths))], bitorder="little")
    head = _varints([n, modes, *widths, _zz(int(keys[0])), _zz(least_cents), *refs])
    return head + masks + packed.tobytes()


def thaw(blob: bytes) -> "AccountState":
    """`freeze`'s inverse: the state with exactly the columns it was frozen with."""
    state = AccountState()
    (n,), at = _read_varints(blob, 0, 1)
    if not n:
        return state
    (modes, *widths, first_key, least_cents, ref_lat, ref_lon), at = _read_varints(blob, at, 10)
    missing = None
    if modes & _MASKED:
        size, count = (n + 7) // 8, 1 if modes & _ONE_MASK else 2
        missing = np.unpackbits(np.frombuffer(blob, np.uint8, count * size, at).reshape(count, size), axis=1, count=n).astype(bool)
        if count == 1:
            missing = np.concatenate([missing, missing])
        at += count * size
    values = np.zeros((5, n, 64), np.uint8)  # bit b of value i of column c
    bits = sum(widths)
    values.transpose(0, 2, 1)[_selector(tuple(widths))] = np.unpackbits(np.frombuffer(blob, np.uint8, offset=at), count=bits * n, bitorder="little").reshape(bits, n)
    columns = np.packbits(values, bitorder="little").view(np.int64).reshape(5, n)
    ids = columns[2]
    keys = np.cumsum(columns[0]) + _unzz(first_key)
    if modes & _KEY_SECONDS:
        keys = keys * TIE_SLOTS + ids % TIE_SLOTS
    state.keys.frombytes(keys.tobytes())
    state.cents.frombytes((columns[1] + _unzz(least_cents)).tobytes())
    state.ids.frombytes(ids.tobytes())
    if modes & (_DEC5 | _DEC7):
        coordinates = (columns[3:] + np.array([_unzz(ref_lat), _unzz(ref_lon)])[:, None]) / (1e5 if modes & _DEC5 else 1e7)
        if missing is not None:
            coordinates.view(np.uint64)[missing] = _NAN_BITS
    else:
        coordinates = (columns[3:].view(np.uint64) ^ np.array([ref_lat, ref_lon], np.uint64)[:, None]).view(np.float64)
    state.lat.frombytes(coordinates[0].tobytes())
    state.lon.frombytes(coordinates[1].tobytes())
    return state


class AccountStates:
    """A partition's account states: the `hot` ones (at most a bound after each `freeze_beyond`, the most recently
    used) as `AccountState`s, the others `cold`, as `freeze` blobs. `get`/`pop` thaw a cold account."""

    __slots__ = ("hot", "cold")

    def __init__(self, states: Mapping[str, "AccountState"] | None = None) -> None:
        self.hot: OrderedDict[str, AccountState] = OrderedDict(states or {})  # least recently used first
        self.cold: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self.hot) + len(self.cold)

    def __contains__(self, account: object) -> bool:
        return account in self.hot or account in self.cold

    def __iter__(self) -> Iterator[str]:
        yield from self.hot
        yield from self.cold

    def get(self, account: str, default: "AccountState | None" = None) -> "AccountState | None":
        """The account's state (thawed if it was cold), now the most recently used; `default` if there is none."""
        state = self.hot.get(account)
        if state is not None:
            self.hot.move_to_end(account)
            return state
        blob = self.cold.pop(account, None)
        if blob is None:
            return default
        state = self.hot[account] = thaw(blob)
        return state

    def __getitem__(self, account: str) -> "AccountState":
        state = self.get(account)
        if state is None:
            raise KeyError(account)
        return state

    def __setitem__(self, account: str, state: "AccountState") -> None:
        self.cold.pop(account, None)
        self.hot[account] = state
        self.hot.move_to_end(account)

    def pop(self, account: str, default: "AccountState | None" = None) -> "AccountState | None":
        state = self.hot.pop(account, None)
        if state is not None:
            return state
        blob = self.cold.pop(account, None)
        return thaw(blob) if blob is not None else default

    def freeze_beyond(self, hot: int) -> int:
        """Freeze the least recently used hot states until at most `hot` are left; how many were frozen."""
        frozen = 0
        while len(self.hot) > hot:
            account, state = self.hot.popitem(last=False)
            self.cold[account] = freeze(state)
            frozen += 1
        return frozen


_HEADER = struct.Struct("<HI")  # format 1: account id length, event count
_MAGIC = b"\xff\xffACCOUNTSTATES2\n"  # format 2 (format 1 starts with an account id's length, never 65535)
_ENTRY = struct.Struct("<HBI")  # format 2: account id length, form (_HOT columns or _COLD blob), events or blob bytes
_HOT, _COLD = 0, 1


def dump_states(states: "Mapping[str, AccountState] | AccountStates") -> bytes:
    """A partition's states as bytes (for snapshots): per account its id and either its five columns (a hot
    state, in least-recently-used order) or its `freeze` blob (a cold one)."""
    parts = [_MAGIC]
    hot = states.hot if isinstance(states, AccountStates) else states
    for account, state in hot.items():
        name = account.encode("utf-8")
        parts += [_ENTRY.pack(len(name), _HOT, len(state)), name, state.keys.tobytes(), state.cents.tobytes(), state.ids.tobytes(), state.lat.tobytes(), state.lon.tobytes()]
    if isinstance(states, AccountStates):
        for account, blob in states.cold.items():
            name = account.encode("utf-8")
            parts += [_ENTRY.pack(len(name), _COLD, len(blob)), name, blob]
    return b"".join(parts)


def load_states(data: bytes, hot: int | None = None) -> AccountStates:
    """`dump_states`' inverse (also of its first format, five columns per account); `hot`: freeze the least recently
    used states beyond that many (None: every account as it was written)."""
    states = AccountStates()
    view = memoryview(data)
    v2 = data[: len(_MAGIC)] == _MAGIC
    at = len(_MAGIC) if v2 else 0
    while at < len(data):
        if v2:
            size, form, n = _ENTRY.unpack_from(view, at)
            at += _ENTRY.size
        else:
            (size, n), form = _HEADER.unpack_from(view, at), _HOT
            at += _HEADER.size
        account = bytes(view[at : at + size]).decode("utf-8")
        at += size
        if form == _COLD:
            states.cold[account] = bytes(view[at : at + n])
            at += n
            continue
        state = AccountState()
        for column in (state.keys, state.cents, state.ids, state.lat, state.lon):
            column.frombytes(view[at : at + 8 * n])
            at += 8 * n
        states.hot[account] = state
    if hot is not None:
        states.freeze_beyond(hot)
    return states
