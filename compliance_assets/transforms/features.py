"""Per-account behaviour features over several time windows.

One implementation for batch and streaming: the current rows are unioned with the account's
earlier silver rows (`history`), windows are evaluated in event-time order, and only the current
rows are returned. Counts and sums include the current transaction; averages and the previous
location use only earlier transactions, so a feature never sees the future.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from compliance_assets.transforms.geo import haversine_km

WINDOWS_SECONDS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
HISTORY_DAYS = 31
HISTORY_COLUMNS = ("transaction_id", "account_id", "event_time", "event_date", "amount_base", "latitude", "longitude")
TIE_SLOTS = 1_000_000  # sub-second ordering slots for transactions in the same second
MIN_TRAVEL_SECONDS = 60  # floor for speed: two events in the same minute are not infinitely fast

FEATURE_COLUMNS = (
    *[f"txn_count_{w}" for w in WINDOWS_SECONDS],
    *[f"amount_sum_{w}" for w in WINDOWS_SECONDS],
    "amount_avg_30d_prior",
    "amount_to_avg_30d",
    "amount_to_typical",
    "distance_from_home_km",
    "delivery_distance_km",
    "seconds_since_prev_txn",
    "distance_from_prev_km",
    "travel_speed_kmh",
    "days_since_last_activity",
)


def behaviour_features(current: DataFrame, history: DataFrame) -> DataFrame:
    """Add the behaviour features to `current` (enriched rows) using `history` (earlier silver rows)."""
    cur = current.withColumn("_current", F.lit(True))
    hist = history.select(*HISTORY_COLUMNS).withColumn("_current", F.lit(False))
    u = (
        cur.unionByName(hist, allowMissingColumns=True)
        .withColumn("_ts", F.unix_seconds("event_time"))
        # one total order per account (event second, then a stable tie-break on transaction_id) so
        # every window below shares a single sort and re-runs give identical features
        .withColumn("_ord", F.col("_ts") * TIE_SLOTS + F.pmod(F.xxhash64("transaction_id"), F.lit(TIE_SLOTS)))
    )

    by_time = Window.partitionBy("account_id").orderBy("_ord")
    amount = F.col("amount_base").cast("double")
    for name, seconds in WINDOWS_SECONDS.items():
        frame = by_time.rangeBetween(-seconds * TIE_SLOTS, 0)  # to the second: the boundary second is cut by tie-break
        u = u.withColumn(f"txn_count_{name}", F.count(F.lit(1)).over(frame))
        u = u.withColumn(f"amount_sum_{name}", F.round(F.sum(amount).over(frame), 2))

    prior = by_time.rowsBetween(Window.unboundedPreceding, -1)
    located_ts = F.when(F.col("latitude").isNotNull() & F.col("longitude").isNotNull(), F.col("_ts"))
    u = (
        u.withColumn("_prev_ts", F.max("_ts").over(prior))
        .withColumn("_prev_loc_ts", F.last(located_ts, ignorenulls=True).over(prior))
        .withColumn("_prev_lat", F.last(F.when(located_ts.isNotNull(), F.col("latitude")), ignorenulls=True).over(prior))
        .withColumn("_prev_lon", F.last(F.when(located_ts.isNotNull(), F.col("longitude")), ignorenulls=True).over(prior))
    )

    prior_count = F.col("txn_count_30d") - 1
    u = u.withColumn(
        "amount_avg_30d_prior",
        F.when(prior_count > 0, F.round((F.col("amount_sum_30d") - amount) / prior_count, 2)),
    )
    dist_prev = haversine_km(F.col("_prev_lat"), F.col("_prev_lon"), F.col("latitude"), F.col("longitude"))
    secs_prev_loc = F.col("_ts") - F.col("_prev_loc_ts")
    last_activity = F.coalesce(F.to_date(F.from_unixtime("_prev_ts")), F.col("last_activity_date"), F.col("account_opened_date"))
    out = (
        u.where("_current")
        .withColumn("amount_to_avg_30d", F.round(amount / F.col("amount_avg_30d_prior"), 4))
        .withColumn("amount_to_typical", F.round(amount / F.col("typical_amount"), 4))
        .withColumn("distance_from_home_km", F.round(haversine_km(F.col("home_latitude"), F.col("home_longitude"), F.col("latitude"), F.col("longitude")), 3))
        .withColumn("delivery_distance_km", F.round(haversine_km(F.col("latitude"), F.col("longitude"), F.col("delivery_latitude"), F.col("delivery_longitude")), 3))
        .withColumn("seconds_since_prev_txn", F.col("_ts") - F.col("_prev_ts"))
        .withColumn("distance_from_prev_km", F.round(dist_prev, 3))
        .withColumn("travel_speed_kmh", F.round(dist_prev / (F.greatest(secs_prev_loc, F.lit(MIN_TRAVEL_SECONDS)) / 3600.0), 3))
        .withColumn("days_since_last_activity", F.datediff(F.col("event_date"), last_activity))
    )
    return out.drop("_current", "_ts", "_ord", "_prev_ts", "_prev_loc_ts", "_prev_lat", "_prev_lon")
