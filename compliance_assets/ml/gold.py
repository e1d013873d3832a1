"""risk_scores_gold: every silver transaction of a delivery day scored by the champion model (a range of
days in one scoring pass and one write).

MERGE upsert keyed on (transaction_id, event_time): a row changes only when its score, band,
reasons, model or DQ status change, so re-materialising with the same champion leaves identical
rows, and after a rollback exactly the rows of the re-scored range change. Run with
`rollback_to_version` set (the rollback_model job), the step first points champion back at that
version and records it in model_audit.
"""

import datetime as dt

from dagster import AllPartitionMapping, AssetCheckResult, AssetCheckSeverity, AssetDep, AssetExecutionContext, BackfillPolicy, Config, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ml.features_training import delivery_features, delivery_rows
from compliance_assets.ml.registry import rollback_champion
from compliance_assets.ml.scoring import score_frame, with_model_ids
from contracts import load_contract
from compliance_assets.operations.audit import audited
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.mlflow import ModelRegistryResource
from resources.monitoring import MonitoringResource
from catalog import DISPOSITIONS, GOLD, OUTCOMES, SILVER, Days

GOLD_COLUMNS = tuple(load_contract("risk_scores")["properties"])
COMPARED = ("risk_score", "risk_band", "model_name", "model_version", "model_run_id", "dq_status")


class ScoringConfig(Config):
    rollback_to_version: int | None = Field(default=None, description="Rollback: point champion at this earlier model version before scoring the selected partitions.")
    requested_by: str = Field(default="", description="Rollback: who asks for it (recorded in model_audit).")
    reason: str = Field(default="", description="Rollback: why (recorded in model_audit).")


def write_scores(scored: DataFrame, lake: LakeResource, day: str, last_day: str | None = None) -> int:
    """Write the scores of delivery day `day` (or of the days `day` .. `last_day`); returns the Delta version.

    Deliveries scored for the first time are appended in one pass: silver holds each transaction in
    one delivery only, so none of their keys can be in gold yet. Re-scoring MERGEs (update the rows
    whose score, reasons, model or DQ status changed; delete rows of the deliveries no longer in
    silver; insert new ones) from a persisted frame, since MERGE reads its source twice.
    """
    spark = scored.sparkSession
    days = Days(dt.date.fromisoformat(day), dt.date.fromisoformat(last_day or day))
    if not lake.table_exists(spark, GOLD) or lake.read_days(spark, GOLD, days).limit(1).count() == 0:
        lake.append(scored, GOLD)
        return lake.version(spark, GOLD)
    source = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        dates = [r.event_date for r in source.select("event_date").distinct().collect()] or [days.first]
        in_dates = "t.event_date IN (" + ", ".join(f"DATE'{d}'" for d in dates) + ")"
        changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in COMPARED) + " OR NOT (to_json(t.top_features) <=> to_json(s.top_features))"
        return lake.upsert(source, GOLD, f"{in_dates} AND t.transaction_id = s.transaction_id AND t.event_time = s.event_time",
                           changed=changed, delete_unmatched=days.where(f"t.{GOLD.day_column}"))
    finally:
        source.unpersist()


def insert_new_scores(scored: DataFrame, lake: LakeResource) -> int:
    """The stream's gold write: MERGE that inserts rows whose (transaction_id, event_time) is not in
    gold yet, so a micro-batch replayed after a crash adds nothing twice. Returns the Delta version."""
    return lake.insert_new(scored, GOLD, ("transaction_id", "event_time"), prune="event_date")


@asset(
    name=GOLD,
    group_name="scoring",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[SILVER, OUTCOMES, DISPOSITIONS, AssetDep("risk_model", partition_mapping=AllPartitionMapping())],
    kinds={"spark", "delta", "mlflow"},
    description=(
        "Risk score of every validated transaction of the delivery day from the approved (champion) MLflow model: "
        "risk_score 0-1, LOW/MEDIUM/HIGH band, the top features behind the score with their signed contributions, the "
        "model name, version and MLflow run, the Dagster run and the row's data-quality status. Re-materialising a day "
        "with the same model changes nothing; a rollback re-scores only the chosen days."
    ),
    metadata={"contract": "contracts/risk_scores.schema.json", "partition_column": "event_date (Dagster partition = delivery day, ingest_date)", "key": "transaction_id, event_time (MERGE)"},
)
@audited(rollback=lambda config: config.rollback_to_version is not None)
def risk_scores_gold(context: AssetExecutionContext, config: ScoringConfig, spark: PySparkResource, lake: LakeResource, model_registry: ModelRegistryResource) -> MaterializeResult:
    session = spark.spark_session
    if config.rollback_to_version is not None:
        rollback_champion(context, session, lake, model_registry, config.rollback_to_version, config.requested_by, config.reason)
    version, model = model_registry.champion()  # fails clearly, before anything is written
    scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    days = sorted(context.partition_keys)
    first, last = days[0], days[-1]
    features = delivery_features(session, lake, first, model.label_delay_days, ("dq_status",), last_day=last)
    scored = with_model_ids(score_frame(features, model), model_registry.model_name, version.version, version.run_id, context.run_id, scored_at)
    delta_version = write_scores(scored.select(*GOLD_COLUMNS), lake, first, last)
    written = lake.read_days(session, GOLD, Days.span(first, last))
    per_day: dict[str, dict[str, int]] = {}
    for r in written.groupBy("ingest_date", "risk_band").count().collect():
        per_day.setdefault(str(r.ingest_date), {})[r.risk_band] = r["count"]
    bands = {b: sum(c.get(b, 0) for c in per_day.values()) for b in ("LOW", "MEDIUM", "HIGH")}
    total = sum(bands.values())
    for day in days:
        context.log.info(f"{GOLD} {day}: {sum(per_day.get(day, {}).values())} rows scored by {model_registry.model_name} v{version.version}: {per_day.get(day, {})}")
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(GOLD), delta_version, total, lake.read(session, GOLD).schema,
            model_name=model_registry.model_name, model_version=version.version, model_run_id=version.run_id,
            bands=markdown_table([{"band": b, "rows": n, "share": f"{n / total:.4f}" if total else "0"} for b, n in bands.items()]),
        )
    )


def _gold_rows(context, spark, lake):
    return lake.read_days(spark.spark_session, GOLD, Days.of(context.partition_keys))


@asset_check(asset=GOLD, partitions_def=daily_partitions, blocking=True, additional_deps=[SILVER], description="Every silver row of the delivery day has exactly one score, and nothing else is scored.")
def every_silver_row_scored_once(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    session = spark.spark_session
    gold = _gold_rows(context, spark, lake).select("transaction_id", "event_time")
    days = sorted(context.partition_keys)
    silver = delivery_rows(session, lake, days[0], days[-1]).select("transaction_id", "event_time")
    n_silver, n_gold = silver.count(), gold.count()
    unscored = silver.join(gold, ["transaction_id", "event_time"], "left_anti").count()
    extra = gold.join(silver, ["transaction_id", "event_time"], "left_anti").count()
    repeated = gold.groupBy("transaction_id", "event_time").count().where("count > 1").count()
    return AssetCheckResult(
        passed=unscored == 0 and extra == 0 and repeated == 0 and n_silver == n_gold,
        metadata={"silver_rows": n_silver, "gold_rows": n_gold, "unscored": unscored, "scored_but_not_in_silver": extra, "scored_more_than_once": repeated},
    )


@asset_check(asset=GOLD, partitions_def=daily_partitions, blocking=True, description="Every risk_score is present and within [0, 1]; every band is LOW, MEDIUM or HIGH.")
def scores_in_unit_interval(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    gold = _gold_rows(context, spark, lake)
    bad = gold.where(F.col("risk_score").isNull() | (F.col("risk_score") < 0) | (F.col("risk_score") > 1) | ~F.col("risk_band").isin("LOW", "MEDIUM", "HIGH")).count()
    return AssetCheckResult(passed=bad == 0, metadata={"rows_out_of_range": bad})


@asset_check(
    asset=GOLD,
    partitions_def=daily_partitions,
    description=(
        "Band distribution within bounds: HIGH at most 2% and MEDIUM + HIGH at most 10% of the day by default (the monitoring "
        "resource's risk_max_high_share and risk_max_elevated_share: RISK_MAX_HIGH_SHARE, RISK_MAX_ELEVATED_SHARE). A breach suggests drift or a broken model."
    ),
)
def band_distribution_within_bounds(context, spark: PySparkResource, lake: LakeResource, monitoring: MonitoringResource) -> AssetCheckResult:
    counts = {r.risk_band: r["count"] for r in _gold_rows(context, spark, lake).groupBy("risk_band").count().collect()}
    total = sum(counts.values())
    high = counts.get("HIGH", 0) / total if total else 0.0
    elevated = (counts.get("HIGH", 0) + counts.get("MEDIUM", 0)) / total if total else 0.0
    return AssetCheckResult(
        passed=total > 0 and high <= monitoring.risk_max_high_share and elevated <= monitoring.risk_max_elevated_share,
        severity=AssetCheckSeverity.WARN,
        metadata={"rows": total, "high_share": round(high, 5), "medium_or_high_share": round(elevated, 5),
                  "max_high_share": monitoring.risk_max_high_share, "max_elevated_share": monitoring.risk_max_elevated_share, **{f"{b.lower()}_rows": counts.get(b, 0) for b in ("LOW", "MEDIUM", "HIGH")}},
    )
