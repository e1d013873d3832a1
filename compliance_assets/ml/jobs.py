"""The model domain's jobs: daily scoring, training, and rollback (promotion is an op job beside the registry)."""

from dagster import AssetSelection, define_asset_job
from dagster_mlflow import end_mlflow_on_run_finished

from catalog import ALERTS, GOLD, OUTCOMES, TRAINING_FEATURES

daily_scoring_job = define_asset_job(
    "daily_scoring",
    selection=AssetSelection.assets(OUTCOMES, TRAINING_FEATURES, GOLD, ALERTS),
    description="Load the day's confirmed outcomes, build the day's training features, score every silver transaction with the champion model and raise alerts.",
)

train_risk_model_job = define_asset_job(
    "train_risk_model",
    selection=AssetSelection.assets("risk_model"),
    hooks={end_mlflow_on_run_finished},
    description="Train the risk model on the 28 delivery days up to the partition day, log it to MLflow and register it as the challenger.",
)

rollback_model_job = define_asset_job(
    "rollback_model",
    selection=AssetSelection.assets(GOLD, ALERTS),
    description=(
        "Roll back the champion model and re-score a partition range: launch a backfill over the days to re-score with "
        "config ops.risk_scores_gold.config = {rollback_to_version: N, requested_by: '...', reason: '...'}."
    ),
)
