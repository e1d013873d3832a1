"""The pure core on tiny frames: each Spark transform against hand-written rows or an independent brute-force
recomputation, and against its one-value twin where the real-time lane has one (one definition, two executions).
A handful of rows each; hypothesis draws the inputs where a transform has an invariant."""

import datetime as dt
from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from compliance_assets.transforms.alert_rules import HIGH_RISK, LIMIT, WATCHLIST, alert_id_value, alert_reason_values, alert_rows
from compliance_assets.transforms.enrichment import amount_in_base, amount_in_base_value, limit_flag_values, limit_flags, mask_pii, mask_pii_value
from compliance_assets.transforms.features import WINDOWS_SECONDS, behaviour_features
from compliance_assets.transforms.features import HISTORY_SCHEMA
from compliance_assets.transforms.geo import haversine_km, haversine_km_value

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
T0 = dt.datetime(2026, 3, 10, 12, 0, 0)


def rows_of(df, key: str) -> dict:
    """A frame's rows by key, as plain dicts (chispa-style equality without its dependency)."""
    return {r[key]: r.asDict(recursive=True) for r in df.collect()}


def test_alert_rows_give_one_alert_per_transaction_with_every_reason_and_the_realtime_ids(spark):
    gold = spark.createDataFrame(
        [(t, T0, "acc", band, 0.9 if band == "HIGH" else 0.1, [], "m", "1", "OK", T0, "run", T0.date(), T0.date())
         for t, band in (("t-high", "HIGH"), ("t-watch", "LOW"), ("t-limit", "MEDIUM"), ("t-none", "LOW"))],
        "transaction_id string, event_time timestamp, account_id string, risk_band string, risk_score double, "
        "top_features array<struct<feature:string,contribution:double>>, model_name string, model_version string, dq_status string, "
        "scored_at timestamp, pipeline_run_id string, event_date date, ingest_date date",
    )
    rules = spark.createDataFrame(
        [("t-high", T0, False, None, False, "m1", Decimal("10.00")), ("t-watch", T0, True, ["OFAC", "UN"], None, "m2", Decimal("20.00")),
         ("t-limit", T0, False, [], True, "m3", Decimal("30.00")), ("t-none", T0, False, [], False, "m4", Decimal("40.00"))],
        "transaction_id string, event_time timestamp, watchlist_hit boolean, watchlist_names array<string>, exceeds_single_limit boolean, "
        "merchant_id string, amount_base decimal(18,2)",
    )
    alerts = rows_of(alert_rows(gold, rules), "transaction_id")
    assert {t: a["reasons"] for t, a in alerts.items()} == {
        "t-high": [HIGH_RISK], "t-watch": [f"{WATCHLIST}:OFAC", f"{WATCHLIST}:UN"], "t-limit": [LIMIT],
    }
    assert {t: a["primary_reason"] for t, a in alerts.items()} == {"t-high": HIGH_RISK, "t-watch": f"{WATCHLIST}:OFAC", "t-limit": LIMIT}
    assert all(a["alert_id"] == alert_id_value(t, T0) for t, a in alerts.items())
    bands = {"t-high": "HIGH", "t-watch": "LOW", "t-limit": "MEDIUM", "t-none": "LOW"}
    twin = {r.transaction_id: alert_reason_values(bands[r.transaction_id], r.watchlist_hit, r.watchlist_names, r.exceeds_single_limit) for r in rules.collect()}
    assert twin == {t: alerts[t]["reasons"] if t in alerts else [] for t in bands}  # the real-time lane's reasons are the same


text = st.one_of(st.none(), st.text(max_size=12))


@FEW
@given(values=st.lists(text, min_size=1, max_size=5), salt=st.text(max_size=6))
def test_pii_masking_is_the_same_token_in_spark_and_in_python(spark, values, salt):
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    got = {r.i: r.token for r in df.select("i", mask_pii(F.col("v"), salt).alias("token")).collect()}
    assert got == {i: mask_pii_value(v, salt) for i, v in enumerate(values)}


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999.99"), places=2)
rates = st.floats(min_value=1e-4, max_value=5e3, allow_nan=False, allow_infinity=False)


@FEW
@given(rows=st.lists(st.tuples(amounts, rates), min_size=1, max_size=6))
def test_amount_in_base_is_the_same_decimal_in_spark_and_in_python(spark, rows):
    df = spark.createDataFrame([(i, a, r) for i, (a, r) in enumerate(rows)], "i int, amount decimal(18,2), fx_rate_to_base double")
    got = {r.i: r.amount_base for r in amount_in_base(df).collect()}
    assert got == {i: amount_in_base_value(a, r) for i, (a, r) in enumerate(rows)}


limits = st.one_of(st.none(), st.floats(min_value=1.0, max_value=1e6, allow_nan=False))


@FEW
@given(rows=st.lists(st.tuples(amounts, limits, limits), min_size=1, max_size=6))
def test_limit_flags_are_the_same_in_spark_and_in_python(spark, rows):
    df = spark.createDataFrame([(i, a, s, t) for i, (a, s, t) in enumerate(rows)],
                               "i int, amount_base decimal(18,2), single_transaction_limit double, reporting_threshold double")
    got = {r.i: {"exceeds_single_limit": r.exceeds_single_limit, "just_below_reporting_threshold": r.just_below_reporting_threshold}
           for r in limit_flags(df).collect()}
    assert got == {i: limit_flag_values(a, s, t) for i, (a, s, t) in enumerate(rows)}


coordinate = st.one_of(st.none(), st.floats(min_value=-89.9, max_value=89.9, allow_nan=False))


@FEW
@given(points=st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=1, max_size=6))
def test_haversine_is_the_same_distance_in_spark_and_in_python(spark, points):
    df = spark.createDataFrame([(i, *p) for i, p in enumerate(points)], "i int, a double, b double, c double, d double")
    got = {r.i: r.km for r in df.select("i", haversine_km(F.col("a"), F.col("b"), F.col("c"), F.col("d")).alias("km")).collect()}
    for i, p in enumerate(points):
        want = haversine_km_value(*p)
        assert (got[i] is None) == (want is None) and (want is None or abs(got[i] - want) <= 1e-9 * max(1.0, want))


HISTORY_ROW = "transaction_id string, account_id string, event_time timestamp, event_date date, ingest_date date, amount_base decimal(18,2), latitude double, longitude double, delivery_latitude double, delivery_longitude double"
offsets = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40 * 86_400), st.integers(1, 99_999)), min_size=1, max_size=12,
                   unique_by=lambda t: (t[0], t[1]))


@FEW
@given(events=offsets)
def test_window_counts_and_sums_equal_a_brute_force_recount(spark, events):
    """Each window holds the account's events whose time lies in [own time - window, own time]; counted by hand."""
    start = T0 - dt.timedelta(days=41)
    rows = [(f"t{i}", f"acc{a}", start + dt.timedelta(seconds=s), Decimal(c).scaleb(-2)) for i, (a, s, c) in enumerate(events)]
    for _, account, at, _ in rows:  # an earlier event exactly one window away ties on the sub-second slot: not drawn
        assume(not any(o[1] == account and (at - o[2]).total_seconds() in WINDOWS_SECONDS.values() for o in rows))
    current = spark.createDataFrame([(t, a, at, at.date(), at.date(), amount, None, None, None, None) for t, a, at, amount in rows], HISTORY_ROW)
    out = rows_of(behaviour_features(current, spark.createDataFrame([], HISTORY_SCHEMA)), "transaction_id")
    for t, account, at, _ in rows:
        for name, seconds in WINDOWS_SECONDS.items():
            inside = [o for o in rows if o[1] == account and dt.timedelta(0) <= at - o[2] <= dt.timedelta(seconds=seconds)]
            assert out[t][f"txn_count_{name}"] == len(inside), (t, name)
            assert Decimal(str(out[t][f"amount_sum_{name}"])) == sum((o[3] for o in inside), Decimal(0)), (t, name)
