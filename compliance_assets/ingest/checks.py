"""Asset checks on silver, the DLQ and dq_results: conservation, contract, uniqueness, DQ gate."""


from dagster import AssetCheckResult, AssetCheckSeverity, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import functions as F

from compliance_assets.metadata import markdown_table
from compliance_assets.transforms.quality import CRITICAL_PASS_RATE, DUPLICATE, critical_failures
from contracts import load_contract
from contracts.pandera_schemas import pandera_errors, pandera_schema
from partitions import daily_partitions
from resources.lake import LakeResource
from catalog import BRONZE, DLQ, DQ_RESULTS, SILVER, Days


@asset_check(
    asset=SILVER,
    partitions_def=daily_partitions,
    additional_deps=[BRONZE, DLQ, DQ_RESULTS],
    description=(
        "Nothing lost: for each delivery, the records its files hold (counted from their raw bytes) = bronze "
        "records = silver rows + DLQ rows + duplicates dropped."
    ),
)
def silver_rows_conserved(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    days = Days.of(context.partition_keys)
    delivered, bronze = delivered_records(lake.read_days(session, BRONZE, days))
    silver = lake.read_days(session, SILVER, days).count()
    dlq = lake.read_days(session, DLQ, days).count()
    dup_row = lake.read_days(session, DQ_RESULTS, days).where(F.col("rule_id") == DUPLICATE.rule_id).agg(F.sum("failed")).collect()[0][0]
    duplicates = int(dup_row or 0)
    return AssetCheckResult(
        passed=delivered == bronze == silver + dlq + duplicates,
        metadata={
            "delivered": delivered, "bronze": bronze, "silver": silver, "dlq": dlq, "duplicates": duplicates,
            "not_read_into_bronze": delivered - bronze, "unaccounted": bronze - silver - dlq - duplicates,
        },
    )


def delivered_records(bronze):
    """(records the delivered files hold by their raw bytes, bronze rows): each file's own count once per
    delivery day (for an export split across days, the records assigned to that day), plus one per row
    from a source without files (a Kafka message)."""
    per_file = bronze.groupBy("event_date", "source", "source_file").agg(F.max("source_file_records").alias("records"), F.count("*").alias("rows"))
    totals = per_file.agg(F.sum(F.coalesce("records", "rows")).alias("delivered"), F.sum("rows").alias("bronze")).collect()[0]
    return int(totals.delivered or 0), int(totals.bronze or 0)


@asset_check(
    asset=BRONZE,
    partitions_def=daily_partitions,
    description=(
        "An export split across delivery days (a mapping's split_by) adds up: each day holds the records assigned to it, all "
        "its days were read from one version of the file, and together they are the records the file holds by its raw "
        "bytes. Fails as a warning while days of the export are not loaded yet, as an error when the days disagree."
    ),
)
def split_exports_add_up(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    bronze = lake.read(spark.spark_session, BRONZE)
    if "source_file_total_records" not in bronze.columns:  # a lake no split export was ever written to
        return AssetCheckResult(passed=True, metadata={"split_files": 0})
    bronze = bronze.where(F.col("source_file_total_records").isNotNull())
    touched = bronze.where(BRONZE.where(Days.of(context.partition_keys))).select("source", "source_file").distinct()
    days = bronze.join(touched, ["source", "source_file"], "left_semi").groupBy("source", "source_file", "event_date").agg(
        F.count(F.lit(1)).alias("rows"), F.max("source_file_records").alias("records"),
        F.min("source_file_total_records").alias("low"), F.max("source_file_total_records").alias("high"),
    )
    files = days.groupBy("source", "source_file").agg(
        F.sum("rows").alias("rows"), F.sum("records").alias("records"), F.min("low").alias("low"), F.max("high").alias("high"),
        F.sum((F.col("rows") != F.col("records")).cast("int")).alias("days_miscounted"),
    ).collect()
    broken = [f for f in files if f.days_miscounted or f.low != f.high or f.records > f.high]
    pending = [f for f in files if f not in broken and f.records < f.high]
    rows = [{"file": f"{f.source}:{f.source_file}", "loaded": f.records, "file_records": f.high, "versions_disagree": f.low != f.high} for f in broken + pending]
    return AssetCheckResult(
        passed=not broken and not pending,
        severity=AssetCheckSeverity.ERROR if broken else AssetCheckSeverity.WARN,
        metadata={
            "split_files": len(files), "files_inconsistent": len(broken), "files_with_days_not_loaded": len(pending),
            "records_not_loaded": sum(f.high - f.records for f in pending), "files": markdown_table(rows[:50]),
        },
    )


@asset_check(
    asset=SILVER,
    partitions_def=daily_partitions,
    blocking=True,
    additional_deps=[DQ_RESULTS],
    description=f"Every critical data-quality rule passes on at least {CRITICAL_PASS_RATE:.0%} of the day's records; otherwise downstream scoring is blocked.",
)
def critical_dq_rules_pass(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    dq = lake.read_days(spark.spark_session, DQ_RESULTS, Days.of(context.partition_keys))
    n_rules = dq.count()
    failures = critical_failures(dq)
    return AssetCheckResult(
        passed=n_rules > 0 and not failures,
        metadata={"rules_evaluated": n_rules, "critical_rules_below_threshold": markdown_table(failures), "threshold": CRITICAL_PASS_RATE},
    )


@asset_check(asset=SILVER, partitions_def=daily_partitions, description="Silver rows satisfy contracts/transactions.schema.json (pandera; masked PII columns exempt from value checks).")
def silver_matches_contract(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    contract = load_contract("transactions")
    df = lake.read_days(spark.spark_session, SILVER, Days.of(context.partition_keys))
    errors = pandera_errors(pandera_schema(contract, masked=True), df)
    return AssetCheckResult(passed=not errors, metadata={"pandera_errors": str(errors)[:4000] if errors else "none"})


@asset_check(asset=SILVER, partitions_def=daily_partitions, description="transaction_id is unique across silver in every event date this delivery touched.")
def silver_transaction_ids_unique(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    silver = lake.read(spark.spark_session, SILVER)
    touched = [r.event_date for r in silver.where(SILVER.where(Days.of(context.partition_keys))).select("event_date").distinct().collect()]
    dupes = silver.where(F.col("event_date").isin(touched)).groupBy("transaction_id").count().where("count > 1")
    n = dupes.count()
    return AssetCheckResult(passed=n == 0, metadata={"event_dates_checked": len(touched), "duplicated_ids": n})


@asset_check(asset=DLQ, partitions_def=daily_partitions, description="Every DLQ record carries at least one reason code and its raw payload reference (file, line).")
def dlq_rows_have_reason_codes(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    dlq = lake.read_days(spark.spark_session, DLQ, Days.of(context.partition_keys))
    bad = dlq.where((F.size("reason_codes") < 1) | F.col("source_file").isNull() | F.col("source_line").isNull()).count()
    return AssetCheckResult(passed=bad == 0, metadata={"rows_without_reason": bad})


@asset_check(asset=DQ_RESULTS, partitions_def=daily_partitions, description="Warning-severity rules: reported (WARN) when any passes on fewer than 95% of records.")
def warning_dq_rules_pass(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    dq = lake.read_days(spark.spark_session, DQ_RESULTS, Days.of(context.partition_keys))
    low = dq.where((F.col("severity") == "warning") & (F.col("pass_rate") < CRITICAL_PASS_RATE)).orderBy("pass_rate").collect()
    rows = [{"rule_id": r.rule_id, "checked": r.checked, "failed": r.failed, "pass_rate": round(r.pass_rate, 4)} for r in low]
    return AssetCheckResult(passed=not rows, severity=AssetCheckSeverity.WARN, metadata={"warning_rules_below_threshold": markdown_table(rows)})
