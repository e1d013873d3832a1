"""The real-time domain: the decision service job and the decisions topic it publishes (its supervisor sensor is in
streaming/, beside the Delta lane's)."""

from dagster import Definitions

from compliance_assets.realtime.job import decision_service_job, transaction_decisions

defs = Definitions(assets=[transaction_decisions], jobs=[decision_service_job])
