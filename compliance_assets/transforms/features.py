"""Per-account behaviour features over several time windows.

One implementation for batch and streaming: the current rows are unioned with the account's
earlier silver rows (`history`), windows are evaluated in event-time order, and only the current
rows are returned. Counts and sums include the current transaction; averages and the previous
location use only earlier transactions, so a feature never sees the future. The largest earlier amount
of the last 7 days (`amount_max_7d_prior`) is what a stolen card's inflated spending is measured against:
unlike an average, earlier fraudulent amounts inflate it only when they were larger still.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.transforms.geo import haversine_km, haversine_km_value

WINDOWS_SECONDS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
MAX_WINDOW = "7d"  # the window of the largest earlier amount
HISTORY_DAYS = 31
# the silver columns a transaction's features read from the account's earlier transactions (with the delivery day
# they came in, to read the history as of a delivery)
HISTORY_SCHEMA = T.StructType(
    [
        T.StructField("transaction_id", T.StringType()),
        T.StructField("account_id", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
        T.StructField("event_date", T.DateType()),
        T.StructField("ingest_date", T.DateType()),
        T.StructField("amount_base", T.DecimalType(18, 2)),
        T.StructField("latitude", T.DoubleType()),
        T.StructField("longitude", T.DoubleType()),
    ]
)
HISTORY_COLUMNS = tuple(name for name in HISTORY_SCHEMA.fieldNames() if name != "ingest_date")
TIE_SLOTS = 1_000_000  # sub-second ordering slots for transactions in the same second
MIN_TRAVEL_SECONDS = 60  # floor for speed: two events in the same minute are not infinitely fast

FEATURE_COLUMNS = (
    *[f"txn_count_{w}" for w in WINDOWS_SECONDS],
    *[f"amount_sum_{w}" for w in WINDOWS_SECONDS],
    "amount_avg_30d_prior",
    "amount_to_avg_30d",
    f"amount_max_{MAX_WINDOW}_prior",
    f"amount_to_max_{MAX_WINDOW}",
    "amount_to_typical",
    "distance_from_home_km",
    "delivery_distance_km",
    "seconds_since_prev_txn",
    "distance_from_prev_km",
    "travel_speed_kmh",
    "days_since_last_activity",
)


def behaviour_features(current: DataFrame, history: DataFrame) -> DataFrame:
    """Add the per-account window features to `current` using `history` (earlier silver rows).

    Windowed counts and sums are differences of running totals (frames that only grow), so each
    account's rows are visited once whatever the window length. `_prev_date` (the date of the
    previous transaction) is kept for `reference_features`.
    """
    cur = current.withColumn("_current", F.lit(True))
    hist = history.select(*HISTORY_COLUMNS).withColumn("_current", F.lit(False))
    u = (
        cur.unionByName(hist, allowMissingColumns=True)
        .withColumn("_ts", F.unix_seconds("event_time"))
        # one total order per account (event second, then a stable tie-break on transaction_id) so
        # every window below shares a single sort and re-runs give identical features
        .withColumn("_ord", F.col("_ts") * TIE_SLOTS + F.pmod(F.xxhash64("transaction_id"), F.lit(TIE_SLOTS)))
        # exact sums in integer cents (long additions; decimal sums widen to BigDecimal arithmetic)
        .withColumn("_cents", F.round(F.col("amount_base").cast("double") * 100).cast("long"))
    )

    by_time = Window.partitionBy("account_id").orderBy("_ord")
    upto_now = by_time.rangeBetween(Window.unboundedPreceding, Window.currentRow)
    u = u.withColumn("_n", F.count(F.lit(1)).over(upto_now)).withColumn("_sum", F.sum("_cents").over(upto_now))
    for name, seconds in WINDOWS_SECONDS.items():
        # rows strictly before the window start; to the second: the boundary second is cut by tie-break
        before = by_time.rangeBetween(Window.unboundedPreceding, -seconds * TIE_SLOTS - 1)
        u = u.withColumn(f"txn_count_{name}", F.col("_n") - F.count(F.lit(1)).over(before))
        u = u.withColumn(f"amount_sum_{name}", (F.col("_sum") - F.coalesce(F.sum("_cents").over(before), F.lit(0))) / 100.0)

    # the largest earlier amount in the 7-day window (the rows its counts hold, but the current one): a
    # sliding frame, so it costs the rows of the window per row, not a difference of running totals
    max_seconds = WINDOWS_SECONDS[MAX_WINDOW]
    u = u.withColumn("_max_prior", F.max("_cents").over(by_time.rangeBetween(-max_seconds * TIE_SLOTS, -1)))

    prior = by_time.rowsBetween(Window.unboundedPreceding, -1)
    located_ts = F.when(F.col("latitude").isNotNull() & F.col("longitude").isNotNull(), F.col("_ts"))
    u = (
        u.withColumn("_prev_ts", F.max("_ts").over(prior))
        .withColumn("_prev_loc_ts", F.last(located_ts, ignorenulls=True).over(prior))
        .withColumn("_prev_lat", F.last(F.when(located_ts.isNotNull(), F.col("latitude")), ignorenulls=True).over(prior))
        .withColumn("_prev_lon", F.last(F.when(located_ts.isNotNull(), F.col("longitude")), ignorenulls=True).over(prior))
    )

    amount = F.col("amount_base").cast("double")
    prior_count = F.col("txn_count_30d") - 1
    dist_prev = haversine_km(F.col("_prev_lat"), F.col("_prev_lon"), F.col("latitude"), F.col("longitude"))
    secs_prev_loc = F.col("_ts") - F.col("_prev_loc_ts")
    out = (
        u.where("_current")
        .withColumn("amount_avg_30d_prior", F.when(prior_count > 0, F.round((F.col("amount_sum_30d") - amount) / prior_count, 2)))
        # a base amount can round to 0.00 after FX: no ratio to a zero average or maximum (ANSI would fail the run)
        .withColumn("amount_to_avg_30d", F.when(F.col("amount_avg_30d_prior") > 0, F.round(amount / F.col("amount_avg_30d_prior"), 4)))
        .withColumn(f"amount_max_{MAX_WINDOW}_prior", F.round(F.col("_max_prior") / 100.0, 2))
        .withColumn(f"amount_to_max_{MAX_WINDOW}", F.when(F.col("_max_prior") > 0, F.round(amount / (F.col("_max_prior") / 100.0), 4)))
        .withColumn("delivery_distance_km", F.round(haversine_km(F.col("latitude"), F.col("longitude"), F.col("delivery_latitude"), F.col("delivery_longitude")), 3))
        .withColumn("seconds_since_prev_txn", F.col("_ts") - F.col("_prev_ts"))
        .withColumn("distance_from_prev_km", F.round(dist_prev, 3))
        .withColumn("travel_speed_kmh", F.round(dist_prev / (F.greatest(secs_prev_loc, F.lit(MIN_TRAVEL_SECONDS)) / 3600.0), 3))
        .withColumn("_prev_date", F.to_date(F.from_unixtime("_prev_ts")))
    )
    return out.drop("_current", "_ts", "_ord", "_cents", "_n", "_sum", "_max_prior", "_prev_ts", "_prev_loc_ts", "_prev_lat", "_prev_lon")


def reference_features(df: DataFrame) -> DataFrame:
    """Features that compare a transaction with the account's KYC profile (after enrichment)."""
    amount = F.col("amount_base").cast("double")
    last_activity = F.coalesce(F.col("_prev_date"), F.col("last_activity_date"), F.col("account_opened_date"))
    return (
        df.withColumn("amount_to_typical", F.round(amount / F.col("typical_amount"), 4))
        .withColumn("distance_from_home_km", F.round(haversine_km(F.col("home_latitude"), F.col("home_longitude"), F.col("latitude"), F.col("longitude")), 3))
        .withColumn("days_since_last_activity", F.datediff(F.col("event_date"), last_activity))
        .drop("_prev_date")
    )


_ROUND_SCALES = [10.0**d for d in range(16)]  # exact doubles
# below 2**32 a scaled double and its shortest decimal form, scaled, are within 2**-20 of each other: further than
# the margin from a tie (k + 0.5), they round to the same k
_ROUND_FAST_LIMIT = 2.0**32
_ROUND_TIE_MARGIN = 1e-5
_ROUND_ONE_BY_ONE = 24  # spark_round_all: below this many values, spark_round each


def spark_round(value: float | None, digits: int) -> float | None:
    """Spark's round() of a double for the real-time lane: HALF_UP on the value's shortest decimal form.

    Away from a tie this is Python's round(), which rounds the exact binary value correctly: the shortest decimal
    form lies within half a unit in the last place of it, so the two round alike unless a tie (...5 at the next
    digit) lies between them, i.e. unless the scaled value is within a hair of one. Those, non-floats and huge or
    non-finite values take the decimal definition (`_spark_round_decimal`); tests/transforms/test_spark_round.py
    proves the two agree."""
    if type(value) is float and 0 <= digits < 16:
        scaled = value * _ROUND_SCALES[digits]
        if -_ROUND_FAST_LIMIT < scaled < _ROUND_FAST_LIMIT and abs(abs(scaled) % 1.0 - 0.5) > _ROUND_TIE_MARGIN:
            return round(value, digits)
    return _spark_round_decimal(value, digits)


def spark_round_all(values: np.ndarray, digits: int) -> list[float | None]:
    """spark_round of every element of a float64 array, as a list: the fast path's test and rounding for the whole
    array at once (rint of the scaled value, divided by the exact power of ten: the double nearest to the rounded
    decimal, as Python's round() gives), the decimal definition for the rest."""
    flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if len(flat) < _ROUND_ONE_BY_ONE or not 0 <= digits < 16:  # a few: quicker one by one than through numpy's calls
        return [spark_round(x, digits) for x in flat.tolist()]
    scale = _ROUND_SCALES[digits]
    scaled = flat * scale
    with np.errstate(invalid="ignore"):
        fast = (np.abs(scaled) < _ROUND_FAST_LIMIT) & (np.abs(np.abs(scaled) % 1.0 - 0.5) > _ROUND_TIE_MARGIN)
    rounded = (np.rint(scaled) / scale).tolist()
    if not fast.all():
        for i in np.flatnonzero(~fast).tolist():
            rounded[i] = _spark_round_decimal(float(flat[i]), digits)
    return rounded


def _spark_round_decimal(value: float | None, digits: int) -> float | None:
    """spark_round's definition: HALF_UP on the shortest decimal form (repr) of the double."""
    if value is None or math.isnan(value):
        return None
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def reference_feature_values(amount_base: Decimal, event_date: dt.date, previous_event_date: dt.date | None, latitude: float | None,
                             longitude: float | None, kyc: dict) -> dict:
    """`reference_features` for one transaction (`kyc`: its silver KYC columns, empty for an unknown account)."""
    typical = kyc.get("typical_amount")
    last_activity = previous_event_date or kyc.get("last_activity_date") or kyc.get("account_opened_date")
    home = haversine_km_value(kyc.get("home_latitude"), kyc.get("home_longitude"), latitude, longitude) if latitude is not None else None
    return {
        "amount_to_typical": spark_round(float(amount_base) / typical, 4) if typical else None,
        "distance_from_home_km": spark_round(home, 3) if home is not None else None,
        "days_since_last_activity": (event_date - last_activity).days if last_activity is not None else None,
    }
