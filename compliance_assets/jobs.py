"""Jobs: daily ingest, daily scoring, model training, promotion and rollback."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster_mlflow import end_mlflow_on_run_finished

from compliance_assets.ml.registry import promote_challenger

daily_ingest_job = define_asset_job(
    "daily_ingest",
    selection=AssetSelection.groups("reference_data", "ingest"),
    description="Load the day's reference data and transaction delivery into bronze, then validate into silver, the DLQ and dq_results.",
)

daily_scoring_job = define_asset_job(
    "daily_scoring",
    selection=AssetSelection.assets("transaction_outcomes", "ml_features_training", "risk_scores_gold", "anomaly_alerts"),
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
    selection=AssetSelection.assets("risk_scores_gold", "anomaly_alerts"),
    description=(
        "Roll back the champion model and re-score a partition range: launch a backfill over the days to re-score with "
        "config ops.risk_scores_gold.config = {rollback_to_version: N, requested_by: '...', reason: '...'}."
    ),
)

__all__ = ["daily_ingest_job", "daily_scoring_job", "promote_challenger", "rollback_model_job", "train_risk_model_job"]
