"""case_handoffs: the delivery log of the hand-off of HIGH alerts to case management (investigations/case_handoff.py
writes it)."""

import pyarrow as pa
from dagster import AssetSpec

from catalog import CASE_HANDOFFS

case_handoffs_spec = AssetSpec(
    CASE_HANDOFFS,
    group_name="investigations",
    kinds={"delta"},
    description=(
        "Every HIGH alert handed to the case-management system and what became of it: DELIVERED (a case was opened; "
        "the system's case reference is kept), RETRY_SCHEDULED while the system did not answer, GAVE_UP after the last "
        "attempt, REJECTED when the system refused the case (not retried), WITHDRAWN when a waiting alert was no longer "
        "HIGH after a re-run. One row per attempt, appended by case_handoff_sensor; an alert DELIVERED here is never "
        "sent again."
    ),
    metadata={"partition_column": "event_date (day of the attempt, UTC)", "key": "alert_id + attempt", "written_by": "case_handoff_sensor (delta-rs)"},
)

SCHEMA = pa.schema(
    [
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("transaction_id", pa.string()),
        pa.field("alert_event_date", pa.date32()),  # the alert's anomaly_alerts partition
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("case_id", pa.string()),  # the receiver's case reference, when it returns one
        pa.field("endpoint", pa.string()),  # scheme://host[:port] only
        pa.field("attempted_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)
