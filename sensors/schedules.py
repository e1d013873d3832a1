"""Schedules: the daily materialisation of yesterday's partition (ingest at 02:00, scoring at 03:00 UTC)."""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from compliance_assets.jobs import daily_ingest_job, daily_scoring_job

daily_ingest_schedule = build_schedule_from_partitioned_job(
    daily_ingest_job,
    hour_of_day=2,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 02:00 UTC, ingest yesterday's delivery (reference data, bronze, silver, DLQ, dq_results). Turn it on in the UI; the landing sensor is the event-driven alternative.",
)

daily_scoring_schedule = build_schedule_from_partitioned_job(
    daily_scoring_job,
    hour_of_day=3,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="Every day at 03:00 UTC, score yesterday's delivery with the champion model and raise alerts (after the ingest).",
)
