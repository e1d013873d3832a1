"""The streaming domain: the Delta lane (transaction_stream job, its stream_batches table) and the supervisor sensors
that keep it and the decision service running."""

from dagster import Definitions

from compliance_assets.streaming.job import stream_batches, transaction_stream_job
from compliance_assets.streaming.supervisor import decision_service_supervisor_sensor, stream_supervisor_sensor

defs = Definitions(assets=[stream_batches], jobs=[transaction_stream_job], sensors=[decision_service_supervisor_sensor, stream_supervisor_sensor])
