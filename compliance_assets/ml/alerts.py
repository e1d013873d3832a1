"""anomaly_alerts: what investigators work on: HIGH-risk scores and hard-rule hits, with reasons.

One alert per transaction at most, with every reason that applies; the alert id is derived from
the transaction (stable across re-runs and rollbacks). The delivery day's alerts are replaced as a
whole, so re-materialising is idempotent.
"""

import datetime as dt
import hashlib
import os

from dagster import AssetCheckResult, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ml.features_training import delivery_rows
from compliance_assets.ops.audit import record_operation
from partitions import daily_partitions, day_literals
from resources.lake import LakeResource
from catalog import ALERTS, Days, GOLD, SILVER

MAX_ALERT_SHARE = float(os.getenv("ALERT_BUDGET_SHARE", "0.02"))
HIGH_RISK, WATCHLIST, LIMIT = "HIGH_RISK_SCORE", "WATCHLIST_MATCH", "LIMIT_BREACH_SINGLE_TRANSACTION"
DETAIL_SEPARATOR = ":"  # a reason's detail follows its family: WATCHLIST_MATCH:OFAC_SDN


RULE_COLUMNS = ("transaction_id", "event_time", "watchlist_hit", "watchlist_names", "exceeds_single_limit", "merchant_id", "amount_base")


def alert_rows(gold: DataFrame, rules: DataFrame) -> DataFrame:
    """The alerts for scored rows (`gold`) given their silver rule columns (`rules`, RULE_COLUMNS):
    one row per transaction with at least one reason. Used by the daily asset and the stream."""
    joined = gold.join(rules.select(*RULE_COLUMNS), ["transaction_id", "event_time"])
    watchlist = F.transform(F.coalesce("watchlist_names", F.array().cast("array<string>")), lambda n: F.concat(F.lit(WATCHLIST + DETAIL_SEPARATOR), n))
    reason_codes = F.concat(
        F.when(F.col("risk_band") == "HIGH", F.array(F.lit(HIGH_RISK))).otherwise(F.array().cast("array<string>")),
        F.when(F.col("watchlist_hit"), watchlist).otherwise(F.array().cast("array<string>")),
        F.when(F.coalesce("exceeds_single_limit", F.lit(False)), F.array(F.lit(LIMIT))).otherwise(F.array().cast("array<string>")),
    )
    return (
        joined.withColumn("reasons", reason_codes)
        .where(F.size("reasons") > 0)
        .select(
            F.concat(F.lit("ALR-"), F.substring(F.sha2(F.concat_ws("|", "transaction_id", F.date_format("event_time", "yyyy-MM-dd'T'HH:mm:ss")), 256), 1, 24)).alias("alert_id"),
            "transaction_id", "event_time", "account_id", "merchant_id", "amount_base",
            F.col("reasons")[0].alias("primary_reason"), "reasons", "risk_score", "risk_band", "top_features",
            "model_name", "model_version", "dq_status",
            F.col("scored_at").alias("raised_at"), F.col("pipeline_run_id"), "event_date", "ingest_date",
        )
    )


def alert_reason_values(risk_band: str, watchlist_hit: bool | None, watchlist_names: list[str] | None, exceeds_single_limit: bool | None) -> list[str]:
    """`alert_rows`' reasons for one scored transaction (empty: no alert): the real-time lane's twin."""
    reasons = [HIGH_RISK] if risk_band == "HIGH" else []
    if watchlist_hit:
        reasons += [WATCHLIST + DETAIL_SEPARATOR + n for n in (watchlist_names or ())]
    if exceeds_single_limit:
        reasons.append(LIMIT)
    return reasons


def alert_id_value(transaction_id: str, event_time: dt.datetime) -> str:
    """`alert_rows`' alert_id for one transaction (event_time in UTC, to the second)."""
    return "ALR-" + hashlib.sha256(f"{transaction_id}|{event_time:%Y-%m-%dT%H:%M:%S}".encode("utf-8")).hexdigest()[:24]


def scenario_of(reason: Column) -> Column:
    """A reason's scenario, its family without the detail (WATCHLIST_MATCH:OFAC_SDN -> WATCHLIST_MATCH): how
    precision, the dashboard and BI group alerts."""
    return F.substring_index(reason, DETAIL_SEPARATOR, 1)


@asset(
    name=ALERTS,
    group_name="scoring",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, SILVER],
    kinds={"spark", "delta"},
    description=(
        "Alerts for investigation: transactions in the HIGH risk band, on a watchlist (sanctions or internal) or over "
        "the account's single-transaction limit, with every reason that applies (e.g. HIGH_RISK_SCORE, "
        "WATCHLIST_MATCH:OFAC_SDN) and the features behind the score. One stable alert_id per transaction."
    ),
    metadata={"partition_column": "event_date (Dagster partition = delivery day, ingest_date)", "key": "alert_id"},
)
def anomaly_alerts(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    total, version, reasons = 0, -1, {}
    for key in context.partition_keys:
        gold = lake.read(session, GOLD).where(F.col("ingest_date") == F.lit(key).cast("date"))
        rules = delivery_rows(session, lake, key).select(*RULE_COLUMNS)
        alerts = alert_rows(gold, rules)
        version = lake.replace_days(alerts, ALERTS, Days.of(key))
        n = lake.rows_written(session, ALERTS)
        total += n
        for r in lake.read(session, ALERTS).where(F.col("ingest_date") == F.lit(key).cast("date")).select(F.explode("reasons").alias("r")).select(F.split("r", ":")[0].alias("r")).groupBy("r").count().collect():
            reasons[r["r"]] = reasons.get(r["r"], 0) + r["count"]
        context.log.info(f"{ALERTS} {key}: {n} alerts")
    record_operation(context, session, lake, ALERTS)
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(ALERTS), version, total, lake.read(session, ALERTS).schema,
            reasons=markdown_table([{"reason": k, "alerts": v} for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]),
        )
    )


@asset_check(
    asset=ALERTS,
    partitions_def=daily_partitions,
    additional_deps=[GOLD],
    description=f"Alert volume within budget: at most {MAX_ALERT_SHARE:.0%} of the day's scored transactions (ALERT_BUDGET_SHARE); alert ids unique.",
)
def alert_volume_within_budget(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    days = day_literals(context.partition_keys)
    alerts = lake.read(session, ALERTS).where(F.col("ingest_date").isin(days))
    scored = lake.read(session, GOLD).where(F.col("ingest_date").isin(days)).count()
    n, distinct = alerts.count(), alerts.select("alert_id").distinct().count()
    share = n / scored if scored else 0.0
    return AssetCheckResult(
        passed=share <= MAX_ALERT_SHARE and n == distinct,
        metadata={"alerts": n, "scored_transactions": scored, "alert_share": round(share, 5), "budget_share": MAX_ALERT_SHARE, "duplicate_alert_ids": n - distinct},
    )
