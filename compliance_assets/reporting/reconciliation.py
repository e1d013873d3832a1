"""reconciliation_report and reconciliation_breaks: the core ledger's booked transactions against the pipeline.

For a delivery day D, the system-of-record file (landing/system_of_record/D.csv) lists every
transaction booked for delivery on D. Each is matched by transaction_id with silver (delivered on
D), gold (scored) and the DLQ (rejected on D). Every difference is a break row with a category;
explained ones (rejected into the DLQ, a dropped duplicate copy, delivered on an earlier day) are
kept for the record, unexplained ones (missing, extra, amount mismatch, not scored) fail the check.
The report holds counts and amount totals per currency and category.
"""

import datetime as dt
import functools

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    asset_check,
    multi_asset,
)
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ml.features_training import delivery_rows
from compliance_assets.operations.audit import audited
from compliance_assets.ingest.reference_data import load_reference_csv
from partitions import daily_partitions
from resources.lake import LakeResource
from catalog import BRONZE, DLQ, Days, GOLD, RECONCILIATION_BREAKS, RECONCILIATION_REPORT, SILVER

DEADLINE_HOUR_UTC = 6  # T+1 06:00 UTC (runbook: reconciliation completed before T+1 06:00)

# categories: (explained?, what it means)
MATCHED, LATE = "MATCHED", "LATE_ARRIVAL"
LEDGER, SILVER_TOTAL, GOLD_TOTAL = "LEDGER", "SILVER", "GOLD"
CATEGORIES = {
    "MISSING": (False, "booked in the ledger, not delivered (not in bronze, silver or the DLQ)"),
    "EXTRA": (False, "in silver but not booked in the ledger for this day"),
    "AMOUNT_MISMATCH": (False, "amount or currency in silver differs from the ledger"),
    "NOT_SCORED": (False, "in silver but has no risk score in gold"),
    "SCORED_NOT_IN_SILVER": (False, "a gold row of the day with no silver row"),
    "REJECTED": (True, "delivered but rejected into the DLQ (reason in detail)"),
    "DELIVERED_EARLIER": (True, "already delivered and validated on an earlier day"),
    "DUPLICATE_DROPPED": (True, "an extra copy of a delivered transaction, dropped by deduplication"),
    "REJECTED_NOT_IN_LEDGER": (True, "a DLQ record whose transaction is not booked for this day (or has no readable id)"),
}

BREAKS_SCHEMA = T.StructType(
    [
        T.StructField("event_date", T.DateType(), False),
        T.StructField("transaction_id", T.StringType()),
        T.StructField("category", T.StringType(), False),
        T.StructField("explained", T.BooleanType(), False),
        T.StructField("detail", T.StringType()),
        T.StructField("currency", T.StringType()),
        T.StructField("ledger_amount", T.DecimalType(18, 2)),
        T.StructField("silver_amount", T.DecimalType(18, 2)),
        T.StructField("copies", T.LongType()),
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("reconciled_at", T.TimestampType()),
    ]
)
REPORT_SCHEMA = T.StructType(
    [
        T.StructField("event_date", T.DateType(), False),
        T.StructField("currency", T.StringType()),
        T.StructField("category", T.StringType(), False),
        T.StructField("explained", T.BooleanType()),
        T.StructField("transactions", T.LongType(), False),
        T.StructField("amount", T.DecimalType(28, 2)),
        T.StructField("first_reconciled_at", T.TimestampType(), False),
        T.StructField("deadline", T.TimestampType(), False),
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("reconciled_at", T.TimestampType(), False),
    ]
)
ID_IN_PAYLOAD = r'"transaction_id"\s*:\s*"([^"]+)"'


def deadline_for(day: str) -> dt.datetime:
    """When day D's reconciliation must be complete: D+1 06:00 UTC (naive UTC)."""
    return dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(DEADLINE_HOUR_UTC))


def deadline_of(day: F.Column) -> F.Column:
    """deadline_for, for a date column (the session's time zone is UTC)."""
    return day.cast("timestamp") + F.expr(f"INTERVAL {24 + DEADLINE_HOUR_UTC} HOURS")


def ledger_rows(spark: SparkSession, lake: LakeResource, day: str) -> DataFrame:
    """The day's system-of-record file, typed by contracts/reference/system_of_record.schema.json."""
    path = lake.landing_path("system_of_record", f"{day}.csv")
    if not lake.path_exists(spark, path):
        raise FileNotFoundError(f"No system-of-record file for {day}: expected {path}")
    return load_reference_csv(spark, path, "system_of_record")


def exact_sum(amount: F.Column) -> F.Column:
    """The sum of a decimal(18,2) column as decimal(28,2), added up in cents as 64-bit integers: exact, and without
    Spark's BigDecimal arithmetic for a sum wider than 18 digits (an overflow past 9.2e16 units fails the query)."""
    return (F.sum((amount * 100).cast("long")).cast("decimal(28,0)") / 100).cast("decimal(28,2)")


def reconcile(spark: SparkSession, lake: LakeResource, days: Days, run_id: str | None) -> tuple[DataFrame, DataFrame]:
    """(breaks, report) for the delivery days `days`, in one pass over the range (every row carries its
    delivery day, `_day`); both persisted, the caller unpersists them."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    day = F.col("_day")

    ledger = functools.reduce(DataFrame.unionByName, [
        ledger_rows(spark, lake, key).select(F.lit(key).cast("date").alias("_day"), "transaction_id", F.col("amount").alias("ledger_amount"), F.col("currency").alias("ledger_currency"))
        for key in days.keys
    ])
    silver = delivery_rows(spark, lake, days.keys[0], days.keys[-1]).select(
        F.col("ingest_date").alias("_day"), "transaction_id", "event_date", F.col("amount").alias("silver_amount"), F.col("currency").alias("silver_currency")
    )
    dlq = lake.read_days(spark, DLQ, days).select(
        F.col("event_date").alias("_day"),
        F.coalesce("transaction_id", F.nullif(F.regexp_extract("payload", ID_IN_PAYLOAD, 1), F.lit(""))).alias("transaction_id"), "primary_reason",
    )
    rejected = dlq.where(F.col("transaction_id").isNotNull()).groupBy("_day", "transaction_id").agg(F.array_sort(F.collect_set("primary_reason")).alias("_reasons"))
    # per transaction: scored in gold, and the copies delivered (bronze lines naming it, the first
    # "transaction_id": "..." pair of the payload as the DLQ reads an unparsed record), in one aggregation
    keys = ["_day", "transaction_id"]
    gold = lake.read_days(spark, GOLD, days).select(F.col("ingest_date").alias("_day"), "transaction_id", F.lit(1).alias("_gold"), F.lit(0).alias("_copy"))
    copies = (
        lake.read_days(spark, BRONZE, days)
        .select(F.col("event_date").alias("_day"), F.nullif(F.regexp_extract("payload", ID_IN_PAYLOAD, 1), F.lit("")).alias("transaction_id"), F.lit(0).alias("_gold"), F.lit(1).alias("_copy"))
        .where(F.col("transaction_id").isNotNull())
    )
    counted = gold.unionByName(copies).groupBy(*keys).agg(
        (F.max("_gold") == 1).alias("_scored"), F.sum("_copy").alias("_copies")
    ).withColumn("_copies", F.nullif("_copies", F.lit(0)))
    delivered = (
        ledger.join(silver, keys, "full_outer")
        .join(counted, keys, "full_outer")
        .where(F.col("ledger_amount").isNotNull() | F.col("silver_amount").isNotNull() | F.col("_scored"))  # not a copy alone
        .join(F.broadcast(rejected), keys, "left")
        .persist()
    )
    # delivered and validated on an earlier day: silver rows of this id delivered before the row's day, with an
    # event date that day's deduplication reads (40 days back); asked only for the few ids absent from their
    # day's silver and not rejected, so the history is filtered against a broadcast of them
    asking = delivered.where(F.col("silver_amount").isNull() & F.col("_reasons").isNull()).select(*keys)
    history = (
        lake.read(spark, SILVER)
        .where((F.col("ingest_date") < F.lit(days.last)) & (F.col("event_date") >= F.lit(days.first - dt.timedelta(days=40))))
        .select("transaction_id", F.col("ingest_date").alias("_before"), F.col("event_date").alias("_before_event"))
    )
    earlier = (
        history.join(F.broadcast(asking), "transaction_id")
        .where((F.col("_before") < day) & (F.col("_before_event") >= F.date_sub(day, 40)))
        .select(*keys).distinct().withColumn("_earlier", F.lit(True))
    )
    joined = (
        delivered.join(F.broadcast(earlier), keys, "left")
        .withColumn("_in_ledger", F.col("ledger_amount").isNotNull())
        .withColumn("_in_silver", F.col("silver_amount").isNotNull())
        .withColumn("_scored", F.coalesce("_scored", F.lit(False)))
    )
    detail_reasons = F.concat(F.lit("DLQ: "), F.array_join("_reasons", ", "))
    status = (
        F.when(F.col("_in_ledger") & F.col("_in_silver") & ((F.col("ledger_amount") != F.col("silver_amount")) | (F.col("ledger_currency") != F.col("silver_currency"))), "AMOUNT_MISMATCH")
        .when(F.col("_in_ledger") & F.col("_in_silver"), MATCHED)
        .when(F.col("_in_ledger") & F.col("_reasons").isNotNull(), "REJECTED")
        .when(F.col("_in_ledger") & F.coalesce("_earlier", F.lit(False)), "DELIVERED_EARLIER")
        .when(F.col("_in_ledger"), "MISSING")
        .when(F.col("_in_silver"), "EXTRA")
        .when(F.coalesce("_earlier", F.lit(False)) & F.col("_copies").isNotNull() & F.col("_reasons").isNull(), "DELIVERED_EARLIER")
        .when(F.col("_reasons").isNotNull(), "REJECTED_NOT_IN_LEDGER")
    )
    classified = joined.withColumn("category", status)
    explained = F.create_map(*[x for k, (e, _) in CATEGORIES.items() for x in (F.lit(k), F.lit(e))])
    base = F.struct(day.alias("event_date"), "transaction_id", F.col("category"), explained[F.col("category")].alias("explained"))
    per_txn = classified.where(F.col("category").isNotNull() & (F.col("category") != MATCHED)).select(
        base.alias("b"),
        F.when(F.col("category") == "AMOUNT_MISMATCH", F.format_string("ledger %s %s, silver %s %s", "ledger_amount", "ledger_currency", "silver_amount", "silver_currency"))
        .when(F.col("category").isin("REJECTED", "REJECTED_NOT_IN_LEDGER"), detail_reasons)
        .otherwise(F.lit(None)).alias("detail"),
        F.coalesce("ledger_currency", "silver_currency").alias("currency"), "ledger_amount", "silver_amount", F.col("_copies").alias("copies"),
    )
    not_scored = classified.where(F.col("_in_silver") & ~F.col("_scored")).select(
        F.struct(day.alias("event_date"), "transaction_id", F.lit("NOT_SCORED").alias("category"), F.lit(False).alias("explained")).alias("b"),
        F.lit(None).cast("string").alias("detail"), F.col("silver_currency").alias("currency"), "ledger_amount", "silver_amount", F.col("_copies").alias("copies"),
    )
    scored_extra = classified.where(F.col("_scored") & ~F.col("_in_silver")).select(
        F.struct(day.alias("event_date"), "transaction_id", F.lit("SCORED_NOT_IN_SILVER").alias("category"), F.lit(False).alias("explained")).alias("b"),
        F.lit(None).cast("string").alias("detail"), F.lit(None).cast("string").alias("currency"), "ledger_amount", "silver_amount", F.col("_copies").alias("copies"),
    )
    duplicates = classified.where(F.col("_copies") > 1).select(
        F.struct(day.alias("event_date"), "transaction_id", F.lit("DUPLICATE_DROPPED").alias("category"), F.lit(True).alias("explained")).alias("b"),
        F.format_string("%d copies delivered, 1 kept", "_copies").alias("detail"), F.coalesce("ledger_currency", "silver_currency").alias("currency"),
        "ledger_amount", "silver_amount", F.col("_copies").alias("copies"),
    )
    unreadable = dlq.where(F.col("transaction_id").isNull()).select(
        F.struct(day.alias("event_date"), F.lit(None).cast("string").alias("transaction_id"), F.lit("REJECTED_NOT_IN_LEDGER").alias("category"), F.lit(True).alias("explained")).alias("b"),
        F.concat(F.lit("DLQ: "), F.col("primary_reason"), F.lit(" (no readable transaction_id)")).alias("detail"), F.lit(None).cast("string").alias("currency"),
        F.lit(None).cast("decimal(18,2)").alias("ledger_amount"), F.lit(None).cast("decimal(18,2)").alias("silver_amount"), F.lit(None).cast("long").alias("copies"),
    )
    breaks = (
        per_txn.unionByName(not_scored).unionByName(scored_extra).unionByName(duplicates).unionByName(unreadable)
        .select("b.*", "detail", "currency", "ledger_amount", "silver_amount", "copies")
        .withColumn("dagster_run_id", F.lit(run_id))
        .withColumn("reconciled_at", F.lit(now))
        .select(*BREAKS_SCHEMA.fieldNames())
        .persist()
    )

    # the ledger, silver, gold, matched and late totals from one pass: each row contributes to the totals it
    # belongs to (category, currency, amount), exploded and summed
    matched = F.col("category") == MATCHED
    contributions = [
        (F.col("_in_ledger"), LEDGER, "ledger_currency", "ledger_amount", None),
        (F.col("_in_silver"), SILVER_TOTAL, "silver_currency", "silver_amount", None),
        (F.col("_in_silver") & F.col("_scored"), GOLD_TOTAL, "silver_currency", "silver_amount", None),
        (matched, MATCHED, "ledger_currency", "ledger_amount", True),
        (matched & (F.col("event_date") < day), LATE, "ledger_currency", "ledger_amount", True),
    ]
    parts = F.array(*[
        F.when(member, F.struct(F.lit(category).alias("category"), F.lit(explained).cast("boolean").alias("explained"), F.col(currency).alias("currency"), F.col(amount).alias("amount")))
        for member, category, currency, amount, explained in contributions
    ])
    report = (
        classified.select(day.alias("event_date"), F.explode(parts).alias("t"))
        .where(F.col("t").isNotNull())
        .groupBy("event_date", "t.category", "t.explained", "t.currency")
        .agg(F.count(F.lit(1)).alias("transactions"), exact_sum(F.col("t.amount")).alias("amount"))
        .unionByName(
            breaks.groupBy("event_date", "currency", "category", "explained").agg(
                F.count(F.lit(1)).alias("transactions"), exact_sum(F.coalesce("ledger_amount", "silver_amount")).alias("amount")
            )
        )
        .withColumn("deadline", deadline_of(F.col("event_date")))
        .withColumn("dagster_run_id", F.lit(run_id))
        .withColumn("reconciled_at", F.lit(now))
    )
    # a re-run keeps when each day was first reconciled (the deadline is about that)
    first = lake.read_days(spark, RECONCILIATION_REPORT, days).groupBy("event_date").agg(F.min("first_reconciled_at").alias("_first")) \
        if lake.table_exists(spark, RECONCILIATION_REPORT) else spark.createDataFrame([], "event_date date, _first timestamp")
    report = (
        report.join(F.broadcast(first), "event_date", "left")
        .withColumn("first_reconciled_at", F.coalesce("_first", F.lit(now)))
        .select(*REPORT_SCHEMA.fieldNames()).persist()
    )
    breaks.count(), report.count()  # fill both caches while the delivered rows are cached, then let those go
    delivered.unpersist()
    return breaks, report


@multi_asset(
    name="reconcile_with_ledger",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    specs=[
        AssetSpec(
            RECONCILIATION_REPORT,
            deps=["ledger_files", SILVER, DLQ, BRONZE, GOLD],
            group_name="reporting",
            kinds={"spark", "delta"},
            description=(
                "Daily reconciliation of the core ledger (system-of-record file) with what the pipeline validated and scored: "
                "transaction counts and amount totals per currency for the ledger, silver and gold, and for each kind of "
                "difference (missing, extra, amount mismatch, not scored, rejected, duplicate, delivered earlier, late). "
                "Due before T+1 06:00 UTC."
            ),
            metadata={"partition_column": "event_date (delivery day)", "key": "event_date, currency, category"},
        ),
        AssetSpec(
            RECONCILIATION_BREAKS,
            deps=["ledger_files", SILVER, DLQ, BRONZE, GOLD],
            group_name="reporting",
            kinds={"spark", "delta"},
            description=(
                "One row per reconciliation difference of the delivery day: the transaction, the category, whether it is "
                "explained (e.g. rejected into the DLQ with its reason, a dropped duplicate) and the ledger and silver amounts."
            ),
            metadata={"partition_column": "event_date (delivery day)", "key": "event_date, transaction_id, category"},
        ),
    ],
)
@audited
def reconcile_with_ledger(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource):
    session = spark.spark_session
    days = Days.of(context.partition_keys)
    breaks, report = reconcile(session, lake, days, context.run_id)
    try:
        versions = {
            RECONCILIATION_BREAKS: lake.replace_days(breaks, RECONCILIATION_BREAKS, days),
            RECONCILIATION_REPORT: lake.replace_days(report, RECONCILIATION_REPORT, days),
        }
        report_rows = report.count()  # cached: (day, category, explained, currency) rows, which an empty write would not record
        totals = {r.category: r.n for r in report.groupBy("category").agg(F.sum("transactions").alias("n")).collect()}
        unexplained = {str(r.event_date): r["count"] for r in breaks.where(~F.col("explained")).groupBy("event_date").count().collect()}
    finally:
        breaks.unpersist()
        report.unpersist()
    for key in days.keys:
        context.log.info(f"reconciliation {key}: {unexplained.get(key, 0)} unexplained differences")
    unexplained_total = sum(unexplained.values())
    summary = markdown_table([{"category": k, "transactions": v, "explained": "" if k in (LEDGER, SILVER_TOTAL, GOLD_TOTAL) else CATEGORIES.get(k, (True,))[0]} for k, v in sorted(totals.items())])
    yield MaterializeResult(
        asset_key=RECONCILIATION_REPORT,
        metadata=delta_metadata(lake.table_path(RECONCILIATION_REPORT), versions[RECONCILIATION_REPORT], report_rows, REPORT_SCHEMA, categories=summary, unexplained_differences=unexplained_total),
    )
    yield MaterializeResult(asset_key=RECONCILIATION_BREAKS, metadata=delta_metadata(lake.table_path(RECONCILIATION_BREAKS), versions[RECONCILIATION_BREAKS], lake.rows_written(session, RECONCILIATION_BREAKS), BREAKS_SCHEMA))


@asset_check(
    asset=RECONCILIATION_REPORT,
    partitions_def=daily_partitions,
    additional_deps=[RECONCILIATION_BREAKS],
    description="Every difference between the ledger and silver/gold is explained (rejected with a reason, a dropped duplicate, delivered earlier); missing, extra, mismatched or unscored transactions fail it.",
)
def reconciliation_differences_explained(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    breaks = lake.read_days(spark.spark_session, RECONCILIATION_BREAKS, Days.of(context.partition_keys))
    unexplained = breaks.where(~F.col("explained"))
    counts = {r.category: r["count"] for r in unexplained.groupBy("category").count().collect()}
    examples = [r.transaction_id for r in unexplained.orderBy("category", "transaction_id").limit(10).collect()]
    explained = {r.category: r["count"] for r in breaks.where(F.col("explained")).groupBy("category").count().collect()}
    return AssetCheckResult(
        passed=not counts,
        metadata={
            "unexplained": markdown_table([{"category": k, "transactions": v, "meaning": CATEGORIES[k][1]} for k, v in sorted(counts.items())]),
            "explained": markdown_table([{"category": k, "transactions": v} for k, v in sorted(explained.items())]),
            "examples": ", ".join(examples) or "-",
        },
    )


@asset_check(
    asset=RECONCILIATION_REPORT,
    partitions_def=daily_partitions,
    description=f"The day was first reconciled before T+1 {DEADLINE_HOUR_UTC:02d}:00 UTC (runbook SLO). Reported as a warning for days first reconciled by a backfill.",
)
def reconciliation_before_deadline(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    rows = lake.read_days(spark.spark_session, RECONCILIATION_REPORT, Days.of(context.partition_keys)).groupBy("event_date").agg(
        F.min("first_reconciled_at").alias("first"), F.min("deadline").alias("deadline")
    ).collect()
    late = [r for r in rows if r.first > r.deadline]
    backfill = "dagster/backfill" in context.run.tags
    return AssetCheckResult(
        passed=not late and len(rows) == len(context.partition_keys),
        severity=AssetCheckSeverity.WARN if backfill else AssetCheckSeverity.ERROR,
        metadata={
            "days": markdown_table([{"day": str(r.event_date), "first_reconciled_at": f"{r.first:%Y-%m-%d %H:%M:%S}", "deadline": f"{r.deadline:%Y-%m-%d %H:%M}", "on_time": r.first <= r.deadline} for r in sorted(rows, key=lambda r: r.event_date)]),
            "missed": len(late),
        },
    )
