"""Champion-challenger: the MLflow `@challenger` scores a share of each delivery day in the shadow, and a
daily comparison against the champion's gold scores decides whether it may be promoted.

Shadow scores use the same feature and scoring code as gold (`delivery_features`, `score_frame`) and go
only to challenger_scores: never to gold or alerts. The share is a deterministic hash of transaction_id,
so re-runs and both models see the same transactions.
"""

import datetime as dt
import json

from dagster import AllPartitionMapping, AssetCheckResult, AssetCheckSeverity, AssetDep, AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ml.features_training import delivery_features, labels_as_of
from compliance_assets.ml.gold import GOLD_COLUMNS
from compliance_assets.ml.scoring import score_frame, with_model_ids
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.mlflow import CHALLENGER, CHAMPION, ModelRegistryResource
from resources.monitoring import MonitoringResource
from catalog import ALERTS, CHALLENGER_COMPARISON, CHALLENGER_SCORES, Days, GOLD, OUTCOMES, SILVER

SHARE_SEED = 17
BANDS = ("LOW", "MEDIUM", "HIGH")
COMPARISON_SCHEMA = T.StructType(
    [
        T.StructField("event_date", T.DateType(), False),  # the delivery day
        T.StructField("champion_version", T.StringType()),
        T.StructField("challenger_version", T.StringType()),
        T.StructField("rows_compared", T.LongType(), False),
        T.StructField("band_agreement", T.DoubleType()),
        T.StructField("band_changes", T.LongType()),
        T.StructField("mean_abs_score_diff", T.DoubleType()),
        T.StructField("champion_high", T.LongType()),
        T.StructField("challenger_high", T.LongType()),
        T.StructField("alert_ratio", T.DoubleType()),
        T.StructField("labelled_rows", T.LongType()),
        T.StructField("labelled_positives", T.LongType()),
        T.StructField("champion_precision", T.DoubleType()),
        T.StructField("champion_recall", T.DoubleType()),
        T.StructField("challenger_precision", T.DoubleType()),
        T.StructField("challenger_recall", T.DoubleType()),
        T.StructField("band_transitions", T.StringType()),  # JSON {"CHAMPION->CHALLENGER": rows}
        T.StructField("passed", T.BooleanType(), False),
        T.StructField("findings", T.StringType()),
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("computed_at", T.TimestampType(), False),
    ]
)


def in_share(share: float):
    """True for the deterministic `share` of transactions the challenger also scores."""
    return (F.abs(F.xxhash64("transaction_id", F.lit(SHARE_SEED))) % 10_000) < F.lit(int(round(share * 10_000)))


def distinct_challenger(registry: ModelRegistryResource):
    """The `@challenger` version when it differs from `@champion`, else None (nothing to compare)."""
    challenger, champion = registry.version_by_alias(CHALLENGER), registry.version_by_alias(CHAMPION)
    if challenger is None or (champion is not None and champion.version == challenger.version):
        return None
    return challenger


@asset(
    name=CHALLENGER_SCORES,
    group_name="monitoring",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[SILVER, OUTCOMES, AssetDep("risk_model", partition_mapping=AllPartitionMapping())],
    kinds={"spark", "delta", "mlflow"},
    description=(
        "Shadow scores: the candidate (challenger) model scores a share of the delivery day's transactions (all of "
        "them by default, CHALLENGER_SHARE) exactly as the champion does, for comparison only. These scores never "
        "reach risk_scores_gold or anomaly_alerts. Empty for a day when the challenger is the champion."
    ),
    metadata={"contract": "contracts/risk_scores.schema.json", "partition_column": "event_date (Dagster partition = delivery day, ingest_date)", "key": "transaction_id, event_time, model_version"},
)
def challenger_scores(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, model_registry: ModelRegistryResource, monitoring: MonitoringResource) -> MaterializeResult:
    session = spark.spark_session
    challenger = distinct_challenger(model_registry)
    model = model_registry.load(challenger) if challenger is not None else None
    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    total, version = 0, -1
    for key in context.partition_keys:
        if model is None:
            # a day without a distinct challenger holds no shadow scores (a stale earlier run is cleared)
            if lake.table_exists(session, CHALLENGER_SCORES):
                empty = session.createDataFrame([], lake.read(session, CHALLENGER_SCORES).schema)
                version = lake.replace_days(empty, CHALLENGER_SCORES, Days.of(key))
            context.log.info(f"{CHALLENGER_SCORES} {key}: no challenger distinct from the champion; nothing scored")
            continue
        features = delivery_features(session, lake, key, model.label_delay_days, ("dq_status",)).where(in_share(monitoring.challenger_share))
        scored = with_model_ids(score_frame(features, model), model_registry.model_name, challenger.version, challenger.run_id, context.run_id, scored_at)
        version = lake.replace_days(scored.select(*GOLD_COLUMNS), CHALLENGER_SCORES, Days.of(key))
        n = lake.rows_written(session, CHALLENGER_SCORES)
        total += n
        context.log.info(f"{CHALLENGER_SCORES} {key}: {n} rows scored in the shadow by {model_registry.model_name} v{challenger.version} (share {monitoring.challenger_share})")
    meta = {"challenger_version": challenger.version if challenger else "none (challenger is the champion)", "share": monitoring.challenger_share}
    if version < 0:
        return MaterializeResult(metadata={"dagster/row_count": 0, **meta})
    return MaterializeResult(metadata=delta_metadata(lake.table_path(CHALLENGER_SCORES), version, total, lake.read(session, CHALLENGER_SCORES).schema, **meta))


@asset_check(asset=CHALLENGER_SCORES, partitions_def=daily_partitions, blocking=True, additional_deps=[GOLD, ALERTS], description="No gold score or alert of the day comes from the shadow model: challenger scores stay in the shadow.")
def challenger_scores_stay_in_shadow(context, spark: PySparkResource, lake: LakeResource, model_registry: ModelRegistryResource) -> AssetCheckResult:
    session = spark.spark_session
    days = Days.of(context.partition_keys)
    shadow = lake.read_days(session, CHALLENGER_SCORES, days) if lake.table_exists(session, CHALLENGER_SCORES) else None
    versions = [r.model_version for r in shadow.select("model_version").distinct().collect()] if shadow is not None else []
    champion = model_registry.version_by_alias(CHAMPION)
    leaked = {}
    for table in (GOLD, ALERTS):
        if lake.table_exists(session, table) and versions:
            leaked[table] = lake.read_days(session, table, days).where(F.col("model_version").isin(versions)).count()
    return AssetCheckResult(
        passed=not any(leaked.values()) and (champion is None or str(champion.version) not in versions),
        metadata={"shadow_model_versions": ", ".join(versions) or "none", "champion_version": str(champion.version) if champion else "none", **{f"{t}_rows_from_shadow": n for t, n in leaked.items()}},
    )


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def compare(spark: SparkSession, lake: LakeResource, monitoring: MonitoringResource, day: str, run_id: str) -> tuple | None:
    """The comparison row of one delivery day (None when the day has no shadow scores)."""
    d = F.lit(day).cast("date")
    if not lake.table_exists(spark, CHALLENGER_SCORES):
        return None
    shadow = lake.read(spark, CHALLENGER_SCORES).where(F.col("ingest_date") == d).select("transaction_id", "event_time", F.col("risk_score").alias("c_score"), F.col("risk_band").alias("c_band"), F.col("model_version").alias("c_version"))
    gold = lake.read(spark, GOLD).where(F.col("ingest_date") == d).select("transaction_id", "event_time", "risk_score", "risk_band", "model_version")
    labels = labels_as_of(spark, lake).select("transaction_id", "label")
    pairs: DataFrame = gold.join(shadow, ["transaction_id", "event_time"]).join(labels, "transaction_id", "left")
    transitions = {f"{r.risk_band}->{r.c_band}": r["count"] for r in pairs.groupBy("risk_band", "c_band").count().collect()}
    n = sum(transitions.values())
    if n == 0:
        return None
    champ_high, chall_high = F.col("risk_band") == "HIGH", F.col("c_band") == "HIGH"
    labelled, positive = F.col("label").isNotNull(), F.col("label") == 1
    s = pairs.agg(
        F.first("model_version").alias("champion_version"), F.first("c_version").alias("challenger_version"),
        F.avg(F.abs(F.col("risk_score") - F.col("c_score"))).alias("mad"),
        F.sum(champ_high.cast("long")).alias("champ_high"), F.sum(chall_high.cast("long")).alias("chall_high"),
        F.sum(labelled.cast("long")).alias("labelled"), F.sum((labelled & positive).cast("long")).alias("positives"),
        F.sum((labelled & champ_high).cast("long")).alias("champ_flagged"), F.sum((positive & champ_high).cast("long")).alias("champ_tp"),
        F.sum((labelled & chall_high).cast("long")).alias("chall_flagged"), F.sum((positive & chall_high).cast("long")).alias("chall_tp"),
    ).collect()[0]
    agree = sum(v for k, v in transitions.items() if k.split("->")[0] == k.split("->")[1])
    agreement = round(agree / n, 6)
    alert_ratio = round(s.chall_high / max(s.champ_high, 1), 6)
    champ_recall, chall_recall = ratio(s.champ_tp, s.positives), ratio(s.chall_tp, s.positives)
    findings = []
    if agreement < monitoring.challenger_min_agreement:
        findings.append(f"band agreement {agreement:.4f} < {monitoring.challenger_min_agreement}")
    if alert_ratio > monitoring.challenger_max_alert_ratio:
        findings.append(f"HIGH rows {s.chall_high} vs champion {s.champ_high}: ratio {alert_ratio:.3f} > {monitoring.challenger_max_alert_ratio}")
    if champ_recall is not None and chall_recall is not None and chall_recall < champ_recall - monitoring.challenger_max_recall_drop:
        findings.append(f"recall on known outcomes {chall_recall:.4f} vs champion {champ_recall:.4f} (max drop {monitoring.challenger_max_recall_drop})")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    return (
        dt.date.fromisoformat(day), s.champion_version, s.challenger_version, n, agreement, n - agree, round(s.mad, 6), s.champ_high, s.chall_high, alert_ratio,
        s.labelled, s.positives, ratio(s.champ_tp, s.champ_flagged), champ_recall, ratio(s.chall_tp, s.chall_flagged), chall_recall,
        json.dumps(transitions, sort_keys=True), not findings, "; ".join(findings) or "within every threshold", run_id, now,
    )


@asset(
    name=CHALLENGER_COMPARISON,
    group_name="monitoring",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, CHALLENGER_SCORES, OUTCOMES],
    kinds={"spark", "delta"},
    description=(
        "Champion vs challenger on the delivery day's real traffic: how often they agree on the risk band, which "
        "transactions change band (LOW->HIGH etc.), how many HIGH alerts each would raise and, on transactions whose "
        "investigation outcome is known, the precision and recall of both. The promotion job can require these days "
        "to pass before the challenger becomes champion."
    ),
    metadata={"partition_column": "event_date (delivery day)", "key": "event_date, challenger_version"},
)
def challenger_comparison(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, monitoring: MonitoringResource) -> MaterializeResult:
    session = spark.spark_session
    rows, version = [], -1
    for key in context.partition_keys:
        row = compare(session, lake, monitoring, key, context.run_id)
        batch = [row] if row else []
        version = lake.replace_days(session.createDataFrame(batch, COMPARISON_SCHEMA), CHALLENGER_COMPARISON, Days.of(key))
        rows += batch
        context.log.info(f"{CHALLENGER_COMPARISON} {key}: " + (f"agreement {row[4]}, {row[5]} band changes, passed={row[17]} ({row[18]})" if row else "no shadow scores (no distinct challenger)"))
    last = rows[-1] if rows else None
    table = [{"day": str(r[0]), "champion": r[1], "challenger": r[2], "rows": r[3], "agreement": r[4], "band_changes": r[5], "HIGH champion/challenger": f"{r[7]}/{r[8]}", "recall champion/challenger": f"{r[13]}/{r[15]}", "passed": r[17]} for r in rows]
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(CHALLENGER_COMPARISON), version, len(rows), COMPARISON_SCHEMA,
            comparison=markdown_table(table),
            band_transitions=MetadataValue.json(json.loads(last[16])) if last else MetadataValue.json({}),
        )
    )


@asset_check(asset=CHALLENGER_COMPARISON, partitions_def=daily_partitions, description="The challenger agrees with the champion closely enough, raises no more alerts than allowed and loses no recall on known outcomes (a warning: it gates promotion, not the pipeline).")
def challenger_comparison_passes(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    rows = lake.read_days(spark.spark_session, CHALLENGER_COMPARISON, Days.of(context.partition_keys)).orderBy("event_date").collect()
    return AssetCheckResult(
        passed=all(r.passed for r in rows),  # a day without a distinct challenger has nothing to fail
        severity=AssetCheckSeverity.WARN,
        metadata={"days_compared": len(rows), "findings": markdown_table([{"day": str(r.event_date), "challenger": r.challenger_version, "passed": r.passed, "findings": r.findings} for r in rows])},
    )
