"""The monitoring domain: feature and score drift, the challenger's shadow scores and comparison, and SLO status."""

from dagster import Definitions, load_asset_checks_from_modules

from compliance_assets.monitoring import challenger, drift, slo
from compliance_assets.monitoring.challenger import challenger_comparison, challenger_scores
from compliance_assets.monitoring.drift import model_drift
from compliance_assets.monitoring.slo import slo_status

defs = Definitions(
    assets=[model_drift, challenger_scores, challenger_comparison, slo_status],
    asset_checks=load_asset_checks_from_modules([drift, challenger, slo]),
)
