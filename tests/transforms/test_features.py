"""Per-account behaviour features on tiny frames: what each window holds, to the second."""

import datetime as dt
from decimal import Decimal

from compliance_assets.transforms.features import behaviour_features
from compliance_assets.transforms.features import HISTORY_SCHEMA

CURRENT = "transaction_id string, account_id string, event_time timestamp, event_date date, ingest_date date, amount_base decimal(18,2), latitude double, longitude double, delivery_latitude double, delivery_longitude double"
T0 = dt.datetime(2026, 3, 10, 12, 0, 0)


def row(tid: str, account: str, at: dt.datetime, amount: str) -> tuple:
    return (tid, account, at, at.date(), at.date(), Decimal(amount), None, None, None, None)


def test_the_largest_earlier_amount_of_seven_days_and_the_ratio_to_it(spark):
    history = [
        # A: 900 exactly 7 days and one second before T0 is outside the window; 300 at exactly 7 days is inside
        row("A0", "A", T0 - dt.timedelta(days=7, seconds=1), "900.00"),
        row("A1", "A", T0 - dt.timedelta(days=7), "300.00"),
        row("A2", "A", T0 - dt.timedelta(days=1), "100.00"),
        row("Z0", "Z", T0 - dt.timedelta(days=2), "0.00"),  # a tiny amount rounded to 0.00 in the base currency
    ]
    current = [
        row("A3", "A", T0, "600.00"),
        row("A4", "A", T0 + dt.timedelta(seconds=1), "60.00"),  # A3 (600) is earlier now
        row("B1", "B", T0, "50.00"),  # no earlier transaction: both null
        row("Z1", "Z", T0, "10.00"),  # the largest earlier amount is 0: no ratio
    ]
    hist = spark.createDataFrame([r[:5] + r[5:8] for r in history], HISTORY_SCHEMA)
    out = behaviour_features(spark.createDataFrame(current, CURRENT), hist).toPandas().set_index("transaction_id")
    assert out.loc["A3", "amount_max_7d_prior"] == 300.0 and out.loc["A3", "amount_to_max_7d"] == 2.0
    assert out.loc["A4", "amount_max_7d_prior"] == 600.0 and out.loc["A4", "amount_to_max_7d"] == 0.1
    assert out.loc["A3", "txn_count_7d"] == 3  # the same window as the counts: A1, A2 and itself
    assert out.loc[["B1"], ["amount_max_7d_prior", "amount_to_max_7d"]].isna().all(axis=None)
    assert out.loc["Z1", "amount_max_7d_prior"] == 0.0 and out.loc[["Z1"], ["amount_to_max_7d", "amount_to_avg_30d"]].isna().all(axis=None)
