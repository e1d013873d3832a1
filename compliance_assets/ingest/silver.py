"""transactions_silver, transactions_dlq and dq_results: one validation pass over the bronze of a
delivery day, or of a whole range of days at once.

Every bronze record ends in exactly one place: silver (valid, first copy), the DLQ (rejected,
with reason codes) or the duplicate count in dq_results. Silver rows sit in the Delta partition of
their own event date (late arrivals included); re-materialising a range replaces exactly the rows
of its deliveries in all three tables, each with one write. A range gives every row what runs of its
days one by one would give it (transforms/pipeline.py): rules, reference snapshots, duplicates and
behaviour features follow each row's own delivery day, and dq_results has one set of rows per day.
"""


import datetime as dt
import time
from collections import Counter

from dagster import AssetExecutionContext, AssetSpec, BackfillPolicy, Config, MaterializeResult, multi_asset
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ingest.reference_data import serving_snapshots, snapshot_days
from compliance_assets.transforms.enrichment import fx_lookup
from compliance_assets.transforms.features import HISTORY_COLUMNS, HISTORY_SCHEMA
from compliance_assets.transforms.pipeline import (
    DAY,
    DEFAULT_LATENESS_DAYS,
    REJECT,
    ReferenceFrames,
    check_batch,
    daily_tallies,
    dlq_frame,
    find_duplicates,
    history_window,
    rule_counts,
    silver_frame,
)
from compliance_assets.transforms.quality import DQ_RESULTS_SCHEMA, dq_result_rows
from contracts import REFERENCE_TABLES
from contracts.spark import struct_type
from compliance_assets.operations.audit import audited
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.masking import PiiMaskingResource
from catalog import BRONZE, DLQ, DQ_RESULTS, Days, SILVER

REFERENCE_DEPS = list(REFERENCE_TABLES)


class SilverConfig(Config):
    lateness_days: int = Field(default=DEFAULT_LATENESS_DAYS, description="Records whose event date is more than this many days before the delivery go to the DLQ (ARRIVED_TOO_LATE).")


def reference_frames(spark: SparkSession, lake: LakeResource, day: str, lateness_days: int, latest_available: bool = False) -> ReferenceFrames:
    """The reference snapshots that serve delivery `day` (`reference_frames_between` for that day alone).

    Each table's newest snapshot on or before the day serves it, for the daily batch and the stream
    alike, so `latest_available` (the stream's "do not wait for the day's snapshots") changes nothing.
    """
    return reference_frames_between(spark, lake, day, day, lateness_days)


def _days(first: str, last: str) -> list[dt.date]:
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]


def _snapshots_for(spark: SparkSession, lake: LakeResource, table: str, pairs: list[tuple[dt.date, dt.date]]) -> DataFrame:
    """The rows of `table`'s snapshots for (delivery day, snapshot day) pairs, each with its `ingest_date`."""
    if not pairs:
        extra = [T.StructField("event_date", T.DateType()), T.StructField("source_file", T.StringType()), T.StructField("ingest_date", T.DateType())]
        return spark.createDataFrame([], T.StructType([*struct_type(table).fields, *extra]))
    served = spark.createDataFrame(pairs, "ingest_date date, event_date date")
    rows = lake.read(spark, table).where(F.col("event_date").isin(sorted({s for _, s in pairs})))
    return rows.join(F.broadcast(served), "event_date")


def reference_frames_between(spark: SparkSession, lake: LakeResource, first: str, last: str, lateness_days: int) -> ReferenceFrames:
    """For every delivery day first..last (its `ingest_date`), each table's newest snapshot on or before the
    day (none: no rows, so its records are rejected as they would be against an empty table), and the
    FX rates for its event dates [day - lateness_days, day]: from the snapshots of that window (and the
    one serving its first day), the newest snapshot's rate where several carry one, chosen by
    `fx_lookup` (the date's own rate, else the nearest earlier, else the nearest later one)."""
    days = _days(first, last)

    def snapshots(table: str) -> DataFrame:
        serving = serving_snapshots(snapshot_days(spark, lake, table), [str(d) for d in days])
        return _snapshots_for(spark, lake, table, [(dt.date.fromisoformat(d), dt.date.fromisoformat(s)) for d, s in serving.items() if s])

    fx_days = [dt.date.fromisoformat(d) for d in snapshot_days(spark, lake, "fx_rates")]
    window_start = serving_snapshots([str(d) for d in fx_days], [str(d - dt.timedelta(days=lateness_days)) for d in days])
    visible = [
        (d, s) for d in days for s in fx_days
        if dt.date.fromisoformat(window_start[str(d - dt.timedelta(days=lateness_days))] or str(dt.date.min)) <= s <= d
    ]
    newest = Window.partitionBy("ingest_date", "currency", "rate_date").orderBy(F.col("event_date").desc())
    rates = _snapshots_for(spark, lake, "fx_rates", visible).withColumn("_rn", F.row_number().over(newest)).where("_rn = 1")
    # one lookup for every delivery day: the currency keyed by the day, then only the day's window kept
    keyed = rates.withColumn("currency", F.concat(F.date_format("ingest_date", "yyyy-MM-dd"), F.col("currency")))
    delivery = F.to_date(F.substring("currency", 1, DAY))
    fx = (
        fx_lookup(keyed, days[0] - dt.timedelta(days=lateness_days), days[-1])
        .withColumn("ingest_date", delivery)
        .where(F.col("event_date").between(F.date_sub("ingest_date", lateness_days), F.col("ingest_date")))
        .withColumn("currency", F.expr(f"substring(currency, {DAY + 1})"))
    )
    return ReferenceFrames(
        kyc=snapshots("kyc_profiles"),
        limits=snapshots("account_limits"),
        fx=fx,
        merchants=snapshots("merchant_profiles"),
        watchlists=snapshots("watchlists"),
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
            DQ_RESULTS,
            deps=["transactions_bronze", *REFERENCE_DEPS],
            group_name="ingest",
            kinds={"spark", "delta"},
            description="Data-quality results per delivery day and rule: records checked, failed, pass rate and severity. Critical rules under 95% block downstream scoring.",
            metadata={"partition_column": "event_date", "key": "event_date, rule_id"},
        ),
    ],
)
@audited
def validate_transactions(
    context: AssetExecutionContext,
    config: SilverConfig,
    spark: PySparkResource,
    lake: LakeResource,
    masking: PiiMaskingResource,
):
    session = spark.spark_session
    days = sorted(context.partition_keys)
    first, last = days[0], days[-1]
    started = time.perf_counter()

    def phase(name: str) -> None:
        context.log.info(f"{first}..{last}: {name} done at {time.perf_counter() - started:.1f}s")

    bronze = lake.read_days(session, BRONZE, Days.span(first, last))
    refs = reference_frames_between(session, lake, first, last, config.lateness_days)
    batch = check_batch(bronze, refs, first, config.lateness_days, last)
    versions: dict[str, int] = {}
    try:
        tallies = daily_tallies(batch)
        phase("validation and reference checks")
        # silver delivered before the range, with the event dates its first day's features and duplicate checks read
        history_first, _ = history_window(first, config.lateness_days)
        prior = lake.read_or_empty(session, SILVER, HISTORY_SCHEMA).where(F.col("event_date") >= F.lit(history_first)).where(F.col("ingest_date") < F.lit(first).cast("date"))
        duplicates = find_duplicates(batch, prior)
        phase("duplicate detection")

        versions[DLQ] = lake.replace_days(dlq_frame(batch, context.run_id, masking.salt), DLQ, Days.of(days))
        phase("DLQ write")
        silver = silver_frame(batch, refs, duplicates.ids, prior.select(*HISTORY_COLUMNS), masking.salt, context.run_id)
        # merge_schema: a silver table an older release wrote gains a new feature column (its rows read it as null)
        versions[SILVER] = lake.replace_days(silver, SILVER, Days.of(days), merge_schema=True)
        phase("silver write (features, enrichment)")

        counts = {day: rule_counts(day_counts, duplicates.per_day.get(day, 0), sizes["valid"]) for day, (day_counts, sizes) in tallies.items()}
        dq = session.createDataFrame([row for day in days for row in dq_result_rows(day, counts[day], context.run_id)], DQ_RESULTS_SCHEMA)
        versions[DQ_RESULTS] = lake.replace_days(dq, DQ_RESULTS, Days.of(days))
        phase("dq_results write")
    finally:
        batch.unpersist()

    # every record of the batch was rejected, dropped as a duplicate or written to silver
    totals = {SILVER: 0, DLQ: 0, DQ_RESULTS: 0}
    dlq_reasons: Counter = Counter()
    rules: dict[str, list] = {}
    for day in days:
        sizes = tallies[day][1]
        n_dup = duplicates.per_day.get(day, 0)
        totals[SILVER] += sizes["valid"] - n_dup
        totals[DLQ] += sizes["records"] - sizes["valid"]
        totals[DQ_RESULTS] += len(counts[day])
        for rule, action, checked, failed in counts[day]:
            if action == REJECT and failed:
                dlq_reasons[rule.reason_code] += failed
            entry = rules.setdefault(rule.rule_id, [rule, 0, 0])
            entry[1] += checked
            entry[2] += failed
        context.log.info(f"{day}: silver={sizes['valid'] - n_dup} dlq={sizes['records'] - sizes['valid']} duplicates={n_dup}")
    rule_rows = [
        {"rule": r.rule_id, "severity": r.severity, "checked": c, "failed": f, "pass_rate": f"{(1 - f / c) if c else 1.0:.4f}"}
        for r, c, f in rules.values()
        if f or r.severity == "critical"
    ]
    n_duplicates = sum(duplicates.per_day.values())

    silver_schema = lake.read(session, SILVER).schema
    yield MaterializeResult(
        asset_key=SILVER,
        metadata=delta_metadata(lake.table_path(SILVER), versions[SILVER], totals[SILVER], silver_schema, duplicates_dropped=n_duplicates),
    )
    yield MaterializeResult(
        asset_key=DLQ,
        metadata=delta_metadata(
            lake.table_path(DLQ), versions[DLQ], totals[DLQ], lake.read(session, DLQ).schema,
            reasons=markdown_table([{"reason_code": code, "records": n} for code, n in dlq_reasons.most_common()]),
        ),
    )
    yield MaterializeResult(
        asset_key=DQ_RESULTS,
        metadata=delta_metadata(lake.table_path(DQ_RESULTS), versions[DQ_RESULTS], totals[DQ_RESULTS], DQ_RESULTS_SCHEMA, rules=markdown_table(rule_rows)),
    )
