"""The jobs that span domains: the whole daily graph (and its schedule) and the replay of a partition range.
Each domain's own jobs live in its package (ingest/jobs.py, ml/jobs.py, reporting/jobs.py, ...)."""

from __future__ import annotations

from dagster import AssetSelection, DefaultScheduleStatus, build_schedule_from_partitioned_job, define_asset_job

from catalog import (
    ALERT_PRECISION, ALERTS, DISPOSITIONS, DISPOSITIONS_DLQ, DLQ, DQ_RESULTS, GOLD, OUTCOMES, RECONCILIATION_BREAKS,
    RECONCILIATION_REPORT, SILVER, SNAPSHOT_MANIFEST, SNAPSHOTS, SNAPSHOTS_MONTHLY, TRAINING_FEATURES,
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

daily_pipeline_schedule = build_schedule_from_partitioned_job(
    daily_pipeline_job,
    hour_of_day=2,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Every day at 02:00 UTC, materialise yesterday's partition of the whole daily graph: ingest, scoring, "
        "reconciliation (due 06:00 UTC) and the daily regulatory snapshot. Turn it on in the UI."
    ),
)
