"""ml_features_training: the model's features for every silver row of a delivery day, with the
confirmed outcome (label and decision time) where one is known.

Features are the ones scoring computes (one implementation, `model_features`), so training sees
exactly what the model will see. Training later keeps only labels decided by its cut-off.
"""

import datetime as dt
import os

from dagster import AssetCheckResult, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.investigations.labels import SCHEMA as DISPOSITION_SCHEMA
from compliance_assets.investigations.labels import TABLE as DISPOSITIONS
from compliance_assets.investigations.labels import disposition_outcomes
from compliance_assets.metadata import delta_metadata
from compliance_assets.ml.model_features import DEFAULT_LABEL_DELAY_DAYS, MODEL_FEATURES, features_for
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from partitions import daily_partitions
from resources.lake import LakeResource

TABLE = "ml_features_training"
SILVER = "transactions_silver"
OUTCOMES = "transaction_outcomes"
OUTCOME_SCHEMA = T.StructType(
    [T.StructField("transaction_id", T.StringType()), T.StructField("label", T.IntegerType()), T.StructField("decision_time", T.TimestampType())]
)


def label_delay_days() -> int:
    """Days between a transaction and the end of the merchant-risk windows (MERCHANT_LABEL_DELAY_DAYS)."""
    return int(os.getenv("MERCHANT_LABEL_DELAY_DAYS", DEFAULT_LABEL_DELAY_DAYS))


def table_version(spark: SparkSession, lake: LakeResource, table: str) -> int:
    """The table's latest Delta version, -1 before its first write."""
    return lake.version(spark, table) if lake.table_exists(spark, table) else -1


def _as_of(spark: SparkSession, lake: LakeResource, table: str, schema: T.StructType, version: int | None) -> DataFrame:
    """The table at Delta `version` (-1 = before its first write: empty), or as it is now when None."""
    if version is None:
        return lake.read_or_empty(spark, table, schema)
    if version < 0:
        return spark.createDataFrame([], schema)
    return spark.read.format("delta").option("versionAsOf", version).load(lake.table_path(table))


def read_outcomes(spark: SparkSession, lake: LakeResource, outcomes_version: int | None = None, dispositions_version: int | None = None) -> DataFrame:
    """Every outcome known so far (transaction_id, label, decision_time): the delivered outcomes
    (transaction_outcomes) and investigators' CONFIRM / DISMISS decisions (alert_dispositions), each
    known from its decision time on. At the given Delta versions when set (a model's training data)."""
    delivered = _as_of(spark, lake, OUTCOMES, OUTCOME_SCHEMA, outcomes_version).select("transaction_id", "label", "decision_time")
    decided = disposition_outcomes(_as_of(spark, lake, DISPOSITIONS, DISPOSITION_SCHEMA, dispositions_version))
    return delivered.unionByName(decided)


def labels_as_of(
    spark: SparkSession, lake: LakeResource, cutoff: dt.datetime | None = None, version: int | None = None, dispositions_version: int | None = None
) -> DataFrame:
    """transaction_id -> label, label_decision_time: each transaction's latest outcome decided
    before `cutoff` (all when None), from the outcomes and dispositions tables (at the Delta versions
    when given). A later decision supersedes an earlier one only from its own decision time on."""
    outcomes = read_outcomes(spark, lake, version, dispositions_version)
    if cutoff is not None:
        outcomes = outcomes.where(F.col("decision_time") < F.lit(cutoff))
    latest = Window.partitionBy("transaction_id").orderBy(F.col("decision_time").desc(), F.col("label").desc())
    return (
        outcomes.withColumn("_rn", F.row_number().over(latest))
        .where("_rn = 1")
        .select("transaction_id", "label", F.col("decision_time").alias("label_decision_time"))
    )


def delivery_rows(spark: SparkSession, lake: LakeResource, day: str) -> DataFrame:
    """The silver rows of one delivery day (late arrivals included)."""
    d = dt.date.fromisoformat(day)
    return (
        lake.read(spark, SILVER)
        .where(F.col("event_date").between(F.lit(d - dt.timedelta(days=DEFAULT_LATENESS_DAYS)), F.lit(d)))
        .where(F.col("ingest_date") == F.lit(d))
    )


def delivery_features(spark: SparkSession, lake: LakeResource, day: str, delay_days: int, extra_columns: tuple[str, ...] = ()) -> DataFrame:
    """Model features of the delivery's silver rows (what both training and scoring start from)."""
    d = dt.date.fromisoformat(day)
    rows = delivery_rows(spark, lake, day)
    return features_for(rows, lake.read(spark, SILVER), read_outcomes(spark, lake), d - dt.timedelta(days=DEFAULT_LATENESS_DAYS), d, delay_days, ("ingest_date", *extra_columns))


@asset(
    name=TABLE,
    group_name="ml",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[SILVER, OUTCOMES, DISPOSITIONS],
    kinds={"spark", "delta"},
    description=(
        "Training data for the risk model: for every validated transaction of the delivery day, the features the "
        "model scores on (account velocity and amount windows, amount vs the account's profile, time of day, channel, "
        "distances and travel speed, merchant fraud share over trailing windows), computed only from what was known "
        "at the transaction's time, plus the outcome (delivered, or an investigator's CONFIRM / DISMISS of its alert) and when it was decided."
    ),
    metadata={"partition_column": "event_date (Dagster partition = delivery day, ingest_date)", "key": "transaction_id"},
)
def ml_features_training(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    delay = label_delay_days()
    labels = labels_as_of(session, lake)
    total, version = 0, -1
    for key in context.partition_keys:
        features = delivery_features(session, lake, key, delay).join(labels, "transaction_id", "left")
        version = lake.replace_where(features, TABLE, f"ingest_date = '{key}'")
        rows = lake.rows_written(session, TABLE)
        total += rows
        context.log.info(f"{TABLE} {key}: {rows} rows")
    schema = lake.read(session, TABLE).schema
    return MaterializeResult(metadata=delta_metadata(lake.table_path(TABLE), version, total, schema, features=len(MODEL_FEATURES), label_delay_days=delay))


@asset_check(asset=TABLE, partitions_def=daily_partitions, blocking=True, description="Every silver row of the delivery day has exactly one feature row.")
def features_cover_silver(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    results = {}
    for key in context.partition_keys:
        silver = delivery_rows(session, lake, key).select("transaction_id")
        feats = lake.read(session, TABLE).where(F.col("ingest_date") == F.lit(key).cast("date")).select("transaction_id")
        n_silver, n_feats, n_distinct = silver.count(), feats.count(), feats.distinct().count()
        missing = silver.join(feats, "transaction_id", "left_anti").count()
        results[key] = (n_silver, n_feats, n_distinct, missing)
    passed = all(s == f == d and m == 0 for s, f, d, m in results.values())
    return AssetCheckResult(
        passed=passed,
        metadata={f"{k}": f"silver={s} features={f} distinct={d} missing={m}" for k, (s, f, d, m) in results.items()},
    )
