"""The Definitions object: each domain publishes its own (assets, checks, jobs, schedules, sensors) in its
`definitions.py`; this module merges them with the jobs that span domains, the resources and the executor.

Spark jobs use the in-process executor so all steps of a run share one SparkSession (one JVM
start per run instead of one per step).
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from compliance_assets.ingest import definitions as ingest_defs
from compliance_assets.investigations import definitions as investigations_defs
from compliance_assets.jobs import daily_pipeline_job, daily_pipeline_schedule, replay_job
from compliance_assets.ml import definitions as ml_defs
from compliance_assets.monitoring import definitions as monitoring_defs
from compliance_assets.operations import definitions as ops_defs
from compliance_assets.realtime import definitions as realtime_defs
from compliance_assets.reporting import definitions as reporting_defs
from compliance_assets.serving import definitions as serving_defs
from compliance_assets.streaming import definitions as streaming_defs
from resources import build_resources

DOMAINS = (ingest_defs, ml_defs, monitoring_defs, investigations_defs, reporting_defs, serving_defs, streaming_defs, realtime_defs, ops_defs)

defs = Definitions.merge(
    *(domain.defs for domain in DOMAINS),
    Definitions(jobs=[daily_pipeline_job, replay_job], schedules=[daily_pipeline_schedule], resources=build_resources(), executor=in_process_executor),
)
