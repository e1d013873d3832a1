"""The serving domain: the BI serving database and the compliance dashboard."""

from dagster import Definitions

from compliance_assets.serving.bi_serving import bi_serving, bi_serving_matches_delta
from compliance_assets.serving.dashboard import compliance_dashboard

defs = Definitions(assets=[compliance_dashboard, bi_serving], asset_checks=[bi_serving_matches_delta])
