"""The reporting domain's jobs and schedules: the monthly regulatory snapshot and the daily export to the file drop."""

from dagster import AssetSelection, DefaultScheduleStatus, build_schedule_from_partitioned_job, define_asset_job

from catalog import SNAPSHOTS_MONTHLY

monthly_snapshot_job = define_asset_job(
    "monthly_snapshot",
    selection=AssetSelection.assets(SNAPSHOTS_MONTHLY),
    description="The month's write-once regulatory snapshot (run after the month's last daily snapshot).",
)

regulatory_export_job = define_asset_job(
    "regulatory_export",
    selection=AssetSelection.assets("regulatory_exports"),
    description="Export the delivery day's risk scores and current regulatory snapshot as Delta tables to the file drop's exports/ area (Azure Blob in production).",
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
