"""Point-in-time correctness of merchant risk: a transaction's features use only outcomes decided
before its own time (to the second), for transactions in windows that end the label delay before
its day; and the delay is measured from the outcomes."""

import datetime as dt

import pytest
from pyspark.sql import functions as F

from compliance_assets.ml.model_features import measured_label_delay_days, merchant_risk, with_merchant_features

DAY = dt.date(2026, 3, 10)
AT = "2026-03-10 09:00:00"  # the scored transaction's time
DELAY = 2
# transaction_id, merchant, event_date: t1..t5 at merchant M in the 7-day window [03-01, 03-08)
# (t6 is inside the delay, t7 at another merchant, t8 only in the 30-day window); each delivered
# the day after it happened
HISTORY = [
    ("t1", "M", "2026-03-05"), ("t2", "M", "2026-03-06"), ("t3", "M", "2026-03-02"), ("t4", "M", "2026-03-07"),
    ("t5", "M", "2026-03-03"), ("t6", "M", "2026-03-09"), ("t7", "N", "2026-03-05"), ("t8", "M", "2026-02-20"),
]


def risk(spark, outcomes: list[tuple], history_rows: list[tuple] | None = None, at: str = AT) -> dict:
    rows = [(*r, str(dt.date.fromisoformat(r[2]) + dt.timedelta(days=1))) if len(r) == 3 else r for r in history_rows or HISTORY]
    history = spark.createDataFrame(rows, "transaction_id string, merchant_id string, event_date string, ingest_date string").select(
        "transaction_id", "merchant_id", F.to_date("event_date").alias("event_date"), F.to_date("ingest_date").alias("ingest_date")
    )
    target = spark.createDataFrame([("M", DAY, at)], "merchant_id string, event_date date, event_time string").withColumn("event_time", F.to_timestamp("event_time"))
    labels = spark.createDataFrame(outcomes, "transaction_id string, label int, decision_time string").withColumn("decision_time", F.to_timestamp("decision_time"))
    rows = with_merchant_features(target, merchant_risk(target, history, labels, DELAY)).drop("event_time").collect()
    assert len(rows) == 1
    return rows[0].asDict()


@pytest.fixture
def outcomes():
    return [
        ("t1", 1, "2026-03-09 10:00:00"),  # decided the day before: counts
        ("t2", 1, "2026-03-10 09:30:00"),  # decided on the transaction's day, after it: not yet known
        ("t3", 0, "2026-03-04 00:00:00"),  # legitimate
        ("t6", 1, "2026-03-09 12:00:00"),  # transaction inside the delay: outside every window
        ("t7", 1, "2026-03-06 00:00:00"),  # another merchant
        ("t8", 1, "2026-02-25 00:00:00"),  # 30-day window only
    ]


def test_only_outcomes_decided_before_the_transaction_count(spark, outcomes):
    r = risk(spark, outcomes)
    assert r["merchant_bad_count_7d"] == 1 and r["merchant_bad_share_7d"] == pytest.approx(1 / 5)  # t1 of t1..t5
    assert r["merchant_bad_count_30d"] == 2 and r["merchant_bad_share_30d"] == pytest.approx(2 / 6)  # t1, t8 of t1..t5, t8
    assert r["merchant_txn_count_7d"] == 5 and r["merchant_txn_count_30d"] == 6
    # the 1-day window is 03-07: t4, not confirmed
    assert r["merchant_txn_count_1d"] == 1 and r["merchant_bad_count_1d"] == 0 and r["merchant_bad_share_1d"] == 0
    # decided in the last day / week before 03-10 09:00 (t6 is not: delivered only on the day)
    assert r["merchant_bad_decided_1d"] == 1 and r["merchant_bad_decided_7d"] == 1
    later = risk(spark, outcomes, at="2026-03-10 10:30:00")  # t2, decided 09:30, joins; t1 (03-09 10:00) leaves the last day
    assert later["merchant_bad_decided_1d"] == 1 and later["merchant_bad_decided_7d"] == 2


def test_an_outcome_counts_from_its_decision_time_to_the_second(spark, outcomes):
    """t2 is decided at 09:30 on the transaction's day: it counts for a transaction at 09:31, not at 09:29."""
    assert risk(spark, outcomes, at="2026-03-10 09:29:59")["merchant_bad_count_7d"] == 1
    assert risk(spark, outcomes, at="2026-03-10 09:30:00")["merchant_bad_count_7d"] == 1  # decided at the same second: not before
    r = risk(spark, outcomes, at="2026-03-10 09:31:00")
    assert r["merchant_bad_count_7d"] == 2 and r["merchant_bad_share_7d"] == pytest.approx(2 / 5)
    # a second positive decision of the same transaction does not count it twice
    assert risk(spark, outcomes + [("t1", 1, "2026-03-09 11:00:00")])["merchant_bad_count_7d"] == 1


def test_a_merchant_without_history_has_counts_and_no_share(spark, outcomes):
    r = risk(spark, [], history_rows=[("x", "N", "2026-03-05")])
    assert r["merchant_txn_count_7d"] == 0 and r["merchant_bad_count_7d"] == 0 and r["merchant_bad_share_7d"] is None


def test_the_label_delay_is_measured_from_the_outcomes(spark):
    txns = spark.createDataFrame(
        [(f"t{i}", f"2026-03-0{1 + i % 5} 12:00:00") for i in range(10)], "transaction_id string, event_time string"
    ).withColumn("event_time", F.to_timestamp("event_time"))
    # bad outcomes decided 1..10 days (and a few seconds) after their transaction; legitimate ones much later do not count
    decided = [(f"t{i}", 1, f"{(dt.datetime(2026, 3, 1 + i % 5, 12) + dt.timedelta(days=i + 1, seconds=5)):%Y-%m-%d %H:%M:%S}") for i in range(10)]
    decided += [("t0", 0, "2026-05-01 00:00:00")]
    outcomes = spark.createDataFrame(decided, "transaction_id string, label int, decision_time string").withColumn("decision_time", F.to_timestamp("decision_time"))
    assert measured_label_delay_days(outcomes, txns, 0.9) == 10  # 90% are decided within 9.1 days + 5 s -> 10 whole days
    assert measured_label_delay_days(outcomes, txns, 0.5) == 6
    assert measured_label_delay_days(outcomes.where("label = 0"), txns) is None


def test_a_label_decided_after_the_transaction_never_influences_its_features(spark, outcomes):
    base = risk(spark, outcomes)
    # every remaining transaction confirmed bad, but decided after the transaction's time
    later = [(t, 1, ts) for t, ts in (("t4", "2026-03-10 09:00:01"), ("t5", "2026-03-11 09:00:00"), ("t3", "2026-03-12 00:00:00"))]
    assert risk(spark, [o for o in outcomes if o[0] != "t3"] + later) == {**base}
    # the same labels decided a day earlier do count
    earlier = [(t, 1, "2026-03-09 00:00:00") for t in ("t4", "t5")]
    assert risk(spark, outcomes + earlier)["merchant_bad_count_7d"] == 3


def test_transactions_delivered_on_or_after_the_day_never_count(spark, outcomes):
    """A late record arriving on the transaction's day (or later) is not yet known at scoring time."""
    base = risk(spark, outcomes)
    late = [("t9", "M", "2026-03-04", "2026-03-10"), ("t10", "M", "2026-03-04", "2026-03-12")]
    assert risk(spark, outcomes + [("t9", 1, "2026-03-09 00:00:00")], HISTORY + late) == base
    on_time = [("t9", "M", "2026-03-04", "2026-03-09")]
    r = risk(spark, outcomes + [("t9", 1, "2026-03-09 00:00:00")], HISTORY + on_time)
    assert r["merchant_bad_count_7d"] == 2 and r["merchant_bad_share_7d"] == pytest.approx(2 / 6)
