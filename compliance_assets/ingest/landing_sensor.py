"""Launch the daily ingest when a delivery is complete (its _SUCCESS marker has landed)."""


import datetime as dt

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor

from compliance_assets.ingest.jobs import daily_ingest_job
from partitions import daily_partitions
from resources.lake import LakeResource


@sensor(
    job=daily_ingest_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Starts daily_ingest for a delivery day as soon as landing/transactions/event_date=<day>/_SUCCESS appears (again after a redelivery).",
)
def landing_delivery_sensor(context: SensorEvaluationContext, lake: LakeResource):
    markers = lake.landing_markers("transactions")
    valid_keys = set(daily_partitions.get_partition_keys())
    requests = []
    for folder, mtime in sorted(markers.items()):
        if not folder.startswith("event_date="):
            continue
        day = folder.split("=", 1)[1]
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            context.log.warning(f"Ignoring landing folder with an invalid date: {folder}")
            continue
        if day not in valid_keys:
            context.log.warning(f"Delivery {day} is outside the partition range; not launched")
            continue
        stamp = int(mtime)
        requests.append(RunRequest(run_key=f"{day}@{stamp}", partition_key=day, tags={"trigger": "landing_delivery_sensor"}))
    return requests or SkipReason("No completed deliveries")
