"""The investigations domain: investigators' decisions on alerts, alert precision, and the hand-off of HIGH alerts to
case management (its delivery log and the sensor that posts them)."""

from dagster import Definitions, load_asset_checks_from_modules

from compliance_assets.investigations import dispositions, precision
from compliance_assets.investigations.case_handoff import case_handoff_sensor, case_handoffs_spec
from compliance_assets.investigations.dispositions import record_alert_dispositions
from compliance_assets.investigations.precision import alert_precision

defs = Definitions(
    assets=[record_alert_dispositions, alert_precision, case_handoffs_spec],
    asset_checks=load_asset_checks_from_modules([dispositions, precision]),
    sensors=[case_handoff_sensor],
)
