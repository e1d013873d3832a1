"""anomaly_alerts: what investigators work on: HIGH-risk scores and hard-rule hits, with reasons.

One alert per transaction at most, with every reason that applies; the alert id is derived from
the transaction (stable across re-runs and rollbacks). The delivery day's alerts are replaced as a
whole, so re-materialising is idempotent.
"""

from dagster import AssetCheckResult, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import functions as F

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ml.features_training import delivery_rows
from compliance_assets.operations.audit import audited
from compliance_assets.transforms.alert_rules import RULE_COLUMNS, alert_rows
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.monitoring import MonitoringResource
from catalog import ALERTS, Days, GOLD, SILVER


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
@audited
def anomaly_alerts(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    session = spark.spark_session
    total, version, reasons = 0, -1, {}
    for key in context.partition_keys:
        gold = lake.read_days(session, GOLD, Days.span(key))
        rules = delivery_rows(session, lake, key).select(*RULE_COLUMNS)
        alerts = alert_rows(gold, rules)
        version = lake.replace_days(alerts, ALERTS, Days.of(key))
        n = lake.rows_written(session, ALERTS)
        total += n
        for r in lake.read_days(session, ALERTS, Days.span(key)).select(F.explode("reasons").alias("r")).select(F.split("r", ":")[0].alias("r")).groupBy("r").count().collect():
            reasons[r["r"]] = reasons.get(r["r"], 0) + r["count"]
        context.log.info(f"{ALERTS} {key}: {n} alerts")
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
    description="Alert volume within budget: at most 2% of the day's scored transactions by default (the monitoring resource's alert_budget_share: ALERT_BUDGET_SHARE); alert ids unique.",
)
def alert_volume_within_budget(context, spark: PySparkResource, lake: LakeResource, monitoring: MonitoringResource) -> AssetCheckResult:
    session = spark.spark_session
    days = Days.of(context.partition_keys)
    alerts = lake.read_days(session, ALERTS, days)
    scored = lake.read_days(session, GOLD, days).count()
    n, distinct = alerts.count(), alerts.select("alert_id").distinct().count()
    share = n / scored if scored else 0.0
    return AssetCheckResult(
        passed=share <= monitoring.alert_budget_share and n == distinct,
        metadata={"alerts": n, "scored_transactions": scored, "alert_share": round(share, 5), "budget_share": monitoring.alert_budget_share, "duplicate_alert_ids": n - distinct},
    )
