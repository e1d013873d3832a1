"""Schedules: the whole daily graph for yesterday (02:00 UTC, reconciliation well before the 06:00 deadline),
the monthly snapshot (the 1st at 07:00 UTC, for the previous month) and weekly compaction (Sunday 04:00 UTC)."""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from compliance_assets.jobs import daily_pipeline_job, monthly_snapshot_job, regulatory_export_job
from compliance_assets.ops.compaction import weekly_compaction_schedule

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

monthly_snapshot_schedule = build_schedule_from_partitioned_job(
    monthly_snapshot_job,
    day_of_month=1,
    hour_of_day=7,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="On the 1st of each month at 07:00 UTC, write the previous month's regulatory snapshot.",
)

regulatory_export_schedule = build_schedule_from_partitioned_job(
    regulatory_export_job,
    hour_of_day=5,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 05:00 UTC, after the daily pipeline, export yesterday's scores and regulatory snapshot to the file drop.",
)

__all__ = ["daily_pipeline_schedule", "monthly_snapshot_schedule", "regulatory_export_schedule", "weekly_compaction_schedule"]
