"""Sensors and schedules: delivery-driven ingest (streaming supervision and alerting come later)."""

from sensors.landing import landing_delivery_sensor

all_sensors = [landing_delivery_sensor]

__all__ = ["all_sensors", "landing_delivery_sensor"]
