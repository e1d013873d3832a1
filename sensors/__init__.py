"""Sensors and schedules: delivery-driven ingest, the scheduled daily graph, monthly snapshots and weekly compaction, and the
supervisor that keeps the transaction stream running (alerting comes later)."""

from sensors.landing import landing_delivery_sensor
from sensors.schedules import daily_pipeline_schedule, monthly_snapshot_schedule, weekly_compaction_schedule
from sensors.streaming import stream_supervisor_sensor

all_sensors = [landing_delivery_sensor, stream_supervisor_sensor]
all_schedules = [daily_pipeline_schedule, monthly_snapshot_schedule, weekly_compaction_schedule]

__all__ = ["all_schedules", "all_sensors", "daily_pipeline_schedule", "monthly_snapshot_schedule", "weekly_compaction_schedule", "landing_delivery_sensor", "stream_supervisor_sensor"]
