"""Model promotion and rollback, each recorded in the model_audit Delta table.

Promotion: the challenger becomes champion only when an approver is named and it beats the
champion on the challenger's own evaluation period (re-read with Delta time travel at the version it
was trained on; the challenger's labelled rows there at their out-of-fold scores, since its final
trees learned from every label). Rollback: champion points back at a named earlier version; the rollback_model job
then re-scores the chosen partition range (see risk_scores_gold).
"""

import datetime as dt
import json

import pandas as pd

from dagster import AssetMaterialization, AssetSpec, Config, Failure, OpExecutionContext, job, op
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.ml.risk_model import evaluate, evaluation_scores
from compliance_assets.ml.training import EVALUATION_ARTIFACT, TABLE_URI_TAGS, load_training_frame
from resources.lake import LakeResource
from resources.mlflow import CHALLENGER, CHAMPION, ModelRegistryResource
from catalog import CHALLENGER_COMPARISON, MODEL_AUDIT

AUDIT_SCHEMA = T.StructType(
    [
        T.StructField("audit_id", T.StringType(), False),
        T.StructField("action", T.StringType(), False),  # PROMOTED / PROMOTION_REJECTED / ROLLED_BACK
        T.StructField("model_name", T.StringType(), False),
        T.StructField("from_version", T.StringType()),
        T.StructField("to_version", T.StringType()),
        T.StructField("approver", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("evidence", T.StringType()),  # JSON: metrics compared, partition range re-scored
        T.StructField("dagster_run_id", T.StringType(), False),
        T.StructField("decided_at", T.TimestampType(), False),
        T.StructField("event_date", T.DateType(), False),
    ]
)

model_audit = AssetSpec(
    MODEL_AUDIT,
    group_name="ml",
    kinds={"delta"},
    description=(
        "Audit trail of model decisions: every promotion to champion (with approver and the holdout metrics "
        "compared), every refused promotion and every rollback (who asked, why, which days were re-scored). "
        "Written by the promote_challenger and rollback_model jobs; never rewritten."
    ),
    metadata={"partition_column": "event_date (decision day)", "key": "audit_id"},
)


def record_audit(spark: SparkSession, lake: LakeResource, action: str, model_name: str, from_version, to_version,
                 approver: str, reason: str, evidence: dict, run_id: str) -> None:
    """Append one decision (idempotent per run and action: a retried run does not add a second row)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    versions = [None if v is None else str(v) for v in (from_version, to_version)]
    row = (f"{run_id}:{action}", action, model_name, *versions, approver, reason, json.dumps(evidence, sort_keys=True, default=str), run_id, now, now.date())
    lake.insert_new(spark.createDataFrame([row], AUDIT_SCHEMA), MODEL_AUDIT, "audit_id")


def holdout_metrics(spark: SparkSession, lake: LakeResource, candidate, models: dict, out_of_fold: dict | None = None) -> dict[str, dict]:
    """Metrics of each model in `models` on the evaluation period `candidate` (a ModelVersion) was
    evaluated on; the model named "challenger" at `out_of_fold` scores where given (its run's
    EVALUATION_ARTIFACT)."""
    tags = candidate.tags
    first, last = tags["training_window"].split("..")
    frame, *_ = load_training_frame(
        spark, lake, dt.date.fromisoformat(first), dt.date.fromisoformat(last), dt.datetime.fromisoformat(tags["label_cutoff"]),
        features_version=int(tags["training_delta_version"]), outcomes_version=int(tags["outcomes_delta_version"]),
        dispositions_version=int(tags.get("dispositions_delta_version", -1)),  # models trained before dispositions existed
        # where the tables were when those versions were recorded (versions registered before the tags: this lake)
        uris={table: tags[tag] for table, tag in TABLE_URI_TAGS.items() if tag in tags},
    )
    holdout = frame[frame["event_time"] >= pd.Timestamp(tags["holdout_start"])]
    oof = pd.DataFrame(out_of_fold) if out_of_fold else None
    return {
        name: evaluate(model, holdout, evaluation_scores(model, holdout, oof) if name == "challenger" and oof is not None else None)
        for name, model in models.items()
    }


def comparison_evidence(spark: SparkSession, lake: LakeResource, challenger_version: str, days: int) -> tuple[bool, list[dict]]:
    """Whether the `days` most recent comparisons of a challenger version all passed, and those rows (for the audit)."""
    if not lake.table_exists(spark, CHALLENGER_COMPARISON):
        return False, []
    rows = lake.read(spark, CHALLENGER_COMPARISON).where(F.col("challenger_version") == str(challenger_version)).orderBy(F.desc("event_date")).limit(days).collect()
    evidence = [{"day": str(r.event_date), "agreement": r.band_agreement, "alert_ratio": r.alert_ratio, "passed": r.passed, "findings": r.findings} for r in rows]
    return len(rows) == days and all(r.passed for r in rows), evidence


class PromotionConfig(Config):
    approver: str = Field(description="Who approves the promotion (recorded on the model version and in model_audit).")
    reason: str = Field(default="", description="Why (ticket, review notes).")
    min_improvement: float = Field(default=0.0, description="Average precision the challenger must gain over the champion.")
    require_comparison_days: int = Field(
        default=0, description="Require the challenger's most recent N days of challenger_comparison (shadow scoring on live traffic) to exist and pass; 0 = not required."
    )


@op(description="Promote the challenger to champion if an approver is named and it beats the champion on the challenger's holdout.")
def promote_challenger_op(context: OpExecutionContext, config: PromotionConfig, spark: PySparkResource, lake: LakeResource, model_registry: ModelRegistryResource) -> None:
    session, name = spark.spark_session, model_registry.model_name
    if not config.approver.strip():
        raise Failure("Promotion needs an approver: set config approver to the name of the person approving it.")
    challenger = model_registry.version_by_alias(CHALLENGER)
    if challenger is None:
        raise Failure(f"Model {name} has no '{CHALLENGER}': materialise risk_model first.")
    champion = model_registry.version_by_alias(CHAMPION)
    if champion is not None and champion.version == challenger.version:
        raise Failure(f"{name} v{challenger.version} is already the champion.")
    if config.require_comparison_days > 0:
        passed, days = comparison_evidence(session, lake, challenger.version, config.require_comparison_days)
        if not passed:
            evidence = {"required_comparison_days": config.require_comparison_days, "comparisons": days}
            record_audit(session, lake, "PROMOTION_REJECTED", name, champion.version if champion else None, challenger.version, config.approver, config.reason, evidence, context.run_id)
            raise Failure(
                f"{name} v{challenger.version} needs {config.require_comparison_days} passing day(s) of {CHALLENGER_COMPARISON}; found {len(days)} "
                f"({sum(1 for d in days if d['passed'])} passing): {[d['day'] + ': ' + d['findings'] for d in days if not d['passed']]}. "
                f"Champion unchanged; the decision is in {MODEL_AUDIT}."
            )
    models = {"challenger": model_registry.load(challenger)}
    if champion is not None:
        models["champion"] = model_registry.load(champion)
    metrics = holdout_metrics(session, lake, challenger, models, model_registry.run_dict(challenger.run_id, EVALUATION_ARTIFACT))
    ap_new = metrics["challenger"]["average_precision"]
    ap_old = metrics["champion"]["average_precision"] if champion is not None else None
    evidence = {"holdout_of_version": challenger.version, "metrics": metrics, "min_improvement": config.min_improvement}
    old = champion.version if champion is not None else None
    if ap_old is not None and ap_new <= ap_old + config.min_improvement:
        record_audit(session, lake, "PROMOTION_REJECTED", name, old, challenger.version, config.approver, config.reason, evidence, context.run_id)
        raise Failure(
            f"{name} v{challenger.version} does not beat champion v{old} on its holdout: average precision {ap_new:.4f} vs {ap_old:.4f} "
            f"(needs +{config.min_improvement}). Champion unchanged; the decision is in {MODEL_AUDIT}."
        )
    model_registry.set_alias(CHAMPION, challenger.version)
    client = model_registry.client()
    for key, value in {"approved_by": config.approver, "approved_at": dt.datetime.now(dt.timezone.utc).isoformat(), "approval_reason": config.reason}.items():
        client.set_model_version_tag(name, challenger.version, key, value)
    record_audit(session, lake, "PROMOTED", name, old, challenger.version, config.approver, config.reason, evidence, context.run_id)
    context.log.info(f"{name}: champion v{old} -> v{challenger.version} approved by {config.approver} (AP {ap_old} -> {ap_new:.4f})")
    context.log_event(AssetMaterialization(MODEL_AUDIT, description="Model promotion", metadata={"action": "PROMOTED", "to_version": str(challenger.version), "approver": config.approver}))


@job(description="Promote the MLflow challenger to champion: needs an approver; refuses a challenger that does not beat the champion on the same holdout.")
def promote_challenger():
    promote_challenger_op()


def rollback_champion(context, spark: SparkSession, lake: LakeResource, registry: ModelRegistryResource, version: int, requested_by: str, reason: str) -> None:
    """Point champion at an earlier registered version and record it (scoring the range follows)."""
    if not requested_by.strip():
        raise Failure("A rollback needs requested_by: the name of the person who asks for it.")
    target = registry.version(version)
    current = registry.version_by_alias(CHAMPION)
    registry.set_alias(CHAMPION, target.version)
    first, last = context.partition_key_range.start, context.partition_key_range.end
    evidence = {"rescored_partitions": f"{first}..{last}", "target_run_id": target.run_id}
    record_audit(spark, lake, "ROLLED_BACK", registry.model_name, current.version if current else None, target.version, requested_by, reason, evidence, context.run_id)
    context.log.info(f"{registry.model_name}: champion v{current.version if current else None} -> v{target.version} (rollback by {requested_by}); re-scoring {first}..{last}")
    context.log_event(AssetMaterialization(MODEL_AUDIT, description="Model rollback", metadata={"action": "ROLLED_BACK", "to_version": str(target.version), "requested_by": requested_by}))
