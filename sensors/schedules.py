"""Schedules: the daily materialisation of yesterday's partition."""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from compliance_assets.jobs import daily_ingest_job

daily_ingest_schedule = build_schedule_from_partitioned_job(
    daily_ingest_job,
    hour_of_day=2,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 02:00 UTC, ingest yesterday's delivery (reference data, bronze, silver, DLQ, dq_results). Turn it on in the UI; the landing sensor is the event-driven alternative.",
)
