"""regulatory_exports: the day's risk scores and its current regulatory snapshot, handed over as Delta tables.

For delivery day D, two Delta tables in the file drop's export area (`exports/` of the
`FileDropResource`: a local folder, or `az://<container>/exports/...` in Azure Blob Storage):
- `exports/risk_scores_gold`: the gold rows scored for D (ingest_date = D), partitioned by ingest_date;
- `exports/regulatory_snapshots`: every row of D's newest snapshot version (the one in
  regulatory_snapshot_manifest), partitioned by period, with snapshot_version, so the recipient can
  recompute the manifest's SHA-256 (given in the metadata) from the rows.

Beside them, plain files through the drop resource (dagster-azure's AzureBlobStorageResource in Azure):
- `exports/snapshot_manifests/regulatory_snapshots_<D>.json`: the manifest entry of that snapshot version
  (row count, amount totals, SHA-256, reason, who, incident);
- `exports/reports/reconciliation_report_<D>.csv`: the day's reconciliation report, when the day was reconciled.

The tables are partitioned by the Dagster partition (the delivery day), not by event_date: a delivery holds
late arrivals of earlier event dates, and replacing "event_date = D" would drop or duplicate them.
Each run replaces D's partition in one delta-rs commit (overwrite with a predicate), so a re-export
leaves the same rows, and a superseding snapshot version replaces the old one in the export.

The rows travel Spark -> Arrow (collected to the driver) -> delta-rs, because Spark has no Blob
(wasb) driver set up and Azurite has no DFS endpoint for abfss://. A day of gold (~1M rows, ~15
columns with the top-features array) is a few hundred MB of Arrow; that fits the driver and
spark.driver.maxResultSize (1g by default). Days of several million rows need a larger
maxResultSize, or a Spark writer to abfss:// instead.
"""

import json

import pyarrow as pa
from dagster import AssetExecutionContext, BackfillPolicy, Failure, MaterializeResult, MetadataValue, asset
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from compliance_assets.metadata import markdown_table
from compliance_assets.reporting.snapshots import current_entry
from partitions import daily_partitions
from resources.file_drops import FileDropResource
from resources.lake import LakeResource, replace_rows
from catalog import GOLD, RECONCILIATION_REPORT, SNAPSHOTS, Days

ASSET = "regulatory_exports"
EXPORTS = "exports"
GOLD_EXPORT, SNAPSHOT_EXPORT = f"{EXPORTS}/{GOLD}", f"{EXPORTS}/{SNAPSHOTS}"
GOLD_KEY, SNAPSHOT_KEY = GOLD.day_column, SNAPSHOTS.day_column  # the delivery day in each table


def manifest_name(day: str) -> str:
    return f"{EXPORTS}/snapshot_manifests/{SNAPSHOTS}_{day}.json"


def report_name(day: str) -> str:
    return f"{EXPORTS}/reports/{RECONCILIATION_REPORT}_{day}.csv"


def export_files(spark: SparkSession, lake: LakeResource, file_drops: FileDropResource, day: str, entry) -> bool:
    """Write the snapshot's manifest entry (JSON) and, when the day was reconciled, its reconciliation report
    (CSV); returns whether a report was written."""
    file_drops.write_bytes(manifest_name(day), json.dumps(entry.asDict(recursive=True), sort_keys=True, default=str, indent=2).encode())
    if not lake.table_exists(spark, RECONCILIATION_REPORT):
        return False
    report = lake.read_days(spark, RECONCILIATION_REPORT, Days.span(day)).orderBy("category", "currency").toPandas()
    if report.empty:
        return False
    file_drops.write_bytes(report_name(day), report.to_csv(index=False).encode())
    return True


def gold_rows(spark: SparkSession, lake: LakeResource, day: str) -> DataFrame:
    """The gold rows scored for delivery day `day`."""
    if not lake.table_exists(spark, GOLD):
        raise Failure(f"{GOLD} does not exist yet at {lake.table_path(GOLD)}: materialise {GOLD} for {day} first")
    return lake.read_days(spark, GOLD, Days.span(day))


def snapshot_rows(spark: SparkSession, lake: LakeResource, day: str) -> tuple[DataFrame, object]:
    """The rows of the day's newest snapshot version (per its manifest entry), and that entry."""
    entry = current_entry(spark, lake, SNAPSHOTS, day)
    if entry is None:
        raise Failure(f"No {SNAPSHOTS} snapshot for {day} in the manifest: materialise {SNAPSHOTS} for {day} first")
    rows = lake.read(spark, SNAPSHOTS).where((F.col("period") == day) & (F.col("snapshot_version") == entry.snapshot_version))
    return rows, entry


def replace_day(table: pa.Table, file_drops: FileDropResource, name: str, column: str, day: str) -> int:
    """Replace the `column = day` partition of the Delta table `name` with `table` (creating the table
    on the first export); returns the table's new version."""
    return replace_rows(file_drops.delta_uri(name), table, f"{column} = '{day}'", (column,), file_drops.delta_storage_options())


@asset(
    name=ASSET,
    group_name="file_exchange",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, SNAPSHOTS, RECONCILIATION_REPORT],
    kinds={"spark", "delta"},
    description=(
        "The delivery day's risk scores (risk_scores_gold) and its current regulatory snapshot version, exported as Delta "
        "tables to the file drop's exports/ area (a local folder, or an Azure Blob container), partitioned by the delivery "
        "day. Re-exporting a day replaces its partition: the same rows, or the superseding snapshot version."
    ),
    metadata={"tables": f"{GOLD_EXPORT} (by {GOLD_KEY}), {SNAPSHOT_EXPORT} (by {SNAPSHOT_KEY})"},
)
def regulatory_exports(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, file_drops: FileDropResource) -> MaterializeResult:
    session = spark.spark_session
    exported = []
    versions = {}
    for day in context.partition_keys:
        snapshot, entry = snapshot_rows(session, lake, day)  # fails before anything is exported
        gold = gold_rows(session, lake, day).toArrow()
        versions[GOLD_EXPORT] = replace_day(gold, file_drops, GOLD_EXPORT, GOLD_KEY, day)
        snap = snapshot.toArrow()
        if snap.num_rows != entry.row_count:
            raise Failure(f"{SNAPSHOTS} {day} version {entry.snapshot_version} has {snap.num_rows} rows, its manifest says {entry.row_count}: not exported")
        versions[SNAPSHOT_EXPORT] = replace_day(snap, file_drops, SNAPSHOT_EXPORT, SNAPSHOT_KEY, day)
        report = export_files(session, lake, file_drops, day, entry)
        if not report:
            context.log.warning(f"{ASSET} {day}: no {RECONCILIATION_REPORT} rows for the day (not reconciled yet): report not exported")
        exported.append({"day": day, "gold_rows": gold.num_rows, "snapshot_rows": snap.num_rows, "snapshot_version": entry.snapshot_version, "snapshot_sha256": entry.sha256, "report": report})
        context.log.info(f"{ASSET} {day}: {gold.num_rows} gold rows, snapshot v{entry.snapshot_version} ({snap.num_rows} rows) to {file_drops.uri(EXPORTS)}")
    last = exported[-1]
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(e["gold_rows"] + e["snapshot_rows"] for e in exported),
            "gold_rows": sum(e["gold_rows"] for e in exported),
            "snapshot_rows": sum(e["snapshot_rows"] for e in exported),
            "gold_export": MetadataValue.path(file_drops.uri(GOLD_EXPORT)),
            "snapshot_export": MetadataValue.path(file_drops.uri(SNAPSHOT_EXPORT)),
            "manifest_export": MetadataValue.path(file_drops.uri(manifest_name(last["day"]))),
            "report_export": MetadataValue.path(file_drops.uri(report_name(last["day"]))) if last["report"] else "not reconciled yet",
            "gold_export_version": versions[GOLD_EXPORT],
            "snapshot_export_version": versions[SNAPSHOT_EXPORT],
            "snapshot_version": last["snapshot_version"],
            "snapshot_sha256": last["snapshot_sha256"] if len(exported) == 1 else "see days",
            "days": markdown_table(exported),
        }
    )
