"""transactions_silver, transactions_dlq and dq_results: one validation pass over a day's bronze.

Every bronze record ends in exactly one place: silver (valid, first copy), the DLQ (rejected,
with reason codes) or the duplicate count in dq_results. Silver rows sit in the Delta partition of
their own event date (late arrivals included); re-materialising a day replaces exactly the rows
of that delivery in all three tables.
"""


import datetime as dt
import time
from collections import Counter

from dagster import AssetExecutionContext, AssetSpec, BackfillPolicy, Config, MaterializeResult, multi_asset
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.transforms.enrichment import fx_lookup
from compliance_assets.transforms.features import HISTORY_COLUMNS
from compliance_assets.transforms.pipeline import (
    DEFAULT_LATENESS_DAYS,
    REJECT,
    ReferenceFrames,
    batch_tallies,
    check_batch,
    dlq_frame,
    duplicate_ingest_ids,
    history_window,
    rule_counts,
    silver_frame,
)
from compliance_assets.transforms.quality import DQ_RESULTS_SCHEMA, dq_result_rows
from contracts import REFERENCE_TABLES
from compliance_assets.ops.audit import record_operation, require_replay_tags
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.masking import PiiMaskingResource

SILVER, DLQ, DQ = "transactions_silver", "transactions_dlq", "dq_results"
REFERENCE_DEPS = list(REFERENCE_TABLES)

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


class SilverConfig(Config):
    lateness_days: int = Field(default=DEFAULT_LATENESS_DAYS, description="Records whose event date is more than this many days before the delivery go to the DLQ (ARRIVED_TOO_LATE).")


def reference_frames(spark: SparkSession, lake: LakeResource, day: str, lateness_days: int, latest_available: bool = False) -> ReferenceFrames:
    """The reference snapshots of the delivery day (FX for the whole lateness window).

    With `latest_available` (the stream, which cannot wait for the day's snapshots) each table's
    newest snapshot up to the day is used instead.
    """
    d = dt.date.fromisoformat(day)

    def snapshot(table: str):
        rows = lake.read(spark, table)
        if not latest_available:
            return rows.where(F.col("event_date") == F.lit(d))
        newest = rows.where(F.col("event_date") <= F.lit(d)).agg(F.max("event_date")).collect()[0][0]
        return rows.where(F.col("event_date") == F.lit(newest or d))

    fx = lake.read(spark, "fx_rates").where(F.col("event_date").between(F.lit(d - dt.timedelta(days=lateness_days)), F.lit(d)))
    return ReferenceFrames(
        kyc=snapshot("kyc_profiles"),
        limits=snapshot("account_limits"),
        fx=fx_lookup(fx, d - dt.timedelta(days=lateness_days), d),
        merchants=snapshot("merchant_profiles"),
        watchlists=snapshot("watchlists"),
    )


@multi_asset(
    name="validate_transactions",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    specs=[
        AssetSpec(
            SILVER,
            deps=["transactions_bronze", *REFERENCE_DEPS],
            group_name="ingest",
            kinds={"spark", "delta"},
            description=(
                "Validated transactions: parsed and typed by the contract, deduplicated on transaction_id, "
                "amounts normalised to EUR, enriched with KYC, limits, merchant and watchlist hits, with "
                "per-account behaviour features (1h/24h/7d/30d counts and amounts, amount vs history, distance "
                "from home, travel speed). Names and free text are masked. Partitioned by event date; "
                "late arrivals carry is_late_arrival."
            ),
            metadata={"partition_column": "event_date", "key": "transaction_id, event_time"},
        ),
        AssetSpec(
            DLQ,
            deps=["transactions_bronze", *REFERENCE_DEPS],
            group_name="ingest",
            kinds={"spark", "delta"},
            description="Dead-letter queue: every rejected record with its raw payload and all its reason codes (e.g. MALFORMED_JSON, UNKNOWN_CURRENCY, MISSING_REQUIRED_FIELD:amount). Nothing is dropped silently.",
            metadata={"partition_column": "event_date (delivery day)", "key": "ingest_id"},
        ),
        AssetSpec(
            DQ,
            deps=["transactions_bronze", *REFERENCE_DEPS],
            group_name="ingest",
            kinds={"spark", "delta"},
            description="Data-quality results per delivery day and rule: records checked, failed, pass rate and severity. Critical rules under 95% block downstream scoring.",
            metadata={"partition_column": "event_date", "key": "event_date, rule_id"},
        ),
    ],
)
def validate_transactions(
    context: AssetExecutionContext,
    config: SilverConfig,
    spark: PySparkResource,
    lake: LakeResource,
    masking: PiiMaskingResource,
):
    session = spark.spark_session
    require_replay_tags(context)
    totals = {SILVER: 0, DLQ: 0, DQ: 0}
    versions: dict[str, int] = {}
    last = {}
    for key in context.partition_keys:
        started = time.perf_counter()

        def phase(name: str) -> None:
            context.log.info(f"{key}: {name} done at {time.perf_counter() - started:.1f}s")

        bronze = lake.read(session, "transactions_bronze").where(F.col("event_date") == F.lit(key).cast("date"))
        refs = reference_frames(session, lake, key, config.lateness_days)
        batch = check_batch(bronze, refs, key, config.lateness_days)
        try:
            batch_counts, sizes = batch_tallies(batch)
            batch_size, n_valid = sizes["records"], sizes["valid"]
            phase("validation and reference checks")
            first_day, _ = history_window(key, config.lateness_days)
            prior = lake.read_or_empty(session, SILVER, HISTORY_SCHEMA).where(F.col("event_date") >= F.lit(first_day)).where(F.col("ingest_date") < F.lit(key).cast("date"))
            duplicates = duplicate_ingest_ids(batch, prior).cache()
            n_dup = duplicates.count()
            phase("duplicate detection")

            versions[DLQ] = lake.replace_where(dlq_frame(batch, context.run_id, masking.salt), DLQ, f"event_date = '{key}'")
            phase("DLQ write")
            silver = silver_frame(batch, refs, duplicates, prior.select(*HISTORY_COLUMNS), masking.salt, context.run_id)
            versions[SILVER] = lake.replace_where(silver, SILVER, f"ingest_date = '{key}'")
            phase("silver write (features, enrichment)")

            counts = rule_counts(batch_counts, n_dup, n_valid)
            dq = session.createDataFrame(dq_result_rows(key, counts, context.run_id), DQ_RESULTS_SCHEMA)
            versions[DQ] = lake.replace_where(dq, DQ, f"event_date = '{key}'")
            phase("dq_results write")
            duplicates.unpersist()
        finally:
            batch.unpersist()

        # every record of the batch was rejected, dropped as a duplicate or written to silver
        n_dlq = batch_size - n_valid
        n_silver = n_valid - n_dup
        dlq_reasons = Counter()
        for rule, action, _, failed in counts:
            if action == REJECT and failed:
                dlq_reasons[rule.reason_code] += failed
        totals[SILVER] += n_silver
        totals[DLQ] += n_dlq
        totals[DQ] += len(counts)
        last = {
            "dlq_reasons": [{"reason_code": code, "records": n} for code, n in dlq_reasons.most_common()],
            "rules": [
                {"rule": r.rule_id, "severity": r.severity, "checked": c, "failed": f, "pass_rate": f"{(1 - f / c) if c else 1.0:.4f}"}
                for (r, _, c, f) in counts
                if f or r.severity == "critical"
            ],
            "duplicates": n_dup,
        }
        context.log.info(f"{key}: silver={n_silver} dlq={n_dlq} duplicates={n_dup}")

    for table in (SILVER, DLQ, DQ):
        record_operation(context, session, lake, table)
    silver_schema = lake.read(session, SILVER).schema
    yield MaterializeResult(
        asset_key=SILVER,
        metadata=delta_metadata(lake.table_path(SILVER), versions[SILVER], totals[SILVER], silver_schema, duplicates_dropped=last.get("duplicates", 0)),
    )
    yield MaterializeResult(
        asset_key=DLQ,
        metadata=delta_metadata(lake.table_path(DLQ), versions[DLQ], totals[DLQ], lake.read(session, DLQ).schema, reasons=markdown_table(last.get("dlq_reasons", []))),
    )
    yield MaterializeResult(
        asset_key=DQ,
        metadata=delta_metadata(lake.table_path(DQ), versions[DQ], totals[DQ], DQ_RESULTS_SCHEMA, rules=markdown_table(last.get("rules", []))),
    )
