"""transaction_stream: the Dagster job that runs the streaming query (launched and kept alive by
the stream supervisor sensor; stopped with Terminate in the UI).

Each micro-batch reports runtime materialisations of the daily partitions it touched: the delivery
day of bronze and the DLQ, and every event-date partition of silver, gold and alerts (late
arrivals land in their own event date), with row counts, late arrivals and p50/p95 latency.
"""

from dagster import AssetKey, AssetMaterialization, AssetSpec, Config, MetadataValue, OpExecutionContext, in_process_executor, job, op
from dagster_pyspark import PySparkResource
from pydantic import Field

from compliance_assets.streaming.microbatch import BRONZE, PROGRESS, BatchReport
from compliance_assets.streaming.stream import StreamOptions, run_stream
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from resources.kafka import KafkaResource
from resources.lake import LakeResource
from resources.masking import PiiMaskingResource
from resources.mlflow import ModelRegistryResource
from catalog import ALERTS, DLQ, GOLD, SILVER

STREAM_JOB = "transaction_stream"
CONCURRENCY_KEY = "streaming"

stream_batches = AssetSpec(
    PROGRESS,
    group_name="streaming",
    kinds={"delta"},
    description=(
        "One row per streaming micro-batch and event-date partition it wrote: rows scored, late arrivals, alerts, "
        "event-to-score latency p50/p95/max, the batch's records, DLQ rows and duplicates, the model version. "
        "The evidence for the streaming latency SLO."
    ),
    metadata={"partition_column": "event_date", "key": "stream, batch_id, event_date"},
)


class StreamConfig(Config):
    source: str = Field(
        default="decisions",
        description="decisions (the Delta lane: the decision service's <topic>-decisions, nothing recomputed), kafka (the transactions "
        "topic itself, features and scores computed in Spark: without a decision service) or files (landing/transactions/).",
    )
    trigger_seconds: float = Field(default=1.0, description="Micro-batch interval; a batch that takes longer starts the next one at once.")
    available_now: bool = Field(default=False, description="Process what is available, then stop (replays); false = run until terminated.")
    stop_after_seconds: float = Field(default=0.0, description="Stop after this long (0 = until terminated); the sensor starts the next run.")
    max_files_per_trigger: int = Field(default=1, description="files: delivery files per micro-batch.")
    max_offsets_per_trigger: int = Field(default=0, description="kafka: records per micro-batch at most (0 = all available).")
    delivery_date: str = Field(default="", description="kafka: replay as this delivery day (YYYY-MM-DD); empty = each record's arrival date.")
    days_glob: str = Field(default="*", description="files: which landing/transactions/event_date=<day> folders to watch (a glob on YYYY-MM-DD).")
    lateness_days: int = Field(default=DEFAULT_LATENESS_DAYS, description="Records older than this many days go to the DLQ (ARRIVED_TOO_LATE).")


def batch_events(report: BatchReport) -> list[AssetMaterialization]:
    """The runtime materialisations a micro-batch reports, one per table and daily partition."""
    events = []
    for day in report.delivery_dates:
        meta = {"micro_batch": report.batch_id, "records": report.records, "dlq_rows": report.dlq_rows, "duplicates": report.duplicates}
        events.append(AssetMaterialization(asset_key=AssetKey(BRONZE), partition=day, metadata={"micro_batch": report.batch_id, "records": report.records}))
        events.append(AssetMaterialization(asset_key=AssetKey(DLQ), partition=day, metadata=meta))
    for p in report.partitions:
        meta = {
            "micro_batch": report.batch_id,
            "delivery_day": p.ingest_date,
            "dagster/row_count": p.scored_rows,
            "late_arrivals": p.late_rows,
            "latency_p50_ms": MetadataValue.float(float(p.latency_p50_ms or 0.0)),
            "latency_p95_ms": MetadataValue.float(float(p.latency_p95_ms or 0.0)),
        }
        events.append(AssetMaterialization(asset_key=AssetKey(SILVER), partition=p.event_date, metadata=meta))
        events.append(AssetMaterialization(asset_key=AssetKey(GOLD), partition=p.event_date, metadata=meta))
        events.append(AssetMaterialization(asset_key=AssetKey(ALERTS), partition=p.event_date, metadata={**meta, "alerts": p.alerts}))
    if report.partitions:
        events.append(
            AssetMaterialization(
                asset_key=AssetKey(PROGRESS),
                metadata={"micro_batch": report.batch_id, "batch_seconds": MetadataValue.float(report.seconds), "latency_p95_ms": MetadataValue.float(float(report.latency_p95_ms or 0.0))},
            )
        )
    return events


@op(description="Run the transaction stream: validate, enrich, score and write every micro-batch until terminated.")
def run_transaction_stream(
    context: OpExecutionContext,
    config: StreamConfig,
    spark: PySparkResource,
    lake: LakeResource,
    masking: PiiMaskingResource,
    model_registry: ModelRegistryResource,
    kafka: KafkaResource,
) -> None:
    options = StreamOptions(
        source=config.source, trigger_seconds=config.trigger_seconds, available_now=config.available_now,
        stop_after_seconds=config.stop_after_seconds, max_files_per_trigger=config.max_files_per_trigger,
        max_offsets_per_trigger=config.max_offsets_per_trigger, delivery_date=config.delivery_date, days_glob=config.days_glob,
        lateness_days=config.lateness_days,
    )

    def on_batch(report: BatchReport) -> None:
        for event in batch_events(report):
            context.log_event(event)
        context.log.info(
            f"micro-batch {report.batch_id}: {report.records} records, {report.dlq_rows} to the DLQ, {report.duplicates} duplicates, "
            f"{sum(p.scored_rows for p in report.partitions)} scored in {report.seconds:.1f}s; latency p50 {report.latency_p50_ms or 0:.0f} ms, "
            f"p95 {report.latency_p95_ms or 0:.0f} ms; partitions {', '.join(p.event_date for p in report.partitions)}"
        )

    batches = run_stream(spark.spark_session, lake, model_registry, kafka, masking.salt, context.run_id, options, on_batch, context.log.info)
    context.log.info(f"stream stopped after {batches} micro-batches with records")


@job(
    name=STREAM_JOB,
    executor_def=in_process_executor,
    tags={"dagster/concurrency_key": CONCURRENCY_KEY},
    description=(
        "The streaming pipeline: Kafka (Event Hubs) or the landing folder -> bronze -> DLQ / silver -> champion score -> "
        "gold (MERGE) -> alerts, every micro-batch, exactly once from the lake checkpoint. Launched and relaunched by "
        "stream_supervisor_sensor; stop it with Terminate (and turn the sensor off)."
    ),
)
def transaction_stream_job():
    run_transaction_stream()
