"""The operations domain: the operations audit trail, lake compaction (job, schedule, log) and the notifications
sensor that sends failed checks and runs to the operations webhook (with its delivery log)."""

from dagster import Definitions

from compliance_assets.ops.audit import operations_audit
from compliance_assets.ops.compaction import compaction_job, compaction_log, weekly_compaction_schedule
from compliance_assets.ops.notifications import alert_notifications_spec, alerting_sensor

defs = Definitions(
    assets=[operations_audit, compaction_log, alert_notifications_spec],
    jobs=[compaction_job],
    schedules=[weekly_compaction_schedule],
    sensors=[alerting_sensor],
)
