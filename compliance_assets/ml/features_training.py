"""ml_features_training: the model's features for every silver row of a delivery day, with the
confirmed outcome (label and decision time) where one is known.

Features are the ones scoring computes (one implementation, `model_features`), so training sees
exactly what the model will see. Training later keeps only labels decided by its cut-off.
"""

import datetime as dt
import os
from collections.abc import Mapping

from dagster import AssetCheckResult, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.investigations.labels import SCHEMA as DISPOSITION_SCHEMA
from compliance_assets.investigations.labels import disposition_outcomes
from compliance_assets.metadata import delta_metadata
from compliance_assets.ml.model_features import DEFAULT_LABEL_DELAY_DAYS, MODEL_FEATURES, features_for, measured_label_delay_days
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from partitions import daily_partitions
from resources.lake import LakeResource
from catalog import DISPOSITIONS, Days, OUTCOMES, SILVER, TRAINING_FEATURES

OUTCOME_SCHEMA = T.StructType(
    [T.StructField("transaction_id", T.StringType()), T.StructField("label", T.IntegerType()), T.StructField("decision_time", T.TimestampType())]
)


DELAY_COLUMN = "label_delay_days"  # the delay a row's merchant-risk features were built with
LABEL_DELAY_ENV = "MERCHANT_LABEL_DELAY_DAYS"


def label_delay_setting() -> int | None:
    """MERCHANT_LABEL_DELAY_DAYS: a whole number of days, or `auto` / unset = measure it from the outcomes."""
    value = os.getenv(LABEL_DELAY_ENV, "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if not value.isdigit():
        raise ValueError(f"{LABEL_DELAY_ENV}={value!r}: expected a whole number of days or 'auto'")
    return int(value)


def label_delay_days(spark: SparkSession, lake: LakeResource) -> tuple[int, str]:
    """(days between a transaction and the end of the merchant-risk windows, where the figure comes
    from): the setting, else the delay by which most confirmed-bad outcomes known so far were decided
    (model_features.measured_label_delay_days), else DEFAULT_LABEL_DELAY_DAYS before any outcome."""
    configured = label_delay_setting()
    if configured is not None:
        return configured, LABEL_DELAY_ENV
    silver = lake.read_or_empty(spark, SILVER, "transaction_id string, event_time timestamp")
    measured = measured_label_delay_days(read_outcomes(spark, lake), silver)
    return (measured, "measured from the outcomes") if measured is not None else (DEFAULT_LABEL_DELAY_DAYS, "default (no confirmed-bad outcome yet)")


def table_version(spark: SparkSession, lake: LakeResource, table: str) -> int:
    """The table's latest Delta version, -1 before its first write."""
    return lake.version(spark, table) if lake.table_exists(spark, table) else -1


def _as_of(spark: SparkSession, lake: LakeResource, table: str, schema: T.StructType, version: int | None, uri: str | None = None) -> DataFrame:
    """The table at Delta `version` (-1 = before its first write: empty), or as it is now when None; `uri`: where
    the table was when the version was recorded, if not in this lake."""
    if version is None:
        return lake.read_or_empty(spark, table, schema)
    if version < 0:
        return spark.createDataFrame([], schema)
    return lake.read_version(spark, table, version, uri=uri)


def read_outcomes(spark: SparkSession, lake: LakeResource, outcomes_version: int | None = None, dispositions_version: int | None = None,
                  uris: Mapping[str, str] | None = None) -> DataFrame:
    """Every outcome known so far (transaction_id, label, decision_time): the delivered outcomes
    (transaction_outcomes) and investigators' CONFIRM / DISMISS decisions (alert_dispositions), each
    known from its decision time on. At the given Delta versions when set (a model's training data), read where
    `uris` says each table was when its version was recorded (a model trained on another lake)."""
    uris = uris or {}
    delivered = _as_of(spark, lake, OUTCOMES, OUTCOME_SCHEMA, outcomes_version, uris.get(OUTCOMES)).select("transaction_id", "label", "decision_time")
    decided = disposition_outcomes(_as_of(spark, lake, DISPOSITIONS, DISPOSITION_SCHEMA, dispositions_version, uris.get(DISPOSITIONS)))
    return delivered.unionByName(decided)


def labels_as_of(
    spark: SparkSession, lake: LakeResource, cutoff: dt.datetime | None = None, version: int | None = None, dispositions_version: int | None = None,
    uris: Mapping[str, str] | None = None,
) -> DataFrame:
    """transaction_id -> label, label_decision_time: each transaction's latest outcome decided
    before `cutoff` (all when None), from the outcomes and dispositions tables (at the Delta versions
    when given, where `uris` says they were). A later decision supersedes an earlier one only from its own decision time on."""
    outcomes = read_outcomes(spark, lake, version, dispositions_version, uris)
    if cutoff is not None:
        outcomes = outcomes.where(F.col("decision_time") < F.lit(cutoff))
    latest = Window.partitionBy("transaction_id").orderBy(F.col("decision_time").desc(), F.col("label").desc())
    return (
        outcomes.withColumn("_rn", F.row_number().over(latest))
        .where("_rn = 1")
        .select("transaction_id", "label", F.col("decision_time").alias("label_decision_time"))
    )


def delivery_rows(spark: SparkSession, lake: LakeResource, day: str, last_day: str | None = None) -> DataFrame:
    """The silver rows of delivery day `day`, or of the days `day` .. `last_day` (late arrivals included)."""
    first, last = dt.date.fromisoformat(day), dt.date.fromisoformat(last_day or day)
    return (
        lake.read(spark, SILVER)
        .where(F.col("event_date").between(F.lit(first - dt.timedelta(days=DEFAULT_LATENESS_DAYS)), F.lit(last)))
        .where(F.col("ingest_date").between(F.lit(first), F.lit(last)))
    )


def delivery_features(spark: SparkSession, lake: LakeResource, day: str, delay_days: int, extra_columns: tuple[str, ...] = (), last_day: str | None = None) -> DataFrame:
    """Model features of the silver rows of delivery day `day` (or of the days `day` .. `last_day`, in one pass:
    a row's features depend on its merchant and event date, not on its delivery); what both training and
    scoring start from."""
    first, last = dt.date.fromisoformat(day), dt.date.fromisoformat(last_day or day)
    rows = delivery_rows(spark, lake, day, last_day)
    return features_for(rows, lake.read(spark, SILVER), read_outcomes(spark, lake), first - dt.timedelta(days=DEFAULT_LATENESS_DAYS), last, delay_days, ("ingest_date", *extra_columns))


@asset(
    name=TRAINING_FEATURES,
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
    delay, delay_source = label_delay_days(session, lake)
    context.log.info(f"merchant-risk label delay: {delay} days ({delay_source})")
    labels = labels_as_of(session, lake)
    days = sorted(context.partition_keys)
    first, last = days[0], days[-1]
    # the whole range in one pass and one write
    features = delivery_features(session, lake, first, delay, last_day=last).join(labels, "transaction_id", "left").withColumn(DELAY_COLUMN, F.lit(delay))
    # merge_schema: a table written before the delay column (or a new feature) existed gains it
    before = table_version(session, lake, TRAINING_FEATURES)
    version = lake.replace_days(features, TRAINING_FEATURES, Days.of(days), merge_schema=True)
    total = lake.rows_written(session, TRAINING_FEATURES) if version != before else 0  # an empty write that replaced nothing makes no commit
    context.log.info(f"{TRAINING_FEATURES} {first}..{last}: {total} rows")
    schema = lake.read(session, TRAINING_FEATURES).schema
    return MaterializeResult(metadata=delta_metadata(lake.table_path(TRAINING_FEATURES), version, total, schema, features=len(MODEL_FEATURES), label_delay_days=delay, label_delay_source=delay_source))


@asset_check(asset=TRAINING_FEATURES, partitions_def=daily_partitions, blocking=True, description="Every silver row of the delivery day has exactly one feature row.")
def features_cover_silver(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    keys = sorted(context.partition_keys)
    # the run's days in one pass: counts per delivery day of silver, of feature rows and of silver rows without one
    silver = delivery_rows(session, lake, keys[0], keys[-1]).select("transaction_id", "ingest_date")
    feats = lake.read(session, TRAINING_FEATURES).where(F.col("ingest_date").between(F.lit(keys[0]).cast("date"), F.lit(keys[-1]).cast("date"))).select("transaction_id", "ingest_date")
    n_silver = {str(r.ingest_date): r["count"] for r in silver.groupBy("ingest_date").count().collect()}
    n_feats = {str(r.ingest_date): (r.rows, r.ids) for r in feats.groupBy("ingest_date").agg(F.count("*").alias("rows"), F.count_distinct("transaction_id").alias("ids")).collect()}
    missing = {str(r.ingest_date): r["count"] for r in silver.join(feats, ["transaction_id", "ingest_date"], "left_anti").groupBy("ingest_date").count().collect()}
    results = {k: (n_silver.get(k, 0), *n_feats.get(k, (0, 0)), missing.get(k, 0)) for k in keys}
    passed = all(s == f == d and m == 0 for s, f, d, m in results.values())
    return AssetCheckResult(
        passed=passed,
        metadata={f"{k}": f"silver={s} features={f} distinct={d} missing={m}" for k, (s, f, d, m) in results.items()},
    )
