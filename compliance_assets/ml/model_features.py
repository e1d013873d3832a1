"""The model's input features: one implementation for training, daily scoring and streaming.

Every feature is point-in-time correct. The per-account windows come from silver, which computes
them from earlier transactions only. Merchant risk counts the confirmed-bad transactions at the
merchant in trailing windows that end `label_delay_days` before the transaction's day (outcomes
arrive late: the most recent days are always under-labelled), each from its decision time on, to
the second: an outcome decided at 10:00 counts for a transaction at 10:05, never for one at 09:55.
The delay is measured from the outcomes themselves (`measured_label_delay_days`). A feature whose
input a dataset does not have is null (missing), never an invented constant.
"""

from __future__ import annotations

import datetime as dt

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from compliance_assets.transforms.features import FEATURE_COLUMNS, MAX_WINDOW
from contracts import load_contract

MERCHANT_WINDOWS_DAYS = {"1d": 1, "7d": 7, "30d": 30}
RECENT_DECISION_DAYS = {"1d": 1, "7d": 7}  # confirmed-bad outcomes at the merchant decided within this much before the transaction
DEFAULT_LABEL_DELAY_DAYS = 2  # until outcomes exist to measure it from
LABEL_DELAY_QUANTILE = 0.9  # the delay by which this share of the confirmed-bad outcomes is decided
MAX_LABEL_DELAY_DAYS = 60
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
        "kyc_risk_level": rating,
        "pep_flag": F.col("pep_flag"),
        "exceeds_single_limit": F.col("exceeds_single_limit"),
        "just_below_reporting_threshold": F.col("just_below_reporting_threshold"),
        "watchlist_hit": F.col("watchlist_hit"),
        **{f"channel_{c.lower()}": F.col("channel") == c for c in CHANNELS},
    }
    assert tuple(exprs) == SILVER_FEATURES
    return exprs


# silver's behaviour features (transforms/features.py), all model inputs but the largest earlier amount itself:
# it enters as its ratio, amount_to_max_<window>
WINDOW_FEATURES = tuple(c for c in FEATURE_COLUMNS if c != f"amount_max_{MAX_WINDOW}_prior")
SILVER_FEATURES = (
    "amount_base", *WINDOW_FEATURES, "amount_to_single_limit", "amount_to_reporting_threshold", "hour_of_day", "is_weekend",
    "is_cross_border", "merchant_abroad", "kyc_risk_level", "pep_flag", "exceeds_single_limit",
    "just_below_reporting_threshold", "watchlist_hit", *[f"channel_{c.lower()}" for c in CHANNELS],
)
MERCHANT_FEATURES = (
    *[f"merchant_bad_share_{w}" for w in MERCHANT_WINDOWS_DAYS],
    *[f"merchant_bad_count_{w}" for w in MERCHANT_WINDOWS_DAYS],
    *[f"merchant_txn_count_{w}" for w in MERCHANT_WINDOWS_DAYS],
    *[f"merchant_bad_decided_{w}" for w in RECENT_DECISION_DAYS],
)
MODEL_FEATURES = (*SILVER_FEATURES, *MERCHANT_FEATURES)
# the one-row twins' feature names, formatted once
_CHANNEL_FEATURES = tuple((f"channel_{c.lower()}", c) for c in CHANNELS)
_RECENT_SPANS = tuple(dt.timedelta(days=days) for days in RECENT_DECISION_DAYS.values())


def _ne(a, b) -> float | None:
    return None if a is None or b is None else float(a != b)


def _float(v) -> float | None:
    return None if v is None else float(v)


def silver_feature_values(row: dict) -> dict[str, float | None]:
    """SILVER_FEATURES of one silver row (a dict of silver columns) as `_silver_feature_exprs` computes them: the
    real-time lane's twin (hour and weekday in UTC, the session time zone), every value a float or None."""
    get = row.get
    amount = float(row["amount_base"])
    t: dt.datetime = row["event_time"]
    single, threshold = get("single_transaction_limit"), get("reporting_threshold")
    channel, home = get("channel"), get("home_country")
    values = {
        "amount_base": amount,
        **{c: None if (v := get(c)) is None else float(v) for c in WINDOW_FEATURES},
        "amount_to_single_limit": float(amount / single) if single else None,
        "amount_to_reporting_threshold": float(amount / threshold) if threshold else None,
        "hour_of_day": float(t.hour),
        "is_weekend": float(t.weekday() >= 5),
        "is_cross_border": _ne(get("country"), home),
        "merchant_abroad": _ne(get("merchant_country"), home),
        "kyc_risk_level": None if get("kyc_risk_rating") not in KYC_RATING_LEVEL else float(KYC_RATING_LEVEL[row["kyc_risk_rating"]]),
        "pep_flag": _float(get("pep_flag")),
        "exceeds_single_limit": _float(get("exceeds_single_limit")),
        "just_below_reporting_threshold": _float(get("just_below_reporting_threshold")),
        "watchlist_hit": _float(get("watchlist_hit")),
        **{feature: None if channel is None else float(channel == c) for feature, c in _CHANNEL_FEATURES},
    }
    assert tuple(values) == SILVER_FEATURES
    return values


def merchant_feature_values(merchant_id: str | None, event_time: dt.datetime, risk) -> dict[str, float | None]:
    """MERCHANT_FEATURES of one transaction from its merchant's `merchant_risk` row (`risk`: an object with
    `txns`, `bad_decided` per window and `bad_recent`, or None): `_merchant_feature_exprs`' twin."""
    if merchant_id is None:
        return dict.fromkeys(MERCHANT_FEATURES)
    shares, counts, totals = [], [], []
    for name in MERCHANT_WINDOWS_DAYS:
        txns = risk.txns.get(name, 0) if risk else 0
        decided = risk.bad_decided.get(name, ()) if risk else ()
        known = sum(1 for t in decided if t < event_time) if decided else 0
        shares.append(known / txns if txns > 0 else None)
        counts.append(float(known))
        totals.append(float(txns))
    recent = risk.bad_recent if risk else ()
    decided_recently = [float(sum(1 for t in recent if since <= t < event_time)) if recent else 0.0
                        for since in (event_time - span for span in _RECENT_SPANS)]
    return dict(zip(MERCHANT_FEATURES, (*shares, *counts, *totals, *decided_recently), strict=True))


def history_start(first_day: dt.date, label_delay_days: int) -> dt.date:
    """The earliest transaction day merchant risk looks at for transactions from `first_day` on."""
    return first_day - dt.timedelta(days=label_delay_days + max(MERCHANT_WINDOWS_DAYS.values()))


def measured_label_delay_days(outcomes: DataFrame, transactions: DataFrame, quantile: float = LABEL_DELAY_QUANTILE) -> int | None:
    """Whole days by which `quantile` of the confirmed-bad outcomes were decided after their
    transaction (None without any): what the merchant-risk windows must leave out to be labelled.
    `transactions` needs transaction_id and event_time (silver)."""
    lag = F.unix_timestamp("decision_time") - F.unix_timestamp("event_time")
    bad = outcomes.where(F.col("label") == 1).groupBy("transaction_id").agg(F.min("decision_time").alias("decision_time"))
    days = bad.join(transactions.select("transaction_id", "event_time"), "transaction_id").select((lag / 86_400.0).alias("lag"))
    q = days.agg(F.percentile("lag", quantile)).first()[0]
    return None if q is None else min(max(math.ceil(q - 1e-9), 0), MAX_LABEL_DELAY_DAYS)


def merchant_risk(targets: DataFrame, silver_history: DataFrame, outcomes: DataFrame, label_delay_days: int) -> DataFrame:
    """(merchant_id, event_date) -> per window: the merchant's transactions and the decision times
    of its confirmed-bad ones, from which `model_feature_frame` counts, per transaction, the
    outcomes decided before its own time.

    For a transaction on day d and a window of W days: transactions at the merchant with event
    dates in [d - delay - W, d - delay) that were delivered before day d; a confirmed-bad outcome
    counts from its decision time on. So the stream and the daily batch agree whenever late records
    arrive. `silver_history` needs transaction_id, merchant_id, event_date and ingest_date for those days.
    """
    keys = targets.select("merchant_id", "event_date").where(F.col("merchant_id").isNotNull()).distinct()
    hist = silver_history.where(F.col("merchant_id").isNotNull()).select(
        "transaction_id", "merchant_id", F.col("event_date").alias("_txn_date"), F.col("ingest_date").alias("_delivered")
    )
    daily = hist.groupBy("merchant_id", "_txn_date", "_delivered").agg(F.count(F.lit(1)).alias("_txns"))
    # a transaction confirmed bad twice counts once, from its first such decision
    first_bad = outcomes.where(F.col("label") == 1).groupBy("transaction_id").agg(F.min("decision_time").alias("_decided"))
    bad = hist.join(first_bad, "transaction_id").select("merchant_id", "_txn_date", "_delivered", "_decided")
    out = keys
    for name, days in MERCHANT_WINDOWS_DAYS.items():
        lo = F.date_sub(F.col("k.event_date"), label_delay_days + days)
        hi = F.date_sub(F.col("k.event_date"), label_delay_days)

        def in_window(h: str) -> Column:
            date_col = F.col(f"{h}._txn_date")
            return (F.col("k.merchant_id") == F.col(f"{h}.merchant_id")) & (date_col >= lo) & (date_col < hi) & (F.col(f"{h}._delivered") < F.col("k.event_date"))

        txns = keys.alias("k").join(daily.alias("h"), in_window("h")).groupBy("k.merchant_id", "k.event_date").agg(F.sum("_txns").alias(f"_txns_{name}"))
        # decided before the end of day d: only those can precede one of the day's transactions
        decided = in_window("b") & (F.col("b._decided") < F.date_add(F.col("k.event_date"), 1).cast("timestamp"))
        bads = keys.alias("k").join(bad.alias("b"), decided).groupBy("k.merchant_id", "k.event_date").agg(F.collect_list("_decided").alias(f"_bad_decided_{name}"))
        out = out.join(txns, ["merchant_id", "event_date"], "left").join(bads, ["merchant_id", "event_date"], "left")
    # fresh confirmations, whatever the delay: any confirmed-bad transaction of the windows' span or later,
    # delivered before the day, decided in the longest recent span before the day's end
    longest = max(RECENT_DECISION_DAYS.values())
    recent = (F.col("k.merchant_id") == F.col("b.merchant_id")) & (F.col("b._txn_date") >= F.date_sub(F.col("k.event_date"), label_delay_days + max(MERCHANT_WINDOWS_DAYS.values())))
    recent &= (F.col("b._delivered") < F.col("k.event_date")) & (F.col("b._decided") >= F.date_sub(F.col("k.event_date"), longest).cast("timestamp"))
    recent &= F.col("b._decided") < F.date_add(F.col("k.event_date"), 1).cast("timestamp")
    fresh = keys.alias("k").join(bad.alias("b"), recent).groupBy("k.merchant_id", "k.event_date").agg(F.collect_list("_decided").alias("_bad_recent"))
    return out.join(fresh, ["merchant_id", "event_date"], "left")


def _merchant_feature_exprs() -> dict[str, Column]:
    """MERCHANT_FEATURES from `merchant_risk`'s columns and the transaction's event_time; null
    for a transaction without a merchant, share null where the window holds no transaction.
    `merchant_bad_decided_<w>`: confirmed-bad transactions at the merchant decided in [t - w, t), so an
    investigator's confirmation counts at once, whatever the usual delay."""
    exprs = {}
    has_merchant = F.col("merchant_id").isNotNull()
    for name in MERCHANT_WINDOWS_DAYS:
        txns = F.coalesce(F.col(f"_txns_{name}"), F.lit(0))
        known = F.size(F.filter(F.coalesce(F.col(f"_bad_decided_{name}"), F.array().cast("array<timestamp>")), lambda t: t < F.col("event_time")))
        exprs[f"merchant_bad_share_{name}"] = F.when(has_merchant & (txns > 0), known / txns)
        exprs[f"merchant_bad_count_{name}"] = F.when(has_merchant, known)
        exprs[f"merchant_txn_count_{name}"] = F.when(has_merchant, txns)
    recent = F.coalesce(F.col("_bad_recent"), F.array().cast("array<timestamp>"))
    for name, days in RECENT_DECISION_DAYS.items():
        since = F.col("event_time") - F.expr(f"INTERVAL {days} DAYS")
        exprs[f"merchant_bad_decided_{name}"] = F.when(has_merchant, F.size(F.filter(recent, lambda t: (t < F.col("event_time")) & (t >= since))))
    return {name: exprs[name] for name in MERCHANT_FEATURES}


def with_merchant_features(rows: DataFrame, risk_by_merchant_day: DataFrame) -> DataFrame:
    """`rows` (merchant_id, event_date, event_time, ...) with MERCHANT_FEATURES added from `merchant_risk`."""
    exprs = _merchant_feature_exprs()
    # one row per merchant and day: small, so broadcast instead of shuffling the day's transactions
    joined = rows.join(F.broadcast(risk_by_merchant_day), ["merchant_id", "event_date"], "left")
    return joined.select(*rows.columns, *[exprs[name].cast("double").alias(name) for name in MERCHANT_FEATURES])


def model_feature_frame(silver_rows: DataFrame, risk_by_merchant_day: DataFrame, extra_columns: tuple[str, ...] = ()) -> DataFrame:
    """Key columns, `extra_columns` and every model feature as a double (null = unknown)."""
    exprs = _silver_feature_exprs()
    joined = with_merchant_features(silver_rows, risk_by_merchant_day)
    return joined.select(*KEY_COLUMNS, *extra_columns, *[exprs[name].cast("double").alias(name) for name in SILVER_FEATURES], *MERCHANT_FEATURES)


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
