"""Sensors and schedules: delivery-driven and scheduled daily ingest, scheduled daily scoring (streaming supervision and alerting come later)."""

from sensors.landing import landing_delivery_sensor
from sensors.schedules import daily_ingest_schedule, daily_scoring_schedule

all_sensors = [landing_delivery_sensor]
all_schedules = [daily_ingest_schedule, daily_scoring_schedule]

__all__ = ["all_schedules", "all_sensors", "daily_ingest_schedule", "daily_scoring_schedule", "landing_delivery_sensor"]
