"""alert_notifications: the delivery log of the operations webhook (operations/notifications.py writes it)."""

import pyarrow as pa
from dagster import AssetSpec

from catalog import ALERT_NOTIFICATIONS

alert_notifications_spec = AssetSpec(
    ALERT_NOTIFICATIONS,
    group_name="operations",
    kinds={"delta"},
    description=(
        "Every alert sent about a failed data-quality check or a failed pipeline run, and what became of it: "
        "DELIVERED to the alert channel, RETRY_SCHEDULED while the channel did not answer, GAVE_UP after the last "
        "attempt (the failure was then only logged), or LOGGED_NO_WEBHOOK when no channel is configured. One row per "
        "delivery attempt, appended by alerting_sensor: the failed check (table, day, check name, severity) or the "
        "failed job, the Dagster run, a short summary, the attempt number, the channel's HTTP status and error."
    ),
    metadata={"partition_column": "event_date (day recorded, UTC)", "key": "notification_id + attempt", "written_by": "alerting_sensor (delta-rs)"},
)

SCHEMA = pa.schema(
    [
        pa.field("notification_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("asset", pa.string()),
        pa.field("partition", pa.string()),
        pa.field("check_name", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("job", pa.string()),
        pa.field("summary", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)
