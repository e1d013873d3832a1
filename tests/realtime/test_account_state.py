"""Parity: generated event streams through the per-account state and through the batch Spark windows
give the same features (exact for counts and amounts; ratios, distances and speeds within one unit of
their last rounded digit), with ties in the same second, day boundaries, accounts without history and
missing coordinates."""

import datetime as dt
import struct
from array import array
from decimal import Decimal

import math
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance_assets.transforms.features import HISTORY_SCHEMA
from compliance_assets.realtime.account_state import AccountState, AccountStates, dump_states, freeze, load_states, order_key, thaw, tie_slot
from compliance_assets.transforms.features import FEATURE_COLUMNS, behaviour_features

CURRENT = "transaction_id string, account_id string, event_time timestamp, event_date date, ingest_date date, amount_base decimal(18,2), latitude double, longitude double, delivery_latitude double, delivery_longitude double"
START = dt.datetime(2026, 3, 1, 23, 0, 0)
EXACT = ("txn_count_", "amount_sum_", "amount_avg_30d_prior", "amount_max_7d_prior", "seconds_since_prev_txn")
ROUNDED = {"amount_to_avg_30d": 4, "amount_to_max_7d": 4, "delivery_distance_km": 3, "distance_from_prev_km": 3, "travel_speed_kmh": 3}
STREAM_FEATURES = [c for c in FEATURE_COLUMNS if c not in ("amount_to_typical", "distance_from_home_km", "days_since_last_activity")]

point = st.one_of(st.none(), st.tuples(st.floats(-60, 60), st.floats(-170, 170)))
event = st.tuples(
    st.sampled_from(["A", "B", "C"]),
    # gaps from the same second (ties) to beyond a week, across midnights
    st.sampled_from([0, 0, 1, 59, 3599, 3600, 3601, 86_399, 86_400, 7 * 86_400, 7 * 86_400 + 1, 9 * 86_400]),
    st.integers(1, 5_000_00),
    point,
    point,
)


def _rows(events) -> list[tuple]:
    """Generated events as CURRENT rows: each account's clock advances by the event's gap."""
    rows, clock = [], {}
    for i, (account, gap, cents, where, delivered) in enumerate(events):
        at = clock.get(account, START) + dt.timedelta(seconds=gap)
        clock[account] = at
        lat, lon = where if where else (None, None)
        dlat, dlon = delivered if delivered else (None, None)
        rows.append((f"T{i:03d}", account, at, at.date(), at.date(), Decimal(cents).scaleb(-2), lat, lon, dlat, dlon))
    return rows


def test_tie_slot_is_sparks_pmod_of_xxhash64(spark):
    ids = ["", "TX1", "TX20260301000000000017", "é-ü-😀", "x" * 40]
    spark_slots = [r[0] for r in spark.createDataFrame([(i,) for i in ids], "t string").selectExpr("pmod(xxhash64(t), 1000000)").collect()]
    assert [tie_slot(i) for i in ids] == spark_slots


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(event, min_size=1, max_size=40))
def test_state_and_batch_windows_give_the_same_features(spark, events):
    rows = _rows(events)
    history = spark.createDataFrame([], HISTORY_SCHEMA)
    batch = {r["transaction_id"]: r.asDict() for r in behaviour_features(spark.createDataFrame(rows, CURRENT), history).collect()}

    states: dict[str, AccountState] = {}
    for r in sorted(rows, key=lambda r: order_key(r[0], r[2])):  # arrival in event-time order
        got = states.setdefault(r[1], AccountState()).update(r[0], r[2], r[5], r[6], r[7], r[8], r[9])
        want = batch[r[0]]
        assert_same(r, got, want, rows)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(event, min_size=2, max_size=25), st.randoms(use_true_random=False))
def test_out_of_order_events_get_the_batch_definition_over_what_had_arrived(spark, events, rnd):
    """The README's definition for late and out-of-order events: a decision's features are the batch path's
    features over the account's events that had arrived before it (and itself); decisions already made stay.
    One Spark job: every arrival's prefix is its own account in the batch computation."""
    rows = _rows(events)
    arrival = rows[:]
    rnd.shuffle(arrival)
    batch = batch_over_arrivals(spark, arrival)
    states: dict[str, AccountState] = {}
    for k, r in enumerate(arrival):
        got = states.setdefault(r[1], AccountState()).update(r[0], r[2], r[5], r[6], r[7], r[8], r[9])
        assert_same(r, got, batch[k], [x for x in arrival[:k + 1]])


def batch_over_arrivals(spark, arrival: list[tuple]) -> list[dict]:
    """The batch features of each arrival k over its account's earlier arrivals (as history) and itself, in one
    Spark job: every arrival's prefix is its own account in the batch computation."""
    current, history = [], []
    for k, r in enumerate(arrival):
        prefix = f"{r[1]}#{k}"
        current.append((r[0], prefix, *r[2:]))
        history += [(x[0], prefix, x[2], x[3], x[4], x[5], x[6], x[7]) for x in arrival[:k] if x[1] == r[1]]
    rows = behaviour_features(spark.createDataFrame(current, CURRENT), spark.createDataFrame(history, HISTORY_SCHEMA)).collect()
    by_prefix = {r["account_id"]: r.asDict() for r in rows}
    return [by_prefix[f"{r[1]}#{k}"] for k, r in enumerate(arrival)]


def test_a_busy_accounts_long_windows_and_late_events_are_the_batch_definition(spark):
    """An account with hundreds of events in its windows (the running totals, the maximum taken in numpy), some
    arriving late among earlier ones (the totals after them moved): the batch features over what had arrived."""
    import random

    rnd = random.Random(7)
    rows = _rows([("A", rnd.choice([0, 0, 1, 30, 600, 3600, 20_000]), rnd.randrange(1, 5_000_00), (48.8 + rnd.random(), 2.3 + rnd.random()), None)
                  for _ in range(220)])
    arrival = rows[:]
    for k in range(0, len(arrival) - 1, 7):  # every 7th event arrives after up to 30 later ones
        arrival.insert(min(len(arrival) - 1, k + rnd.randrange(1, 30)), arrival.pop(k))
    batch = batch_over_arrivals(spark, arrival)
    state = AccountState()
    late = 0
    for k, r in enumerate(arrival):
        late += bool(len(state)) and order_key(r[0], r[2]) < state.keys[-1]
        assert_same(r, state.update(r[0], r[2], r[5], r[6], r[7], r[8], r[9]), batch[k], arrival[:k + 1])
    assert late > 20 and max(b["txn_count_30d"] for b in batch) > 150


def test_amounts_whose_running_total_exceeds_64_bits_are_still_summed_exactly():
    """decimal(18,2) amounts near the column's limit: ten of them pass 2**63 cents; the windows are summed without
    the running totals, to the cent."""
    big = Decimal("9999999999999999.99")
    state, cents = AccountState(), []
    for i in range(12):
        amount = big - i
        cents.append(int(amount * 100))
        got = state.update(f"T{i}", START + dt.timedelta(seconds=i), amount)
        assert got["txn_count_1h"] == i + 1 and got["amount_sum_1h"] == sum(cents) / 100.0
    assert state.running is False
    late = state.update("L", START - dt.timedelta(seconds=1), Decimal("1.00"))  # placed first: every total moves
    assert late["amount_sum_1h"] == 1.0 and state.update("N", START + dt.timedelta(seconds=20), Decimal("2.00"))["amount_sum_1h"] == (sum(cents) + 300) / 100.0


def assert_same(r, got: dict, want: dict, seen: list) -> None:
    """The state's features of row `r` equal the batch's (`seen`: the rows the state had when it decided)."""
    for name in STREAM_FEATURES:
        a, b = got[name], want[name]
        if a is None or b is None:
            assert a is None and b is None, (r[0], name, a, b)
        elif name.startswith(EXACT) or name in EXACT:
            assert a == b, (r[0], name, a, b)
        else:
            assert math.isclose(a, b, abs_tol=10 ** -ROUNDED[name] + 1e-12), (r[0], name, a, b)
    # the previous event's date (days_since_last_activity's input) is the batch's too
    prev = [x for x in seen if x[1] == r[1] and order_key(x[0], x[2]) < order_key(r[0], r[2])]
    assert got["previous_event_date"] == (max(x[2] for x in prev).date() if prev else None)



# ---- cold accounts: freeze / thaw, the hot bound, snapshots ------------------------------------------------

COLUMNS = ("keys", "cents", "ids", "lat", "lon")


def columns(state: AccountState) -> tuple[bytes, ...]:
    return tuple(getattr(state, c).tobytes() for c in COLUMNS)


# coordinates as the service meets them: 5-decimal places near a home, full-precision floats, none, and odd ones
coordinate = st.one_of(
    st.none(),
    st.integers(-9_000_000, 9_000_000).map(lambda i: round(i / 1e5, 5)),
    st.integers(-18_000_000, 18_000_000).map(lambda i: i / 1e5),
    st.integers(-1_800_000_000, 1_800_000_000).map(lambda i: i / 1e7),
    st.floats(-180, 180),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 90.0, -180.0]),
)
# events near each other (ties, the same second) or far apart, any amount the decimal(18,2) column holds
stream = st.lists(st.tuples(st.integers(0, 40 * 86_400), st.integers(-10**9, 10**12), coordinate, coordinate), min_size=0, max_size=60)


def built(events, prefix: str = "T") -> AccountState:
    state = AccountState()
    for i, (second, cents, lat, lon) in enumerate(events):
        state.update(f"{prefix}{i}", START + dt.timedelta(seconds=second), Decimal(cents).scaleb(-2), lat, lon)
    return state


@settings(max_examples=150, deadline=None)
@given(stream, stream)
def test_freeze_thaw_gives_the_same_columns_and_the_same_features_after(events, later):
    state = built(events)
    blob = freeze(state)
    assert isinstance(blob, bytes)
    thawed = thaw(blob)
    assert columns(thawed) == columns(state) and len(thawed) == len(state)
    assert freeze(thawed) == blob  # deterministic: a thawed account freezes to the same bytes
    for i, (second, cents, lat, lon) in enumerate(later):  # later updates: the same features from either
        args = (f"L{i}", START + dt.timedelta(seconds=second), Decimal(cents).scaleb(-2), lat, lon, lat, lon)
        assert thawed.holds(*args[:2]) == state.holds(*args[:2])
        assert thawed.update(*args) == state.update(*args)
        assert columns(thawed) == columns(state)
    day = (START + dt.timedelta(days=20)).date()
    state.forget_before(day)
    thawed = thaw(freeze(thaw(freeze(state))))
    thawed.forget_before(day)
    assert columns(thawed) == columns(state)


def raw_double(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(1, 70))
def test_freeze_is_lossless_for_any_column_contents(data, n):
    """Whatever the columns hold (keys whose tie slot is not the id's, keys out of order, extreme amounts, NaNs with
    other payloads, infinities, -0.0), thaw gives it back bit for bit."""
    int64 = st.integers(-(2**63), 2**63 - 1)
    doubles = st.one_of(st.floats(allow_nan=True), st.integers(0, 2**64 - 1).map(raw_double), st.just(float("nan")), st.just(-0.0),
                        st.integers(-9_000_000, 9_000_000).map(lambda i: i / 1e5))
    state = AccountState()
    state.keys.extend(data.draw(st.lists(int64, min_size=n, max_size=n)))
    state.cents.extend(data.draw(st.lists(int64, min_size=n, max_size=n)))
    state.ids.extend(data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n)))
    state.lat.frombytes(array("d", data.draw(st.lists(doubles, min_size=n, max_size=n))).tobytes())
    state.lon.frombytes(array("d", data.draw(st.lists(doubles, min_size=n, max_size=n))).tobytes())
    assert columns(thaw(freeze(state))) == columns(state)


def test_freeze_packs_a_realistic_account_well_under_its_columns():
    """30 events at 5-decimal coordinates near a home: far less than the 40 bytes an event of the hot columns."""
    import random

    rnd = random.Random(3)
    events = [(rnd.randrange(38 * 86_400), rnd.randrange(100, 500_000), round(48.85 + rnd.gauss(0, 0.03), 5), round(2.35 + rnd.gauss(0, 0.03), 5))
              for _ in range(30)]
    state = built(events)
    assert len(freeze(state)) < 20 * 30  # the ids alone are 8 bytes an event
    uniform = built([(s, c, rnd.uniform(-60, 60), rnd.uniform(-180, 180)) for s, c, _, _ in events])
    assert len(freeze(uniform)) < 32 * 30


def test_hot_states_are_bounded_and_the_least_recently_used_are_frozen():
    states = AccountStates()
    for k in range(10):
        states[f"A{k}"] = built([(k, 100 * k, 1.5, 2.5), (k + 9, 7, None, None)], prefix=f"A{k}-")
    before = {a: columns(states.hot[a]) for a in states.hot}
    assert states.get("A0") is not None and states.get("A3") is not None  # A0 and A3 are now the most recently used
    assert states.freeze_beyond(4) == 6
    assert list(states.hot) == ["A8", "A9", "A0", "A3"] and len(states.cold) == 6 and len(states) == 10
    assert all(isinstance(b, bytes) for b in states.cold.values())
    assert "A5" in states and "A5" in states.cold and "Z" not in states and states.get("Z") is None
    assert states.freeze_beyond(4) == 0
    a5 = states.get("A5")  # thawed on use: hot again, the most recently used, the same columns
    assert "A5" not in states.cold and list(states.hot)[-1] == "A5" and columns(a5) == before["A5"]
    assert len(states.hot) == 5 and states.freeze_beyond(4) == 1 and list(states.hot) == ["A9", "A0", "A3", "A5"]
    assert columns(states.pop("A1")) == before["A1"] and "A1" not in states and len(states) == 9
    states["A8"] = AccountState()  # a replaced cold account is hot and empty
    assert "A8" not in states.cold and len(states.get("A8")) == 0
    assert states.freeze_beyond(0) == 5 and not states.hot and len(states) == 9
    assert {a: columns(states.get(a)) for a in ("A2", "A9")} == {a: before[a] for a in ("A2", "A9")}


def test_snapshots_round_trip_hot_and_cold_states():
    states = AccountStates()
    for k in range(12):
        states[f"acc-{k}-é"] = built([(60 * j + k, 1000 + j, 40 + j / 1e5, -3.5 if j % 2 else None) for j in range(k)], prefix=f"{k}-")
    states.get("acc-1-é")
    states.freeze_beyond(5)
    want = {a: columns(states.get(a)) for a in list(states)}  # (thaws them all: freeze again)
    states.freeze_beyond(5)
    hot_order, cold = list(states.hot), dict(states.cold)

    loaded = load_states(dump_states(states))
    assert list(loaded.hot) == hot_order and loaded.cold == cold  # each in its form, the hot ones in their order
    assert {a: columns(loaded.get(a)) for a in want} == want
    bounded = load_states(dump_states(states), hot=2)  # the least recently used beyond the bound are frozen on load
    assert list(bounded.hot) == hot_order[-2:] and len(bounded.cold) == 10
    assert {a: columns(bounded.get(a)) for a in want} == want
    plain = {a: thaw(freeze(s)) for a, s in ((a, states.get(a)) for a in want)}  # a plain dict dumps as hot states
    assert {a: columns(s) for a, s in load_states(dump_states(plain)).hot.items()} == want
    assert len(load_states(dump_states(AccountStates()))) == 0 and len(load_states(b"")) == 0


def test_snapshots_of_the_first_format_still_load():
    """Format 1: per account (id length, events), the id, the five columns."""
    state = built([(5, 120, 1.0, 2.0), (9, 300, None, None)])
    old = b"".join([struct.pack("<HI", 3, len(state)), b"ACC", *columns(state), struct.pack("<HI", 1, 0), b"B"])
    loaded = load_states(old)
    assert list(loaded.hot) == ["ACC", "B"] and columns(loaded.get("ACC")) == columns(state) and len(loaded.get("B")) == 0


def test_the_service_thaws_on_use_and_keeps_its_bound_after_each_batch():
    """DecisionProcessor's state lookup: a frozen account (or the bootstrap's) is thawed, the bound is kept."""
    from compliance_assets.realtime.service import DecisionProcessor, ServiceOptions

    processor = DecisionProcessor.__new__(DecisionProcessor)  # only the state handling, without Spark, model or Kafka
    processor.options = ServiceOptions(hot_accounts=2)
    base = AccountStates({"boot": built([(0, 100, 1.0, 1.0)], prefix="b")})
    base.freeze_beyond(0)
    processor._bootstrap = load_states(dump_states(base), hot=0)
    processor.states = {0: AccountStates()}  # (assign reads the store: the states are set directly here)
    state_of = processor._state_lookup(0, START.date())
    for k in range(4):
        state_of(f"A{k}").update(f"A{k}", START, Decimal("1.00"), 1.0, 1.0)
    booted = state_of("boot")
    assert len(booted) == 1 and "boot" not in processor._bootstrap
    processor.states[0].freeze_beyond(processor.options.hot_accounts)  # what _decide does after each partition's batch
    assert list(processor.states[0].hot) == ["A3", "boot"] and set(processor.states[0].cold) == {"A0", "A1", "A2"}
    assert len(state_of("A0")) == 1 and list(processor.states[0].hot)[-1] == "A0"
    again = load_states(processor.snapshot(0), hot=processor.options.hot_accounts)
    assert {a: columns(again.get(a)) for a in ("A0", "A1", "A2", "A3", "boot")} == {a: columns(processor.states[0].get(a)) for a in ("A0", "A1", "A2", "A3", "boot")}
