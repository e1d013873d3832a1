"""transaction_outcomes: investigators' confirmed labels, as delivered each day.

Partition = the delivery day of landing/outcomes/<day>.csv (RFC 4180 CSV, columns matched by header
name, read by the reference-data loader); a day without a file, or with a header-only one, holds no
outcomes. A range is loaded with one read of its files and one Delta commit. A label is knowable only from its decision_time on, which is what point-in-time-correct
training features rely on. Checks (contract and unique transaction_id per delivery) are the
reference-data checks, blocking: a failure stops the assets that read the outcomes in the same run.
"""


from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset
from dagster_pyspark import PySparkResource

from compliance_assets.metadata import delta_metadata
from compliance_assets.ingest.reference_data import build_reference_checks, dated_files, day_ranges, load_contract_files
from contracts.spark import struct_type
from partitions import daily_partitions
from resources.lake import LakeResource
from catalog import OUTCOMES


@asset(
    name=OUTCOMES,
    group_name="ml",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"spark", "delta"},
    description=(
        "Confirmed investigation outcomes (1 = suspicious, 0 = legitimate) with the time each was decided, "
        "by delivery day. The labels for model training; a label counts only from its decision time on."
    ),
    metadata={"contract": f"contracts/reference/{OUTCOMES}.schema.json", "partition_column": "event_date (delivery day)", "key": "transaction_id"},
)
def transaction_outcomes(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    days = sorted(context.partition_keys)
    folder = lake.landing_path("outcomes")
    files = {d: path for d, path in dated_files(session, folder).items() if days[0] <= d <= days[-1]}
    missing = [d for d in days if d not in files]
    if missing:
        # investigators do not decide something every day: no file is an empty delivery
        context.log.warning(f"{OUTCOMES}: no file under {folder} for {day_ranges(missing)}; those days have no outcomes")
    version, rows = load_contract_files(session, lake, OUTCOMES, files, days[0], days[-1])
    context.log.info(f"{OUTCOMES}: {sum(rows.values())} outcomes from {len(files)} files for {days[0]}..{days[-1]}")
    return MaterializeResult(metadata=delta_metadata(lake.table_path(OUTCOMES), version, sum(rows.values()), struct_type(OUTCOMES), days_without_file=day_ranges(missing)))


outcome_checks = build_reference_checks(OUTCOMES)
