"""Jobs: the daily pipeline, daily ingest and scoring, monthly snapshots, replay, model training, promotion and rollback."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster_mlflow import end_mlflow_on_run_finished

from catalog import (
    ALERT_PRECISION, ALERTS, DISPOSITIONS, DISPOSITIONS_DLQ, DLQ, DQ_RESULTS, GOLD, OUTCOMES, RECONCILIATION_BREAKS,
    RECONCILIATION_REPORT, SILVER, SNAPSHOT_MANIFEST, SNAPSHOTS, SNAPSHOTS_MONTHLY, TRAINING_FEATURES,
)
from compliance_assets.ml.registry import promote_challenger

daily_ingest_job = define_asset_job(
    "daily_ingest",
    selection=AssetSelection.groups("reference_data", "ingest"),
    description="Load the day's reference data and transaction delivery into bronze, then validate into silver, the DLQ and dq_results.",
)

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

DAILY_GRAPH = (
    AssetSelection.groups("reference_data", "ingest", "reporting", "monitoring")
    | AssetSelection.assets(OUTCOMES, TRAINING_FEATURES, GOLD, ALERTS)
    | AssetSelection.assets(DISPOSITIONS, DISPOSITIONS_DLQ, ALERT_PRECISION, "compliance_dashboard", "bi_serving")
) - AssetSelection.assets(SNAPSHOTS_MONTHLY, SNAPSHOT_MANIFEST)

daily_pipeline_job = define_asset_job(
    "daily_pipeline",
    selection=DAILY_GRAPH,
    description=(
        "The whole daily graph for a delivery day (or a range, in one run): reference data, bronze, silver, DLQ and "
        "dq_results, outcomes and training features, scores and alerts, reconciliation with the ledger, the daily "
        "regulatory snapshot, monitoring (drift, the challenger's shadow scores and comparison, SLOs), investigators' decisions with alert precision, and the day's compliance dashboard and BI serving tables. Model training and promotion stay separate, approved steps."
    ),
)

monthly_snapshot_job = define_asset_job(
    "monthly_snapshot",
    selection=AssetSelection.assets(SNAPSHOTS_MONTHLY),
    description="The month's write-once regulatory snapshot (run after the month's last daily snapshot).",
)

replay_job = define_asset_job(
    "replay",
    selection=AssetSelection.assets(
        SILVER, DLQ, DQ_RESULTS, GOLD, ALERTS, RECONCILIATION_REPORT, RECONCILIATION_BREAKS, SNAPSHOTS, "bi_serving",
    ),
    description=(
        "Replay: re-derive silver, the DLQ, dq_results, scores, alerts, reconciliation, the daily snapshots and the BI serving tables of a "
        "partition range from bronze (launch a backfill of this job over the range). Required run tags: requested_by "
        "and incident_id (reason optional); the new snapshot versions supersede the old ones citing the incident, and "
        "the replay is written to operations_audit."
    ),
)

regulatory_export_job = define_asset_job(
    "regulatory_export",
    selection=AssetSelection.assets("regulatory_exports"),
    description="Export the delivery day's risk scores and current regulatory snapshot as Delta tables to the file drop's exports/ area (Azure Blob in production).",
)

__all__ = ["regulatory_export_job", "daily_ingest_job", "daily_pipeline_job", "monthly_snapshot_job", "replay_job", "daily_scoring_job", "promote_challenger", "rollback_model_job", "train_risk_model_job"]
