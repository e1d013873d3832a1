"""Streaming sources: Kafka (Event Hubs in production) and the landing folder, as one record shape.

Every source yields (source, source_file, source_line, payload, arrived_at, delivery_date): the
same bronze key the batch path builds, so a record has one ingest id however it came in. For Kafka
the "file" is topic/partition and the "line" the offset; arrival is the broker's timestamp and the
delivery day its UTC date (or a fixed day when a historical day is replayed through the stream).
For files, lines are numbered exactly as the batch reader numbers them and the delivery day is the
folder's `event_date=<day>`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from compliance_assets.transforms.ingestion import LANDING_SOURCE, decoded_payload, split_lines
from resources.kafka import KafkaResource
from resources.lake import LakeResource

KAFKA_SOURCE = "kafka"
RECORD_COLUMNS = ("source", "source_file", "source_line", "payload", "payload_bytes", "file_records", "arrived_at", "delivery_date")


def kafka_records(spark: SparkSession, kafka: KafkaResource, delivery_date: str = "", max_offsets_per_trigger: int = 0) -> DataFrame:
    """Transactions from the Kafka topic (one JSON document per message value)."""
    reader = spark.readStream.format("kafka").options(**kafka.spark_options())
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    day = F.lit(delivery_date).cast("date") if delivery_date else F.to_date("timestamp")
    text, invalid_bytes = decoded_payload(F.col("value"))
    return reader.load().select(
        F.lit(KAFKA_SOURCE).alias("source"),
        F.concat_ws("/", F.col("topic"), F.col("partition").cast("string")).alias("source_file"),
        F.col("offset").alias("source_line"),
        text.alias("payload"),
        invalid_bytes.alias("payload_bytes"),
        F.lit(None).cast("long").alias("file_records"),  # a topic partition has no end to count to
        F.col("timestamp").alias("arrived_at"),
        day.alias("delivery_date"),
    )


def decision_records(spark: SparkSession, kafka: KafkaResource, topic: str, max_offsets_per_trigger: int = 0) -> DataFrame:
    """Decision records from the decision service's decisions topic (the Delta lane's input): the record
    (JSON) with its topic partition and offset."""
    reader = spark.readStream.format("kafka").options(**{**kafka.spark_options(), "subscribe": topic})
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return reader.load().select("value", "partition", "offset", "timestamp")


def landing_records(spark: SparkSession, lake: LakeResource, max_files_per_trigger: int = 1, days_glob: str = "*") -> DataFrame:
    """Transactions from JSON-lines files landing in landing/transactions/event_date=<day>/ (the
    embedded default), a delivery file per micro-batch by default."""
    files = (
        spark.readStream.format("text")
        .option("wholetext", "true")
        .option("maxFilesPerTrigger", str(max_files_per_trigger))
        .option("pathGlobFilter", "*.jsonl*")
        .load(lake.landing_path("transactions", f"event_date={days_glob}"))
        .select(
            "value",
            F.col("_metadata.file_path").alias("path"),
            F.col("_metadata.file_modification_time").alias("arrived_at"),
            F.to_date(F.regexp_extract(F.col("_metadata.file_path"), r"event_date=(\d{4}-\d{2}-\d{2})", 1)).alias("delivery_date"),
        )
    )
    lines = split_lines(files, "arrived_at", "delivery_date")
    return lines.select(F.lit(LANDING_SOURCE).alias("source"), "source_file", "source_line", F.col("line").alias("payload"), F.col("line_bytes").alias("payload_bytes"), F.col("file_lines").alias("file_records"), "arrived_at", "delivery_date")
