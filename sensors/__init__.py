"""Sensors and schedules: delivery-driven ingest, the scheduled daily graph, monthly snapshots and weekly compaction, and the
supervisors that keep the decision service and the transaction stream running, the alerting sensor (failed checks and runs to a webhook) and the case-management hand-off of HIGH alerts."""

from sensors.alerting import alert_notifications_spec, alerting_sensor
from sensors.case_handoff import case_handoff_sensor, case_handoffs_spec
from sensors.file_drops import ledger_drop_sensor
from sensors.landing import landing_delivery_sensor
from sensors.schedules import daily_pipeline_schedule, monthly_snapshot_schedule, regulatory_export_schedule, weekly_compaction_schedule
from sensors.streaming import decision_service_supervisor_sensor, stream_supervisor_sensor

all_sensors = [landing_delivery_sensor, ledger_drop_sensor, decision_service_supervisor_sensor, stream_supervisor_sensor, alerting_sensor, case_handoff_sensor]
all_schedules = [daily_pipeline_schedule, monthly_snapshot_schedule, regulatory_export_schedule, weekly_compaction_schedule]

__all__ = ["alert_notifications_spec", "alerting_sensor", "case_handoff_sensor", "case_handoffs_spec", "all_schedules", "all_sensors", "daily_pipeline_schedule", "decision_service_supervisor_sensor", "monthly_snapshot_schedule", "weekly_compaction_schedule", "landing_delivery_sensor", "ledger_drop_sensor", "regulatory_export_schedule", "stream_supervisor_sensor"]
