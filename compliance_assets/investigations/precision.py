"""alert_precision: how many alerts investigators confirmed, per scenario and per rule, so compliance can see
which rules produce cases and which produce noise.

Precision = confirmed / (confirmed + dismissed), over alerts with a current decision (the latest per alert;
ESCALATE and undecided alerts are counted but not in the ratio). Reported for the delivery day's alerts and for
the trailing 30 delivery days; the numbers of a day move as late decisions arrive, so the Delta version of
alert_dispositions they were computed from is on every row.
"""

import datetime as dt

from dagster import AllPartitionMapping, AssetCheckResult, AssetDep, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from compliance_assets.investigations.labels import SCHEMA as DISPOSITION_SCHEMA
from compliance_assets.investigations.labels import current_decisions
from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.transforms.alert_rules import scenario_of
from partitions import daily_partitions
from resources.lake import LakeResource
from catalog import ALERTS, ALERT_PRECISION, DISPOSITIONS, Days

WINDOW_DAYS = 30
SCENARIO, RULE = "scenario", "rule"


def precision_by(alerts: DataFrame, current: DataFrame) -> DataFrame:
    """dimension, value, alerts, confirmed, dismissed, escalated, undecided, precision: per scenario (an
    alert's primary reason) and per rule (every reason code of an alert; an alert counts once per rule)."""
    decided = alerts.join(current.select("alert_id", "decision"), "alert_id", "left")
    per_scenario = decided.select(F.lit(SCENARIO).alias("dimension"), scenario_of(F.col("primary_reason")).alias("value"), "alert_id", "decision")
    per_rule = decided.select(F.lit(RULE).alias("dimension"), F.explode("reasons").alias("value"), "alert_id", "decision")
    n = lambda d: F.sum(F.when(F.col("decision") == d, 1).otherwise(0)).cast("long")  # noqa: E731
    out = per_scenario.unionByName(per_rule).groupBy("dimension", "value").agg(
        F.count("alert_id").alias("alerts"), n("CONFIRM").alias("confirmed"), n("DISMISS").alias("dismissed"), n("ESCALATE").alias("escalated"),
        F.sum(F.when(F.col("decision").isNull(), 1).otherwise(0)).cast("long").alias("undecided"),
    )
    closed = F.col("confirmed") + F.col("dismissed")
    return out.withColumn("precision", F.when(closed > 0, F.col("confirmed") / closed))


@asset(
    name=ALERT_PRECISION,
    group_name="investigations",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[ALERTS, AssetDep(DISPOSITIONS, partition_mapping=AllPartitionMapping())],
    kinds={"spark", "delta"},
    description=(
        "Alert precision per scenario (the alert's primary reason: HIGH_RISK_SCORE, WATCHLIST_MATCH, "
        "LIMIT_BREACH_SINGLE_TRANSACTION) and per rule (every reason code), for the delivery day's alerts and the "
        "trailing 30 days: alerts, confirmed, dismissed, escalated, undecided, and precision = confirmed / "
        "(confirmed + dismissed) by the investigators' current decisions."
    ),
    metadata={"partition_column": "event_date (delivery day)", "key": "event_date, window, dimension, value"},
)
def alert_precision(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    history = lake.read_or_empty(session, DISPOSITIONS, DISPOSITION_SCHEMA)
    dispositions_version = lake.version(session, DISPOSITIONS) if lake.table_exists(session, DISPOSITIONS) else -1
    current = current_decisions(history).cache()
    alerts = lake.read(session, ALERTS)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    version, summary = -1, []
    for key in context.partition_keys:
        day = dt.date.fromisoformat(key)
        frames = []
        for window, first in (("day", day), (f"{WINDOW_DAYS}d", day - dt.timedelta(days=WINDOW_DAYS - 1))):
            scope = alerts.where(F.col("ingest_date").between(F.lit(first), F.lit(day)))
            frames.append(precision_by(scope, current).withColumn("window", F.lit(window)))
        rows = frames[0].unionByName(frames[1]).select(
            F.lit(day).alias("event_date"), "window", "dimension", "value", "alerts", "confirmed", "dismissed", "escalated", "undecided", "precision",
            F.lit(dispositions_version).alias("dispositions_delta_version"), F.lit(now).alias("computed_at"), F.lit(context.run_id).alias("dagster_run_id"),
        )
        version = lake.replace_days(rows, ALERT_PRECISION, Days.of(key))
        summary = lake.read(session, ALERT_PRECISION).where((F.col("event_date") == F.lit(day)) & (F.col("dimension") == SCENARIO)).orderBy("window", "value").collect()
        context.log.info(f"{ALERT_PRECISION} {key}: {lake.rows_written(session, ALERT_PRECISION)} rows")
    current.unpersist()
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(ALERT_PRECISION), version, lake.rows_written(session, ALERT_PRECISION), lake.read(session, ALERT_PRECISION).schema,
            dispositions_delta_version=dispositions_version,
            by_scenario=markdown_table([
                {"window": r.window, "scenario": r.value, "alerts": r.alerts, "confirmed": r.confirmed, "dismissed": r.dismissed,
                 "precision": "n/a" if r.precision is None else f"{r.precision:.2f}"} for r in summary
            ]),
        )
    )


@asset_check(asset=ALERT_PRECISION, partitions_def=daily_partitions, additional_deps=[ALERTS], description="Every alert of the day is counted exactly once per scenario, and decided + undecided add up to the alerts.")
def alert_precision_covers_every_alert(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    meta, passed = {}, True
    for key in context.partition_keys:
        day = F.lit(key).cast("date")
        n_alerts = lake.read(session, ALERTS).where(F.col("ingest_date") == day).count()
        rows = lake.read(session, ALERT_PRECISION).where((F.col("event_date") == day) & (F.col("window") == "day")).collect()
        per_scenario = sum(r.alerts for r in rows if r.dimension == SCENARIO)
        add_up = all(r.confirmed + r.dismissed + r.escalated + r.undecided == r.alerts for r in rows)
        bounded = all(r.precision is None or 0.0 <= r.precision <= 1.0 for r in rows)
        passed &= per_scenario == n_alerts and add_up and bounded
        meta[key] = f"alerts={n_alerts} counted_by_scenario={per_scenario} rows_add_up={add_up}"
    return AssetCheckResult(passed=passed, metadata=meta)
