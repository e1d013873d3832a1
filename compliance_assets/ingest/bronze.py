"""transactions_bronze: every delivered record, raw, with where it came from.

Partition = the delivery day. Native deliveries are JSON-lines files under
landing/transactions/event_date=<day>/; foreign historical files come in through a source mapping
(config `source_mapping`, or the run tag `source_mapping`). The mapping is read only from the mappings
folder (SOURCE_MAPPINGS_DIR) and its data only from inside the landing area (see transforms/mapping_files.py).
A mapping with `split_by` names one export covering many days: it is read once per run and each record
goes to the partition of its own date; the run writes the days of its partition keys. Re-materialising
replaces exactly that day's rows of that source.
"""


from dagster import AssetCheckResult, AssetExecutionContext, BackfillPolicy, Config, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark import StorageLevel
from pyspark.sql import functions as F

from compliance_assets.metadata import delta_metadata
from compliance_assets.transforms.ingestion import BRONZE_SCHEMA, LANDING_SOURCE, read_landing_deliveries
from compliance_assets.transforms.mapping_files import SourceMapping, load_mapping, mappings_dir
from compliance_assets.transforms.source_mapping import export_days, read_mapped_delivery, read_mapped_export
from compliance_assets.operations.audit import audited
from partitions import PARTITIONS_START, PARTITIONS_START_ENV, daily_partitions
from resources.lake import LakeResource
from catalog import BRONZE, Days


class BronzeConfig(Config):
    source_mapping: str = Field(
        default="",
        description=(
            "A YAML source mapping for foreign historical files, in the mappings folder (SOURCE_MAPPINGS_DIR, default the "
            "repository's examples/; a relative path is relative to that folder, e.g. legacy_core_banking/mapping.yaml); its data "
            "path is relative to the landing area. Empty = the run tag source_mapping if set (UI backfills), else the native "
            "JSON-lines landing folder."
        ),
    )


@asset(
    name=BRONZE,
    group_name="ingest",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"spark", "delta"},
    description=(
        "Raw transaction records exactly as delivered (JSON payload, plus the original row for mapped "
        "foreign files), with source file, line and ingest time. Nothing is parsed or dropped here: "
        "this is the evidence every later table can be re-derived from."
    ),
    metadata={"partition_column": "event_date (delivery day)", "key": "ingest_id"},
)
@audited
def transactions_bronze(context: AssetExecutionContext, config: BronzeConfig, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    mapping_path = config.source_mapping or context.run.tags.get("source_mapping", "")
    mapping = load_mapping(mapping_path, landing=lake.landing, folder=mappings_dir(lake.source_mappings_dir)) if mapping_path else None
    source = mapping.name if mapping else LANDING_SOURCE
    if mapping and mapping.split_by:
        return _write_split_export(context, session, lake, mapping)
    if not mapping:
        return _write_landing_range(context, session, lake)
    total, version = 0, -1
    for key in context.partition_keys:
        rows = read_mapped_delivery(session, mapping, key, context.run_id)
        before = lake.version(session, BRONZE) if lake.table_exists(session, BRONZE) else -1
        # merge_schema: a lake written before payload_bytes / source_file_records existed gains them
        version = lake.replace_days(rows.select(*BRONZE_SCHEMA.fieldNames()), BRONZE, Days.of(key), also=f"source = '{source}'", merge_schema=True)
        count = lake.rows_written(session, BRONZE) if version != before else 0  # an empty day that replaced nothing makes no commit
        context.log.info(f"bronze {key} ({source}): {count} records")
        total += count
    return MaterializeResult(metadata=delta_metadata(lake.table_path(BRONZE), version, total, BRONZE_SCHEMA, source=source))


def _write_landing_range(context: AssetExecutionContext, session, lake: LakeResource) -> MaterializeResult:
    """Read the native delivery folders of the run's days in one pass and replace those days' landing rows
    in one commit (a day without a folder is emptied, as a day's own run would leave it)."""
    keys = context.partition_keys
    rows = read_landing_deliveries(session, lake.landing_path("transactions"), keys, context.run_id)
    before = lake.version(session, BRONZE) if lake.table_exists(session, BRONZE) else -1
    # merge_schema: a lake written before payload_bytes / source_file_records existed gains them
    version = lake.replace_days(rows.select(*BRONZE_SCHEMA.fieldNames()), BRONZE, Days.of(keys), also=f"source = '{LANDING_SOURCE}'", merge_schema=True)
    per_day: dict[str, int] = {}
    if version != before:  # an empty run that replaced nothing makes no commit
        written = lake.read_days(session, BRONZE, Days.of(keys)).where(F.col("source") == LANDING_SOURCE)
        per_day = {str(r.event_date): r["count"] for r in written.groupBy("event_date").count().collect()}
    for key in keys:
        context.log.info(f"bronze {key} ({LANDING_SOURCE}): {per_day.get(key, 0)} records")
    return MaterializeResult(metadata=delta_metadata(lake.table_path(BRONZE), version, sum(per_day.values()), BRONZE_SCHEMA, source=LANDING_SOURCE))


def _write_split_export(context: AssetExecutionContext, session, lake: LakeResource, mapping: SourceMapping) -> MaterializeResult:
    """Read a split export once, check its days add up to its files, and replace the run's days of its source."""
    keys = context.partition_keys
    export = read_mapped_export(session, mapping, context.run_id).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        days = export_days(export)
        rows = export.where(BRONZE.where(Days.of(keys))).select(*BRONZE_SCHEMA.fieldNames())
        version = lake.replace_days(rows, BRONZE, Days.of(keys), also=f"source = '{mapping.name}'", merge_schema=True)
    finally:
        export.unpersist()
    for key in keys:
        context.log.info(f"bronze {key} ({mapping.name}): {days['per_day'].get(key, 0)} records")
    total = sum(days["per_day"].get(k, 0) for k in keys)
    early = sum(n for day, n in days["per_day"].items() if day < PARTITIONS_START)
    if early:
        context.log.warning(
            f"{early} records of the export are dated before the first daily partition {PARTITIONS_START}: no run can load "
            f"them until the partitions start earlier (setting {PARTITIONS_START_ENV})"
        )
    first, last = (min(days["per_day"]), max(days["per_day"])) if days["per_day"] else ("", "")
    return MaterializeResult(metadata={
        **delta_metadata(lake.table_path(BRONZE), version, total, BRONZE_SCHEMA, source=mapping.name),
        "export_days": f"{first}..{last}", "export_records": days["records"], "export_records_outside_run": days["records"] - total,
        "export_records_without_split_date": days["undated"], "export_records_before_first_partition": early,
    })


@asset_check(asset=BRONZE, partitions_def=daily_partitions, description="Every bronze record has a unique ingest id (source, file, line).")
def bronze_ingest_ids_unique(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    df = lake.read_days(spark.spark_session, BRONZE, Days.of(context.partition_keys))
    stats = df.agg(F.count("*").alias("rows"), F.count_distinct("ingest_id").alias("ids")).collect()[0]
    return AssetCheckResult(passed=stats.rows == stats.ids, metadata={"rows": stats.rows, "distinct_ingest_ids": stats.ids})
