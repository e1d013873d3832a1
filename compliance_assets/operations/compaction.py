"""Delta compaction: OPTIMIZE (with Z-ORDER on the columns analysts filter by) then VACUUM, per lake table.

Daily partition writes and micro-batches leave many small files; compacting them keeps reads fast and
VACUUM removes the replaced files once Delta's retention (7 days by default) has passed. Every run records
file counts and sizes before and after in the compaction_log Delta table.
"""

import datetime as dt
import logging
import time

from dagster import (
    AssetMaterialization,
    AssetSpec,
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from compliance_assets.metadata import markdown_table
from resources.lake import LakeResource
from catalog import COMPACTION_LOG, compacted
from catalog import table as catalog_table

# table -> the columns analysts filter by, clustered together with Z-ORDER (never partition columns)
ZORDER_COLUMNS: dict[str, tuple[str, ...]] = compacted()  # the catalog's compaction entries (write-once snapshots: bin-packing only)

MIN_RETENTION_HOURS = 168  # Delta's own default: readers and time travel within 7 days keep working
DATE_PARTITION_COLUMNS = ("event_date", "ingest_date")

LOG_SCHEMA = T.StructType(
    [
        T.StructField("compaction_id", T.StringType(), False),
        T.StructField("table", T.StringType(), False),
        T.StructField("zorder_by", T.StringType()),
        T.StructField("files_before", T.LongType()),
        T.StructField("bytes_before", T.LongType()),
        T.StructField("files_after", T.LongType()),
        T.StructField("bytes_after", T.LongType()),
        T.StructField("files_removed_by_vacuum", T.LongType()),
        T.StructField("delta_version_after", T.LongType()),
        T.StructField("retention_hours", T.LongType()),
        T.StructField("seconds", T.DoubleType()),
        T.StructField("dagster_run_id", T.StringType(), False),
        T.StructField("compacted_at", T.TimestampType(), False),
        T.StructField("event_date", T.DateType(), False),
    ]
)

_log = logging.getLogger(__name__)

compaction_log = AssetSpec(
    COMPACTION_LOG,
    group_name="operations",
    kinds={"delta"},
    description=(
        "One row per table per compaction run: files and bytes of the current snapshot before and after "
        "OPTIMIZE/Z-ORDER, data files deleted by VACUUM and the resulting Delta version. Evidence that storage "
        "housekeeping ran and what it changed; written by the lake_compaction job."
    ),
    metadata={"partition_column": "event_date (UTC day of the run)", "key": "compaction_id"},
)


def check_retention(retention_hours: int, allow_short_retention: bool = False) -> None:
    """Refuse a VACUUM retention under Delta's 7 days unless explicitly allowed: shorter breaks time travel and running readers."""
    if retention_hours < 0:
        raise ValueError(f"VACUUM retention must not be negative (got {retention_hours} hours).")
    if retention_hours < MIN_RETENTION_HOURS and not allow_short_retention:
        raise ValueError(
            f"VACUUM retention of {retention_hours} hours is below the safe minimum of {MIN_RETENTION_HOURS} hours (7 days): "
            "it can delete files that running queries and time travel still need. Set allow_short_retention=True to force it."
        )


def _snapshot_size(spark: SparkSession, lake: LakeResource, table: str) -> tuple[int, int]:
    """(number of files, total bytes) of the table's current snapshot, from Delta's table detail."""
    row = lake.detail(spark, table)
    return int(row["numFiles"] or 0), int(row["sizeInBytes"] or 0)


def usable_zorder_columns(spark: SparkSession, lake: LakeResource, table: str, zorder_by, log=None) -> list[str]:
    """The Z-ORDER columns that exist in the table and are not partition columns (others are skipped with a log line)."""
    log = log or _log
    partitions = set(lake.detail(spark, table)["partitionColumns"] or [])
    columns = set(lake.read(spark, table).columns)
    usable = []
    for column in zorder_by:
        if column not in columns:
            log.warning(f"{table}: Z-ORDER column {column!r} is not in the table schema; skipped.")
        elif column in partitions:
            log.warning(f"{table}: Z-ORDER column {column!r} is a partition column; skipped.")
        else:
            usable.append(column)
    return usable


def compact_table(spark: SparkSession, lake: LakeResource, table: str, zorder_by, retention_hours: int, partition_filter: str | None = None,
                  allow_short_retention: bool = False, log=None) -> dict:
    """OPTIMIZE (Z-ORDER when columns are given) then VACUUM one table, with file counts and bytes before and after."""
    check_retention(retention_hours, allow_short_retention)
    log = log or _log
    started = time.monotonic()
    files_before, bytes_before = _snapshot_size(spark, lake, table)
    columns = usable_zorder_columns(spark, lake, table, zorder_by, log)
    lake.optimize(spark, table, partition_filter, tuple(columns))
    on_disk_before = lake.data_files(spark, table)
    lake.vacuum(spark, table, retention_hours)
    on_disk_after = lake.data_files(spark, table)

    files_after, bytes_after = _snapshot_size(spark, lake, table)
    result = {
        "table": table,
        "zorder_by": ",".join(columns),
        "files_before": files_before,
        "bytes_before": bytes_before,
        "files_after": files_after,
        "bytes_after": bytes_after,
        "files_removed_by_vacuum": None if on_disk_before is None or on_disk_after is None else on_disk_before - on_disk_after,
        "delta_version_after": lake.version(spark, table),
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        f"{table}: {files_before} -> {files_after} files, {bytes_before} -> {bytes_after} bytes"
        f"{' (Z-ORDER ' + result['zorder_by'] + ')' if columns else ''}; VACUUM {retention_hours} h removed "
        f"{result['files_removed_by_vacuum']} data files; now v{result['delta_version_after']} ({result['seconds']} s)"
    )
    return result


def partition_filter_for_days(table: str, days: int, today: dt.date) -> str | None:
    """A predicate on the table's date partition column (from the catalog) for the last `days` days (today included);
    None for all partitions."""
    if days <= 0:
        return None
    partitions = [c for c in catalog_table(table).partition_by if c in DATE_PARTITION_COLUMNS]
    if not partitions:
        return None
    return f"{partitions[0]} >= '{(today - dt.timedelta(days=days - 1)).isoformat()}'"


def record_compactions(spark: SparkSession, lake: LakeResource, results: list[dict], retention_hours: int, run_id: str, now: dt.datetime) -> int:
    """Append the run's rows to compaction_log (a retried run does not add them twice); returns the log's Delta version."""
    rows = [
        (f"{run_id}:{r['table']}", r["table"], r["zorder_by"], r["files_before"], r["bytes_before"], r["files_after"], r["bytes_after"],
         r["files_removed_by_vacuum"], r["delta_version_after"], retention_hours, float(r["seconds"]), run_id, now, now.date())
        for r in results
    ]
    return lake.insert_new(spark.createDataFrame(rows, LOG_SCHEMA), COMPACTION_LOG, "compaction_id")


class CompactionConfig(Config):
    tables: list[str] = Field(default=list(ZORDER_COLUMNS), description="Tables to compact; those not written yet are skipped.")
    retention_hours: int = Field(default=MIN_RETENTION_HOURS, description="VACUUM retention: replaced files older than this are deleted (minimum 168 h).")
    allow_short_retention: bool = Field(default=False, description="Allow a retention under 168 h (breaks time travel to older versions; tests only).")
    days: int = Field(default=0, description="0 compacts every partition; N only the last N days (today included) of the date partition column.")


@op(description="OPTIMIZE (Z-ORDER on analysts' filter columns) and VACUUM each lake table, recording files and bytes before and after in compaction_log.")
def compact_lake(context: OpExecutionContext, config: CompactionConfig, spark: PySparkResource, lake: LakeResource) -> None:
    check_retention(config.retention_hours, config.allow_short_retention)
    session = spark.spark_session
    now = dt.datetime.now(dt.timezone.utc)
    results, skipped, failed = [], [], {}
    for table in config.tables:
        if not lake.table_exists(session, table):
            context.log.info(f"{table}: no Delta table at {lake.table_path(table)} yet; skipped.")
            skipped.append(table)
            continue
        try:  # one failing table must not keep the others from being compacted and logged
            partition_filter = partition_filter_for_days(table, config.days, now.date())
            if config.days > 0 and partition_filter is None:
                context.log.warning(f"{table}: no event_date/ingest_date partition column; days={config.days} ignored, all files compacted.")
            results.append(compact_table(session, lake, table, ZORDER_COLUMNS.get(table, ()), config.retention_hours, partition_filter,
                                         allow_short_retention=config.allow_short_retention, log=context.log))
        except Exception as exc:
            context.log.error(f"{table}: compaction failed: {exc}")
            failed[table] = exc
    metadata = {
        "tables_compacted": len(results),
        "tables_skipped": ", ".join(skipped) or "none",
        "tables_failed": ", ".join(failed) or "none",
        "files_before": sum(r["files_before"] for r in results),
        "files_after": sum(r["files_after"] for r in results),
        "bytes_before": sum(r["bytes_before"] for r in results),
        "bytes_after": sum(r["bytes_after"] for r in results),
        "files_removed_by_vacuum": sum(r["files_removed_by_vacuum"] or 0 for r in results),
        "retention_hours": config.retention_hours,
        "tables": markdown_table([
            {k: r[k] for k in ("table", "zorder_by", "files_before", "files_after", "bytes_before", "bytes_after", "files_removed_by_vacuum", "seconds")}
            for r in results
        ]),
    }
    if results:
        version = record_compactions(session, lake, results, config.retention_hours, context.run_id, now)
        metadata.update({"delta_path": MetadataValue.path(lake.table_path(COMPACTION_LOG)), "delta_version": version})
    context.log_event(AssetMaterialization(compaction_log.key, description="Lake compaction", metadata=metadata))
    if failed:
        raise Failure(
            f"Compaction failed for {', '.join(failed)} (the other tables were compacted and logged): "
            + "; ".join(f"{t}: {e}" for t, e in failed.items())
        ) from next(iter(failed.values()))


@job(
    name="lake_compaction",
    executor_def=in_process_executor,
    description=(
        "Compact the lake's Delta tables: OPTIMIZE small files (Z-ORDER on the columns analysts filter by), then VACUUM "
        "replaced files older than the retention (7 days by default). Before/after file counts go to compaction_log."
    ),
)
def compaction_job():
    compact_lake()


WEEKLY_DAYS = 8  # the week's partitions (and the day before): older ones were compacted by earlier runs

weekly_compaction_schedule = ScheduleDefinition(
    name="weekly_compaction_schedule",
    job=compaction_job,
    cron_schedule="0 4 * * 0",
    run_config={"ops": {"compact_lake": {"config": {"days": WEEKLY_DAYS}}}},
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Sunday 04:00 UTC: compact the last 8 days' partitions of every lake table and VACUUM files replaced more than 7 days ago, outside the daily ingest window.",
)

__all__ = ["ZORDER_COLUMNS", "compact_table", "compaction_job", "compaction_log", "weekly_compaction_schedule"]
