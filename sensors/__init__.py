"""Sensors and schedules: delivery-driven and scheduled daily ingest, scheduled daily scoring, and the
supervisor that keeps the transaction stream running (alerting comes later)."""

from sensors.landing import landing_delivery_sensor
from sensors.schedules import daily_ingest_schedule, daily_scoring_schedule
from sensors.streaming import stream_supervisor_sensor

all_sensors = [landing_delivery_sensor, stream_supervisor_sensor]
all_schedules = [daily_ingest_schedule, daily_scoring_schedule]

__all__ = ["all_schedules", "all_sensors", "daily_ingest_schedule", "daily_scoring_schedule", "landing_delivery_sensor", "stream_supervisor_sensor"]
