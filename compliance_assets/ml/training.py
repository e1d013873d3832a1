"""risk_model: trains the risk model on ml_features_training, logs it to MLflow (dagster-mlflow) and
registers it as the `challenger`.

Partition D = a model trained on the TRAINING_WINDOW_DAYS delivery days up to D, with the labels
decided by the end of D: re-materialising D rebuilds the same training set. Promotion to
`champion` is a separate, approved step (the promote_challenger job).
"""

import datetime as dt
import json
from collections.abc import Mapping

import mlflow.pyfunc
import pandas as pd
from dagster import AllPartitionMapping, AssetDep, AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, TimeWindowPartitionMapping, asset
from mlflow.models import infer_signature
from pydantic import Field
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from compliance_assets.ml.features_training import DELAY_COLUMN, label_delay_days, labels_as_of, table_version
from compliance_assets.ml.model_features import MODEL_FEATURES
from compliance_assets.ml.risk_model import TrainingDataError, TrainingParams, train
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.mlflow import CHALLENGER, ModelRegistryResource
from catalog import DISPOSITIONS, OUTCOMES, TRAINING_FEATURES

TRAINING_WINDOW_DAYS = 28
EVALUATION_ARTIFACT = "evaluation_scores.json"
MAX_UNLABELLED_ROWS = 200_000  # unlabelled rows (anomaly model, band thresholds) are sampled to this
# the model version tags naming where each table it was trained from was (its Delta versions are tagged beside):
# drift and promotion re-read those rows there, even from another lake
TABLE_URI_TAGS = {TRAINING_FEATURES: "training_table_uri", OUTCOMES: "outcomes_table_uri", DISPOSITIONS: "dispositions_table_uri"}


class TrainingConfig(Config):
    num_trees: int = Field(default=TrainingParams.num_trees, description="Boosting rounds of the gradient-boosted trees.")
    num_leaves: int = Field(default=TrainingParams.num_leaves)
    max_depth: int = Field(default=TrainingParams.max_depth)
    learning_rate: float = Field(default=TrainingParams.learning_rate)
    alert_budget: float = Field(default=TrainingParams.alert_budget, description="Share of transactions that may be HIGH risk (raise an alert).")
    review_budget: float = Field(default=TrainingParams.review_budget, description="Share of transactions that may be MEDIUM or HIGH risk.")
    folds: int = Field(default=TrainingParams.folds, description="Cross-fitting folds by event time: every outcome trains the trees; the stacker is calibrated on out-of-fold scores and the latest fold is the evaluation period.")

    def params(self) -> TrainingParams:
        return TrainingParams(**self.model_dump())


def load_training_frame(
    spark: SparkSession, lake: LakeResource, first_day: dt.date, last_day: dt.date, label_cutoff: dt.datetime, seed: int = 7,
    features_version: int | None = None, outcomes_version: int | None = None, dispositions_version: int | None = None,
    uris: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, int, int, int]:
    """Feature rows of deliveries [first_day, last_day] as pandas, labelled with the outcomes
    decided before `label_cutoff`, and the Delta versions of the tables read (features, outcomes, dispositions) (the latest, or the
    given ones: Delta time travel re-reads exactly what a model was trained on).

    `uris`: where each table was when the given version was recorded, if not in this lake (a model trained on
    another lake: its version's *_table_uri tags).

    Labels come from transaction_outcomes and alert_dispositions at training time, so outcomes decided after a day's
    features were built still count. Labelled rows are all kept; unlabelled rows are sampled down
    to MAX_UNLABELLED_ROWS and carry weight = 1 / sampling rate.
    """
    features_version = lake.version(spark, TRAINING_FEATURES) if features_version is None else features_version
    outcomes_version = table_version(spark, lake, OUTCOMES) if outcomes_version is None else outcomes_version
    dispositions_version = table_version(spark, lake, DISPOSITIONS) if dispositions_version is None else dispositions_version
    df = lake.read_version(spark, TRAINING_FEATURES, features_version, uri=(uris or {}).get(TRAINING_FEATURES))
    df = df.where(F.col("ingest_date").between(F.lit(first_day), F.lit(last_day))).drop("label", "label_decision_time")
    df = df.join(labels_as_of(spark, lake, label_cutoff, outcomes_version, dispositions_version, uris), "transaction_id", "left")
    n_unlabelled = df.where(F.col("label").isNull()).count()
    rate = min(1.0, MAX_UNLABELLED_ROWS / n_unlabelled) if n_unlabelled else 1.0
    # a deterministic hash sample: the same window and cut-off always give the same training set
    keep = F.col("label").isNotNull() | ((F.abs(F.xxhash64("transaction_id", F.lit(seed))) % 1_000_000) < rate * 1_000_000)
    weight = F.when(F.col("label").isNotNull(), F.lit(1.0)).otherwise(F.lit(1.0 / rate))
    delay = F.col(DELAY_COLUMN) if DELAY_COLUMN in df.columns else F.lit(None).cast("int")  # rows built before the delay was recorded
    out = df.where(keep).select("transaction_id", "event_time", "label", *MODEL_FEATURES, weight.alias("weight"), delay.alias(DELAY_COLUMN)).toPandas()
    return out, features_version, outcomes_version, dispositions_version


def training_label_delay(spark: SparkSession, lake: LakeResource, frame: pd.DataFrame) -> tuple[int, str, list[int]]:
    """(the delay the model scores with, what the outcomes say now, the delays the window's feature
    rows were built with): the latest delivery's, so training and scoring see merchant risk alike."""
    now, source = label_delay_days(spark, lake)
    built = frame.sort_values("event_time")[DELAY_COLUMN].dropna().astype(int)
    return (int(built.iloc[-1]) if len(built) else now), f"{now} ({source})", sorted(set(built.tolist()))


@asset(
    name="risk_model",
    group_name="ml",
    partitions_def=daily_partitions,
    deps=[
        AssetDep(TRAINING_FEATURES, partition_mapping=TimeWindowPartitionMapping(start_offset=-(TRAINING_WINDOW_DAYS - 1))),
        AssetDep(OUTCOMES, partition_mapping=AllPartitionMapping()),  # labels: every outcome decided by the cut-off
        AssetDep(DISPOSITIONS, partition_mapping=AllPartitionMapping()),  # and every investigator's CONFIRM / DISMISS
    ],
    required_resource_keys={"mlflow", "spark", "lake", "model_registry"},
    kinds={"mlflow", "lightgbm"},
    description=(
        f"The transaction risk model trained on the {TRAINING_WINDOW_DAYS} delivery days up to the partition day, with the "
        "outcomes decided by its end: gradient-boosted trees on confirmed outcomes plus an anomaly signal for never-seen "
        "patterns, calibrated to a 0-1 risk score, with LOW/MEDIUM/HIGH thresholds set for the alert budget. Logged to "
        "MLflow with its holdout metrics and registered as the 'challenger'; it scores nothing until approved as champion."
    ),
)
def risk_model(context: AssetExecutionContext, config: TrainingConfig) -> MaterializeResult:
    # dagster-mlflow's tracking resource is a legacy resource, so every resource comes from context.resources
    mlf, lake = context.resources.mlflow, context.resources.lake
    model_registry: ModelRegistryResource = context.resources.model_registry
    session = context.resources.spark.spark_session
    last_day = dt.date.fromisoformat(context.partition_key)
    first_day = last_day - dt.timedelta(days=TRAINING_WINDOW_DAYS - 1)
    cutoff = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())
    params = config.params()
    try:
        frame, delta_version, outcomes_version, dispositions_version = load_training_frame(session, lake, first_day, last_day, cutoff, params.seed)
        context.log.info(f"training frame: {len(frame)} rows, {int(frame['label'].notna().sum())} confirmed outcomes")
        delay, delay_now, built_with = training_label_delay(session, lake, frame)
        model, metrics, evaluation = train(frame, MODEL_FEATURES, params, delay)
    except TrainingDataError as exc:
        mlf.end_run(status="FAILED")
        raise Failure(f"Cannot train on deliveries {first_day}..{last_day} (labels decided before {cutoff}): {exc}") from exc
    if len(built_with) > 1:
        context.log.warning(f"the training window's merchant-risk features were built with label delays {built_with} days; the model scores with {delay}. Re-materialise {TRAINING_FEATURES} for the window to rebuild them with one delay.")
    if model.absent_features:
        context.log.warning(f"features absent from every training row (the data has no such field): {', '.join(model.absent_features)}")

    mlf.log_params(
        {
            **{k: v for k, v in params.__dict__.items()},
            "training_first_day": first_day.isoformat(), "training_last_day": last_day.isoformat(),
            "label_cutoff": cutoff.isoformat(), "label_delay_days": delay, "label_delay_from_outcomes_now": delay_now,
            "label_delay_of_feature_rows": ",".join(map(str, built_with)) or "not recorded",
            "absent_features": ",".join(model.absent_features) or "none", "features": len(MODEL_FEATURES),
            "training_table": TRAINING_FEATURES, "training_delta_version": delta_version, "outcomes_delta_version": outcomes_version, "dispositions_delta_version": dispositions_version, "training_rows": len(frame),
        }
    )
    mlf.log_metrics(metrics)
    mlf.log_dict({"features": list(MODEL_FEATURES), "absent_features": list(model.absent_features)}, "features.json")
    # the evaluation period's out-of-fold scores: a promotion compares the champion with these, not with in-sample scores
    mlf.log_dict(evaluation.scores.to_dict(orient="list"), EVALUATION_ARTIFACT)
    example = frame.loc[:, list(MODEL_FEATURES)].head(5).astype("float64")
    # log_model registers through MLflow's process-wide registry URI: point it at this resource's
    # registry (another step in the process may have pointed it elsewhere)
    mlflow.set_registry_uri(model_registry.tracking_uri)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=model,
        signature=infer_signature(example, model.predict(None, example)),
        input_example=example.fillna(0.0),
        registered_model_name=model_registry.model_name,
    )
    version = str(info.registered_model_version)
    client = model_registry.client()
    tags = {
        "training_delta_version": str(delta_version), "outcomes_delta_version": str(outcomes_version), "dispositions_delta_version": str(dispositions_version),
        **{tag: lake.table_path(table) for table, tag in TABLE_URI_TAGS.items()}, "training_window": f"{first_day}..{last_day}", "label_cutoff": cutoff.isoformat(),
        "holdout_start": str(evaluation.start), "dagster_run_id": context.run_id, "label_delay_days": str(delay),
        "average_precision": f"{metrics['average_precision']:.4f}",
    }
    for k, v in tags.items():
        client.set_model_version_tag(model_registry.model_name, version, k, v)
    model_registry.set_alias(CHALLENGER, version)
    run_id = mlf.active_run().info.run_id
    mlf.end_run()
    context.log.info(f"registered {model_registry.model_name} v{version} as {CHALLENGER}: AP={metrics['average_precision']:.4f}")
    return MaterializeResult(
        metadata={
            "model_name": model_registry.model_name, "model_version": version, "mlflow_run_id": run_id, "alias": CHALLENGER,
            **{k: round(v, 4) for k, v in metrics.items()},
            "thresholds": MetadataValue.json(model.thresholds), "features": MetadataValue.json(json.loads(json.dumps(list(MODEL_FEATURES)))),
            "training_delta_version": delta_version,
        }
    )
