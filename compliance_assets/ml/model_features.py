"""The model's input features: one implementation for training, daily scoring and streaming.

Every feature is point-in-time correct. The per-account windows come from silver, which computes
them from earlier transactions only. Merchant risk uses confirmed outcomes that were decided
before the transaction's day, for transactions in trailing windows that end `label_delay_days`
before that day (outcomes arrive late, so the most recent days are always under-labelled).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from contracts import load_contract

MERCHANT_WINDOWS_DAYS = {"7d": 7, "30d": 30}
DEFAULT_LABEL_DELAY_DAYS = 2
CHANNELS = tuple(load_contract("transactions")["properties"]["channel"]["enum"])
KYC_RATING_LEVEL = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
KEY_COLUMNS = ("transaction_id", "event_time", "event_date", "account_id", "merchant_id")


def _silver_feature_exprs() -> dict[str, Column]:
    """SILVER_FEATURES as Spark expressions over silver columns."""
    amount = F.col("amount_base").cast("double")
    rating = F.lit(None).cast("double")
    for level, value in KYC_RATING_LEVEL.items():
        rating = F.when(F.col("kyc_risk_rating") == level, F.lit(float(value))).otherwise(rating)
    exprs = {
        "amount_base": amount,
        **{c: F.col(c) for c in WINDOW_FEATURES},
        "amount_to_single_limit": amount / F.col("single_transaction_limit").cast("double"),
        "amount_to_reporting_threshold": amount / F.col("reporting_threshold").cast("double"),
        "hour_of_day": F.hour("event_time"),
        "is_weekend": F.dayofweek("event_time").isin(1, 7),
        "is_cross_border": F.col("country") != F.col("home_country"),
        "merchant_abroad": F.col("merchant_country") != F.col("home_country"),
        "account_age_days": F.datediff(F.col("event_date"), F.col("account_opened_date")),
        "kyc_risk_level": rating,
        "pep_flag": F.col("pep_flag"),
        "exceeds_single_limit": F.col("exceeds_single_limit"),
        "just_below_reporting_threshold": F.col("just_below_reporting_threshold"),
        "watchlist_hit": F.col("watchlist_hit"),
        **{f"channel_{c.lower()}": F.col("channel") == c for c in CHANNELS},
    }
    assert tuple(exprs) == SILVER_FEATURES
    return exprs


WINDOW_FEATURES = (
    "txn_count_1h", "txn_count_24h", "txn_count_7d", "txn_count_30d",
    "amount_sum_1h", "amount_sum_24h", "amount_sum_7d", "amount_sum_30d",
    "amount_avg_30d_prior", "amount_to_avg_30d", "amount_to_typical",
    "distance_from_home_km", "delivery_distance_km", "seconds_since_prev_txn",
    "distance_from_prev_km", "travel_speed_kmh", "days_since_last_activity",
)
SILVER_FEATURES = (
    "amount_base", *WINDOW_FEATURES, "amount_to_single_limit", "amount_to_reporting_threshold", "hour_of_day", "is_weekend",
    "is_cross_border", "merchant_abroad", "account_age_days", "kyc_risk_level", "pep_flag", "exceeds_single_limit",
    "just_below_reporting_threshold", "watchlist_hit", *[f"channel_{c.lower()}" for c in CHANNELS],
)
MERCHANT_FEATURES = (
    *[f"merchant_bad_share_{w}" for w in MERCHANT_WINDOWS_DAYS],
    *[f"merchant_bad_count_{w}" for w in MERCHANT_WINDOWS_DAYS],
)
MODEL_FEATURES = (*SILVER_FEATURES, *MERCHANT_FEATURES)


def history_start(first_day: dt.date, label_delay_days: int) -> dt.date:
    """The earliest transaction day merchant risk looks at for transactions from `first_day` on."""
    return first_day - dt.timedelta(days=label_delay_days + max(MERCHANT_WINDOWS_DAYS.values()))


def merchant_risk(targets: DataFrame, silver_history: DataFrame, outcomes: DataFrame, label_delay_days: int) -> DataFrame:
    """(merchant_id, event_date) -> the share and count of confirmed-bad transactions at the merchant.

    For a transaction on day d and a window of W days: transactions at the merchant with event
    dates in [d - delay - W, d - delay) that were delivered before day d, counting a confirmed-bad
    outcome only when it was decided before day d. So the value is fixed before the day starts,
    and the stream and the daily batch agree whenever late records arrive. `silver_history` needs
    transaction_id, merchant_id, event_date and ingest_date for those days.
    """
    keys = targets.select("merchant_id", "event_date").where(F.col("merchant_id").isNotNull()).distinct()
    hist = silver_history.where(F.col("merchant_id").isNotNull()).select(
        "transaction_id", "merchant_id", F.col("event_date").alias("_txn_date"), F.col("ingest_date").alias("_delivered")
    )
    daily = hist.groupBy("merchant_id", "_txn_date", "_delivered").agg(F.count(F.lit(1)).alias("_txns"))
    bad = (
        hist.join(outcomes.where(F.col("label") == 1).select("transaction_id", F.to_date("decision_time").alias("_decided")), "transaction_id")
        .groupBy("merchant_id", "_txn_date", "_delivered", "_decided")
        .agg(F.count(F.lit(1)).alias("_bad"))
    )
    out = keys
    for name, days in MERCHANT_WINDOWS_DAYS.items():
        lo = F.date_sub(F.col("k.event_date"), label_delay_days + days)
        hi = F.date_sub(F.col("k.event_date"), label_delay_days)

        def in_window(h: str) -> Column:
            date_col = F.col(f"{h}._txn_date")
            return (date_col >= lo) & (date_col < hi) & (F.col(f"{h}._delivered") < F.col("k.event_date"))

        txns = (
            keys.alias("k")
            .join(daily.alias("h"), (F.col("k.merchant_id") == F.col("h.merchant_id")) & in_window("h"))
            .groupBy("k.merchant_id", "k.event_date")
            .agg(F.sum("_txns").alias("_n"))
        )
        bads = (
            keys.alias("k")
            .join(bad.alias("b"), (F.col("k.merchant_id") == F.col("b.merchant_id")) & in_window("b") & (F.col("b._decided") < F.col("k.event_date")))
            .groupBy("k.merchant_id", "k.event_date")
            .agg(F.sum("_bad").alias("_b"))
        )
        out = (
            out.join(txns, ["merchant_id", "event_date"], "left")
            .join(bads, ["merchant_id", "event_date"], "left")
            .withColumn(f"merchant_bad_count_{name}", F.coalesce("_b", F.lit(0)).cast("double"))
            .withColumn(f"merchant_bad_share_{name}", F.when(F.col("_n") > 0, F.coalesce("_b", F.lit(0)) / F.col("_n")).otherwise(F.lit(0.0)))
            .drop("_n", "_b")
        )
    return out


def model_feature_frame(silver_rows: DataFrame, risk_by_merchant_day: DataFrame, extra_columns: tuple[str, ...] = ()) -> DataFrame:
    """Key columns, `extra_columns` and every model feature as a double (null = unknown)."""
    exprs = _silver_feature_exprs()
    # one row per merchant and day: small, so broadcast instead of shuffling the day's transactions
    joined = silver_rows.join(F.broadcast(risk_by_merchant_day), ["merchant_id", "event_date"], "left")
    merchant = [F.coalesce(F.col(c), F.lit(0.0)).alias(c) for c in MERCHANT_FEATURES]
    return joined.select(
        *KEY_COLUMNS,
        *extra_columns,
        *[exprs[name].cast("double").alias(name) for name in SILVER_FEATURES],
        *merchant,
    )


def merchant_risk_between(targets: DataFrame, silver: DataFrame, outcomes: DataFrame, first_day: dt.date, last_day: dt.date, label_delay_days: int) -> DataFrame:
    """`merchant_risk` for targets with event dates in [first_day, last_day], reading only the
    silver days its windows can reach."""
    # the windows end label_delay_days before the transaction's day: later days are never read
    history_end = last_day - dt.timedelta(days=label_delay_days)
    history = silver.where((F.col("event_date") >= F.lit(history_start(first_day, label_delay_days))) & (F.col("event_date") < F.lit(history_end))).select(
        "transaction_id", "merchant_id", "event_date", "ingest_date"
    )
    return merchant_risk(targets, history, outcomes, label_delay_days)


def features_for(silver_rows: DataFrame, silver: DataFrame, outcomes: DataFrame, first_day: dt.date, last_day: dt.date, label_delay_days: int, extra_columns: tuple[str, ...] = ()) -> DataFrame:
    """Model features of `silver_rows` (event dates in [first_day, last_day]) with merchant risk
    from the `silver` table and the `outcomes` table."""
    risk = merchant_risk_between(silver_rows, silver, outcomes, first_day, last_day, label_delay_days)
    return model_feature_frame(silver_rows, risk, extra_columns)
