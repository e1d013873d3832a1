"""The Definitions object: every asset, check, job, sensor, schedule and resource, assembled in one place
(including the real-time decision service job and its transaction_decisions topic, the streaming job transaction_stream,
its stream_batches table and their supervisor sensors, the
reporting assets (reconciliation, regulatory snapshots), compaction and the operations audit, and monitoring:
drift, champion-challenger shadow scores and comparison, SLOs, investigators' decisions and alert precision, the case-management hand-off, BI serving tables and the compliance dashboard, and the file exchange with other systems: ledger
drops in, regulatory exports out).

Spark jobs use the in-process executor so all steps of a run share one SparkSession (one JVM
start per run instead of one per step).
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_asset_checks_from_modules

from compliance_assets.ingest import bronze, checks, silver
from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.ledger_drops import ledger_files
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.jobs import (
    daily_ingest_job, daily_pipeline_job, daily_scoring_job, monthly_snapshot_job, promote_challenger, regulatory_export_job, replay_job, rollback_model_job,
    train_risk_model_job,
)
from compliance_assets.investigations import dispositions, precision
from compliance_assets.investigations.dispositions import record_alert_dispositions
from compliance_assets.investigations.precision import alert_precision
from compliance_assets.ml import alerts, features_training, gold
from compliance_assets.ml.alerts import anomaly_alerts
from compliance_assets.ml.features_training import ml_features_training
from compliance_assets.ml.gold import risk_scores_gold
from compliance_assets.ml.outcomes import outcome_checks, transaction_outcomes
from compliance_assets.ml.registry import model_audit
from compliance_assets.ml.training import risk_model
from compliance_assets.monitoring import challenger, drift, slo
from compliance_assets.monitoring.challenger import challenger_comparison, challenger_scores
from compliance_assets.monitoring.drift import model_drift
from compliance_assets.monitoring.slo import slo_status
from compliance_assets.ops.audit import operations_audit
from compliance_assets.ops.compaction import compaction_job, compaction_log
from compliance_assets.realtime.job import decision_service_job, transaction_decisions
from compliance_assets.reference_data import reference_assets, reference_checks
from compliance_assets.reporting import reconciliation, snapshots
from compliance_assets.reporting.exports import regulatory_exports
from compliance_assets.reporting.reconciliation import reconcile_with_ledger
from compliance_assets.serving.bi_serving import bi_serving, bi_serving_matches_delta
from compliance_assets.serving.dashboard import compliance_dashboard
from compliance_assets.reporting.snapshots import regulatory_snapshots, regulatory_snapshots_monthly, snapshot_manifest
from compliance_assets.streaming.job import stream_batches, transaction_stream_job
from resources import build_resources
from sensors import all_schedules, all_sensors
from sensors.alerting import alert_notifications_spec
from sensors.case_handoff import case_handoffs_spec

defs = Definitions(
    assets=[
        *reference_assets, transactions_bronze, validate_transactions,
        transaction_outcomes, ml_features_training, risk_model, risk_scores_gold, anomaly_alerts, model_audit,
        transaction_decisions, stream_batches, reconcile_with_ledger, regulatory_snapshots, regulatory_snapshots_monthly, snapshot_manifest,
        operations_audit, compaction_log, model_drift, challenger_scores, challenger_comparison, slo_status, alert_notifications_spec,
        ledger_files, regulatory_exports, record_alert_dispositions, alert_precision,
        case_handoffs_spec, compliance_dashboard, bi_serving,
    ],
    asset_checks=[
        *reference_checks, *load_asset_checks_from_modules([bronze, checks, silver]), *outcome_checks,
        *load_asset_checks_from_modules([features_training, gold, alerts]), *load_asset_checks_from_modules([reconciliation, snapshots]),
        *load_asset_checks_from_modules([drift, challenger, slo]), *load_asset_checks_from_modules([dispositions, precision]), bi_serving_matches_delta,
    ],
    jobs=[
        daily_pipeline_job, daily_ingest_job, daily_scoring_job, monthly_snapshot_job, replay_job, train_risk_model_job, promote_challenger,
        rollback_model_job, decision_service_job, transaction_stream_job, compaction_job, regulatory_export_job,
    ],
    sensors=all_sensors,
    schedules=all_schedules,
    resources=build_resources(),
    executor=in_process_executor,
)
