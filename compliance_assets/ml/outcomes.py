"""transaction_outcomes: investigators' confirmed labels, as delivered each day.

Partition = the delivery day of landing/outcomes/<day>.csv. A label is knowable only from its
decision_time on, which is what point-in-time-correct training features rely on. Checks (contract
and unique transaction_id per delivery) are the reference-data checks.
"""


from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset
from dagster_pyspark import PySparkResource
from pyspark.sql import functions as F

from compliance_assets.metadata import delta_metadata
from compliance_assets.reference_data import build_reference_checks, load_reference_csv
from contracts.spark import struct_type
from partitions import daily_partitions
from resources.lake import LakeResource

TABLE = "transaction_outcomes"


@asset(
    name=TABLE,
    group_name="ml",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"spark", "delta"},
    description=(
        "Confirmed investigation outcomes (1 = suspicious, 0 = legitimate) with the time each was decided, "
        "by delivery day. The labels for model training; a label counts only from its decision time on."
    ),
    metadata={"contract": f"contracts/reference/{TABLE}.schema.json", "partition_column": "event_date (delivery day)", "key": "transaction_id"},
)
def transaction_outcomes(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    schema = struct_type(TABLE)
    total, version, missing = 0, -1, []
    for key in context.partition_keys:
        path = lake.landing_path("outcomes", f"{key}.csv")
        if lake.path_exists(session, path):
            df = load_reference_csv(session, path, TABLE)
        else:
            # investigators do not decide something every day: no file is an empty delivery
            context.log.warning(f"{TABLE} {key}: no file at {path}; the day has no outcomes")
            df = session.createDataFrame([], schema)
            missing.append(key)
        df = df.withColumn("event_date", F.lit(key).cast("date")).withColumn("source_file", F.lit(path.rsplit("/", 1)[-1]))
        version = lake.replace_where(df, TABLE, f"event_date = '{key}'")
        df.unpersist()
        rows = lake.rows_written(session, TABLE)
        total += rows
        context.log.info(f"{TABLE} {key}: {rows} outcomes")
    return MaterializeResult(metadata=delta_metadata(lake.table_path(TABLE), version, total, schema, days_without_file=", ".join(missing) or "none"))


outcome_checks = build_reference_checks(TABLE)
