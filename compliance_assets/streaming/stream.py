"""The transaction stream: a Spark Structured Streaming query whose micro-batches run the batch path.

`run_stream` starts the query with its checkpoint in the lake (lake/checkpoints/<stream>), waits
until it ends (available-now), is stopped (a Dagster termination, `stop_after_seconds`) or fails, and
stops it cleanly. The Dagster job and the command line both call it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import SparkSession

from compliance_assets.streaming.microbatch import BatchReport, MicroBatchProcessor, StreamModel
from compliance_assets.streaming.decision_lane import DecisionLaneWriter
from compliance_assets.streaming.inputs import KAFKA_SOURCE, decision_records, kafka_records, landing_records
from compliance_assets.transforms.ingestion import LANDING_SOURCE
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from resources.kafka import KafkaResource, decisions_topic
from resources.lake import LakeResource
from resources.mlflow import ModelRegistryResource


@dataclass(frozen=True)
class StreamOptions:
    """How the stream runs (the Dagster job's config and the command line's flags)."""

    source: str = "files"  # "files" (landing folder), "kafka" (the transactions topic) or "decisions" (the decision service's topic: the Delta lane)
    trigger_seconds: float = 1.0
    available_now: bool = False  # process what is there, then stop (replays, tests)
    stop_after_seconds: float = 0.0  # 0 = until stopped
    max_files_per_trigger: int = 1
    max_offsets_per_trigger: int = 0  # 0 = everything available
    delivery_date: str = ""  # Kafka only: a fixed delivery day to replay a historical day; "" = arrival date
    days_glob: str = "*"  # files only: which landing days to watch
    lateness_days: int = DEFAULT_LATENESS_DAYS
    shuffle_partitions: int = 2


def stream_name(options: StreamOptions, kafka: KafkaResource) -> str:
    """The stream's identity: names its checkpoint folder and its idempotent-write ids."""
    if options.source == "decisions":
        return f"decisions_{decisions_topic(kafka)}"
    return f"transactions_kafka_{kafka.topic}" if options.source == "kafka" else "transactions_landing"


def run_stream(
    spark: SparkSession,
    lake: LakeResource,
    model_registry: ModelRegistryResource,
    kafka: KafkaResource,
    pii_salt: str,
    run_id: str | None,
    options: StreamOptions,
    on_batch: Callable[[BatchReport], None] | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Run the stream until it ends; returns the number of micro-batches processed."""
    if options.source not in ("files", "kafka", "decisions"):
        raise ValueError(f"unknown stream source {options.source!r}: use 'files', 'kafka' or 'decisions'")
    if options.source == "decisions":
        return _run_decision_lane(spark, lake, kafka, pii_salt, run_id, options, on_batch, log)
    if options.source == "kafka":
        _preflight(kafka, log)
    version, model = model_registry.champion()  # fails clearly before anything is read
    name = stream_name(options, kafka)
    report = _Batches(on_batch)
    processor = MicroBatchProcessor(
        lake, StreamModel(model_registry.model_name, str(version.version), version.run_id, model), name, pii_salt, run_id,
        options.lateness_days, KAFKA_SOURCE if options.source == "kafka" else LANDING_SOURCE, report,
    )
    if options.source == "kafka":
        records = kafka_records(spark, kafka, options.delivery_date, options.max_offsets_per_trigger)
        log(f"stream {name}: reading {kafka.describe()}")
    else:
        records = landing_records(spark, lake, options.max_files_per_trigger, options.days_glob)
        log(f"stream {name}: watching {lake.landing_path('transactions')}")
    log(f"stream {name}: starting with champion {model_registry.model_name} v{version.version}, checkpoint {lake.checkpoint_path(name)}")
    _await(records, name, processor, lake, options, log)
    return report.count


def _run_decision_lane(spark: SparkSession, lake: LakeResource, kafka: KafkaResource, pii_salt: str, run_id: str | None, options: StreamOptions,
                       on_batch: Callable[[BatchReport], None] | None, log: Callable[[str], None]) -> int:
    """The Delta lane: the decisions topic into the lake (decision_lane.py), no features or scores recomputed."""
    topic = decisions_topic(kafka)
    _preflight(kafka.model_copy(update={"topic": topic}), log)
    name = stream_name(options, kafka)
    report = _Batches(on_batch)
    writer = DecisionLaneWriter(spark, lake, name, pii_salt, run_id, report)
    log(f"stream {name}: the Delta lane reading {topic}, checkpoint {lake.checkpoint_path(name)}")
    _await(decision_records(spark, kafka, topic, options.max_offsets_per_trigger), name, writer, lake, options, log)
    return report.count


class _Batches:
    """Counts the micro-batches that had records and passes each report on."""

    def __init__(self, on_batch: Callable[[BatchReport], None] | None):
        self.count, self.on_batch = 0, on_batch

    def __call__(self, report: BatchReport) -> None:
        self.count += 1
        if self.on_batch is not None:
            self.on_batch(report)


def _preflight(kafka: KafkaResource, log: Callable[[str], None]) -> None:
    """Wrong credentials, an untrusted certificate, an unreachable endpoint or a missing topic fail the run here,
    at once and with a clear message (Spark's Kafka source would keep retrying)."""
    checked = kafka.preflight()
    log(f"kafka pre-flight: {checked['topic']} ({checked['partitions']} partitions) reachable at {checked['bootstrap_servers']} "
        f"over {checked['security_protocol']}" + (f" as {checked['sasl_username']}" if "sasl_username" in checked else ""))


def _await(records, name: str, batch_function, lake: LakeResource, options: StreamOptions, log: Callable[[str], None]) -> None:
    """Start the query, wait until it ends, is stopped or fails; stop it cleanly and re-raise its failure."""
    spark = records.sparkSession
    # micro-batches are small: few shuffle partitions, and no adaptive re-planning (its extra
    # planning round per stage costs more than it saves at this size)
    stream_conf = {"spark.sql.shuffle.partitions": str(options.shuffle_partitions), "spark.sql.adaptive.enabled": "false"}
    saved = {key: spark.conf.get(key) for key in stream_conf}
    for key, value in stream_conf.items():
        spark.conf.set(key, value)
    writer = records.writeStream.queryName(name).foreachBatch(batch_function).option("checkpointLocation", lake.checkpoint_path(name))
    writer = writer.trigger(availableNow=True) if options.available_now else writer.trigger(processingTime=f"{options.trigger_seconds} seconds")
    deadline = time.monotonic() + options.stop_after_seconds if options.stop_after_seconds else None
    query = None
    try:
        query = writer.start()
        while not query.awaitTermination(2):
            if deadline is not None and time.monotonic() >= deadline:
                log(f"stream {name}: stopping after {options.stop_after_seconds:.0f} s")
                break
    finally:
        # a Dagster termination (or any error) stops the query between or within micro-batches;
        # the checkpoint makes the next run resume from the last committed one
        if query is not None and query.isActive:
            query.stop()
        for key, value in saved.items():  # the session may be shared (tests): leave it as it was
            spark.conf.set(key, value)
    query.awaitTermination()  # re-raises the query's failure, if any
