"""The Delta lane: decision records (the decisions topic) into bronze, the DLQ, silver, gold and alerts.

The decision service has validated, enriched, featured and scored every event; its record carries the
raw event, the silver row and the score. A micro-batch therefore only parses and writes: no windows, no
reference joins, no model. Every append is labelled with its micro-batch (the
commit's userMetadata `<lane>:<table>:<delivery day>@<batch id>`), gold included, so a micro-batch replayed
after a crash writes nothing twice: a replay can only be the first micro-batch a writer
runs (Spark re-runs the one batch whose commit it did not record), so that batch, and only that one, first reads
which of its labels the tables' recent commits already hold and skips those writes. The later batches of a run
append without any lookup. (Delta's own idempotent-write ids, txnAppId/txnVersion, do the same check on every
write, and delta-spark 4.4 answers it with a full state reconstruction, three Spark jobs and about a second a
table a batch on this machine; the daily assets and the file stream keep them.)

A decision the service emitted twice (it restarted from a state snapshot and re-decided the events since)
is identical, and is dropped here: the service publishes the decision of input partition p to decisions
partition p in input-offset order (an idempotent, gap-free producer), so a record whose input offset is
not beyond the highest one already written for its input partition is a re-emission. That high-water mark
is recorded with each micro-batch in `stream_batches` and read back, as of before the batch, on a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Callable

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from catalog import ALERTS, DLQ, GOLD, SILVER
from compliance_assets.ml.gold import GOLD_COLUMNS
from compliance_assets.ml.scoring import TOP_FEATURE_TYPE
from compliance_assets.streaming.microbatch import BRONZE, PROGRESS, PROGRESS_SCHEMA, BatchReport, BatchWriter, PartitionStats, _Writes, append_batch
from compliance_assets.transforms.enrichment import mask_payload_pii
from compliance_assets.transforms.ingestion import BRONZE_SCHEMA, bronze_rows, decoded_payload
from compliance_assets.transforms.features import HISTORY_COLUMNS, HISTORY_SCHEMA
from compliance_assets.transforms.pipeline import DLQ_COLUMNS, SILVER_COLUMNS, ReferenceFrames, check_batch, silver_frame
from contracts import load_contract, pii_fields
from contracts.spark import struct_type
from resources.lake import LakeResource

REJECTED, SCORED, DUPLICATE = "REJECTED", "SCORED", "DUPLICATE"
OFFSETS_COLUMN = "input_offsets"  # stream_batches: the highest input offset written per input partition, through this batch
PII_FIELDS = tuple(pii_fields(load_contract("transactions")))
LANE_PROGRESS_SCHEMA = T.StructType([*PROGRESS_SCHEMA.fields, T.StructField(OFFSETS_COLUMN, T.StringType())])


def decision_schema(silver: T.StructType) -> T.StructType:
    """The decision record's JSON shape as Spark reads it (decisions.Decision.record); `silver`: the silver table's types."""
    return T.StructType(
        [
            T.StructField("transaction_id", T.StringType()),
            T.StructField("account_id", T.StringType()),
            T.StructField("outcome", T.StringType()),
            T.StructField("ingest_id", T.StringType()),
            T.StructField("source", T.StringType()),
            T.StructField("source_file", T.StringType()),
            T.StructField("source_line", T.LongType()),
            T.StructField("payload", T.StringType()),
            T.StructField("payload_b64", T.StringType()),
            T.StructField("pii", T.StructType([T.StructField(f, T.StringType()) for f in PII_FIELDS])),
            T.StructField("arrived_at", T.TimestampType()),
            T.StructField("delivery_date", T.DateType()),
            T.StructField("reason_codes", T.ArrayType(T.StringType())),
            T.StructField("silver", T.StructType([f for f in silver.fields if f.name not in ("dagster_run_id", "processed_at")])),
            T.StructField("risk_score", T.DoubleType()),
            T.StructField("risk_band", T.StringType()),
            T.StructField("top_features", TOP_FEATURE_TYPE),
            T.StructField("alert_id", T.StringType()),
            T.StructField("alert_reasons", T.ArrayType(T.StringType())),
            T.StructField("model_name", T.StringType()),
            T.StructField("model_version", T.StringType()),
            T.StructField("model_run_id", T.StringType()),
            T.StructField("decided_at", T.TimestampType()),
        ]
    )


def silver_schema(spark: SparkSession) -> T.StructType:
    """The silver table's columns and types as the batch path writes them: pipeline.silver_frame planned over
    empty inputs (no data is read), so the lane and the daily assets share one definition."""
    def empty(table: str) -> DataFrame:
        return spark.createDataFrame([], struct_type(table))

    bronze = spark.createDataFrame([], BRONZE_SCHEMA)
    fx = spark.createDataFrame([], "currency string, event_date date, fx_rate_date date, fx_rate_to_base double")
    refs = ReferenceFrames(empty("kyc_profiles"), empty("account_limits"), fx, empty("merchant_profiles"), empty("watchlists"))
    batch = check_batch(bronze, refs, "2000-01-01")
    history = spark.createDataFrame([], HISTORY_SCHEMA).select(*HISTORY_COLUMNS)
    schema = silver_frame(batch, refs, spark.createDataFrame([], "ingest_id string"), history, "", None).schema
    batch.unpersist()
    return schema


class DecisionLaneWriter(BatchWriter):
    """The foreachBatch function of the Delta lane."""

    def __init__(self, spark: SparkSession, lake: LakeResource, stream: str, pii_salt: str, run_id: str | None, on_batch: Callable[[BatchReport], None] | None = None):
        self.lake, self.stream, self.salt, self.run_id, self.on_batch = lake, stream, pii_salt, run_id, on_batch
        self.silver = silver_schema(spark)
        self.schema = decision_schema(self.silver)
        self._offsets: dict[str, int] | None = None
        self._offsets_batch: int | None = None
        self._done: int | None = None  # the last micro-batch this writer completed
        self._in_flight: int | None = None  # a micro-batch started and not completed (it failed): the next one may be its replay
        self._committed: set[str] = set()  # a possible replay's labels already in the tables

    # ---- the re-emission high-water mark -------------------------------------------------------
    def written_offsets(self, spark: SparkSession, batch_id: int) -> dict[str, int]:
        """The highest input offset written per input partition by the micro-batches before `batch_id`."""
        if self._offsets is not None and self._offsets_batch == batch_id:
            return self._offsets
        offsets: dict[str, int] = {}
        if self.lake.table_exists(spark, PROGRESS):
            progress = self.lake.read(spark, PROGRESS)
            if OFFSETS_COLUMN in progress.columns:
                last = (
                    progress.where((F.col("stream") == self.stream) & (F.col("batch_id") < batch_id) & F.col(OFFSETS_COLUMN).isNotNull())
                    .orderBy(F.col("batch_id").desc()).select(OFFSETS_COLUMN).limit(1).collect()
                )
                if last:
                    offsets = json.loads(last[0][0])
        self._offsets, self._offsets_batch = offsets, batch_id
        return offsets

    def process(self, records: DataFrame, batch_id: int) -> BatchReport:
        """Parse the micro-batch's decision records, drop re-emissions, write every table."""
        started = time.perf_counter()
        spark = records.sparkSession
        report = BatchReport(batch_id=batch_id)
        replay_possible = self._in_flight is not None or self._done is None or batch_id != self._done + 1
        self._in_flight = batch_id
        offsets = self.written_offsets(spark, batch_id)
        parsed = records.select(F.from_json(F.col("value").cast("string"), self.schema).alias("d"), F.col("partition").alias("_dp"), F.col("offset").alias("_do")).select("d.*", "_dp", "_do")
        first = Window.partitionBy("ingest_id").orderBy("_dp", "_do")
        mark = F.lit(-1).cast("long")
        for source_file, offset in offsets.items():
            mark = F.when(F.col("source_file") == source_file, F.lit(offset)).otherwise(mark)
        fresh = parsed.where(F.col("source_line") > mark).withColumn("_rn", F.row_number().over(first)).where("_rn = 1").drop("_rn", "_dp", "_do")
        d = fresh.localCheckpoint(eager=True)
        t = report.mark("parse", started)
        tallies, by_partition, overall = self._tallies(d)
        t = report.mark("tallies", t)
        if not tallies:
            report.seconds = round(time.perf_counter() - started, 3)
            self._done, self._in_flight = batch_id, None
            return report
        new_offsets = dict(offsets)
        for r in tallies:
            new_offsets[r.source_file] = max(new_offsets.get(r.source_file, -1), r.max_offset)
        report.delivery_dates = sorted({str(r.delivery_date) for r in tallies})
        report.records = sum(r.n for r in tallies)
        report.dlq_rows = sum(r.rejected for r in tallies)
        report.duplicates = sum(r.duplicates for r in tallies)
        if replay_possible:
            self._committed = {label for table in (BRONZE, DLQ, SILVER, GOLD, ALERTS, PROGRESS)
                               for label in self.lake.labelled_commits(spark, table, f"{self.stream}:{table}:")}
            t = report.mark("replay_check", t)

        # gold first, alone (the table near-time readers wait for: committed ~0.35 s after the tallies instead of
        # last of five parallel appends), then the other four in parallel; the micro-batch takes as long as before
        days = {day: d.where(F.col("delivery_date") == F.lit(day).cast("date")) for day in report.delivery_dates}
        writes = _Writes(report, workers=5)
        try:
            for day, of_day in days.items():
                writes.submit("write_gold", self._append, self._gold(of_day), GOLD, day, batch_id)
            writes.wait()
            gold_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            writes = _Writes(report, workers=4)
            for day, of_day in days.items():
                writes.submit("write_bronze", self._append, self._bronze(of_day), BRONZE, day, batch_id)
                writes.submit("write_dlq", self._append, self._dlq(of_day), DLQ, day, batch_id)
                writes.submit("write_silver", self._append, self._silver(of_day), SILVER, day, batch_id)
                writes.submit("write_alerts", self._append, self._alerts(of_day), ALERTS, day, batch_id)
            writes.wait()
            t = report.mark("writes", t)
        finally:
            writes.wait(raise_errors=False)
        self._report(by_partition, overall, gold_at, report)
        report.seconds = round(time.perf_counter() - started, 3)
        self._record_progress(spark, report, new_offsets)
        self._offsets, self._offsets_batch = new_offsets, batch_id + 1
        self._done, self._in_flight, self._committed = batch_id, None, set()
        return report

    def _append(self, df: DataFrame, table: str, day: str, batch_id: int) -> None:
        """Append once: the commit carries the micro-batch's label, and a replay skips a label already committed."""
        label = f"{self.stream}:{table}:{day}@{batch_id}"
        if label not in self._committed:
            append_batch(df, self.lake, table, label=label)

    def _bronze(self, d: DataFrame) -> DataFrame:
        raw = F.unbase64("payload_b64")
        text, invalid = decoded_payload(raw)
        lines = d.select("source_file", "source_line", F.when(F.col("payload_b64").isNotNull(), text).otherwise(F.col("payload")).alias("payload"),
                         F.when(F.col("payload_b64").isNotNull(), invalid).alias("payload_bytes"), "arrived_at", "delivery_date")
        return bronze_rows(lines, "kafka", F.col("delivery_date"), self.run_id, ingested_at=F.col("arrived_at"), payload_bytes=F.col("payload_bytes")).select(*BRONZE_SCHEMA.fieldNames())

    def _dlq(self, d: DataFrame) -> DataFrame:
        rejected = d.where(F.col("outcome") == REJECTED).select("*", *[F.col(f"pii.{f}").alias(f) for f in PII_FIELDS])
        return rejected.select(
            "ingest_id", F.col("delivery_date").alias("event_date"), "source", "source_file", "source_line",
            mask_payload_pii(F.col("payload"), "transactions", self.salt).alias("payload"), F.lit(None).cast("string").alias("source_payload"),
            "transaction_id", "reason_codes", F.col("reason_codes")[0].alias("primary_reason"), F.lit(self.run_id).cast("string").alias("dagster_run_id"),
            F.current_timestamp().alias("rejected_at"),
        ).select(*DLQ_COLUMNS)

    def _silver(self, d: DataFrame) -> DataFrame:
        return d.where(F.col("outcome") == SCORED).select("silver.*").withColumns(
            {"dagster_run_id": F.lit(self.run_id).cast("string"), "processed_at": F.current_timestamp()}
        ).select(*SILVER_COLUMNS)

    def _gold(self, d: DataFrame) -> DataFrame:
        latency = (F.unix_micros("decided_at") - F.unix_micros("arrived_at")) / 1000.0
        return d.where(F.col("outcome") == SCORED).select(
            "transaction_id", F.col("silver.event_time").alias("event_time"), "account_id", "risk_score", "risk_band", "top_features",
            "model_name", "model_version", "model_run_id", F.lit(self.run_id or "").alias("pipeline_run_id"), F.col("silver.dq_status").alias("dq_status"),
            F.col("decided_at").alias("scored_at"), latency.alias("latency_ms"), F.col("silver.event_date").alias("event_date"),
            F.col("delivery_date").alias("ingest_date"),
        ).select(*GOLD_COLUMNS)

    def _alerts(self, d: DataFrame) -> DataFrame:
        s = lambda c: F.col(f"silver.{c}").alias(c)  # noqa: E731
        return d.where((F.col("outcome") == SCORED) & (F.size("alert_reasons") > 0)).select(
            "alert_id", "transaction_id", s("event_time"), "account_id", s("merchant_id"), s("amount_base"),
            F.col("alert_reasons")[0].alias("primary_reason"), F.col("alert_reasons").alias("reasons"), "risk_score", "risk_band", "top_features",
            "model_name", "model_version", s("dq_status"), F.col("decided_at").alias("raised_at"), F.lit(self.run_id or "").alias("pipeline_run_id"),
            s("event_date"), F.col("delivery_date").alias("ingest_date"),
        )

    def _tallies(self, d: DataFrame) -> tuple[list, list, list]:
        """One pass over the batch: records per delivery day and input partition (outcomes, the offset high-water
        mark), and per event-date partition the scored rows, late rows, alerts and arrival-time quantiles (the
        event-to-gold latency is the gold commit's time minus these, known only after the writes)."""
        scored = F.col("outcome") == SCORED
        arrived = F.when(scored, F.unix_micros("arrived_at") / 1000.0)
        rows = (
            d.select("delivery_date", "source_file", "outcome", "source_line", "alert_reasons", F.col("silver.event_date").alias("event_date"),
                     F.col("silver.is_late_arrival").alias("late"), arrived.alias("arrived_ms"))
            .groupingSets(
                [["delivery_date", "source_file"], ["event_date", "delivery_date"], []], "delivery_date", "source_file", "event_date",
            )
            .agg(
                F.grouping_id().alias("g"), F.count(F.lit(1)).alias("n"), F.count(F.when(F.col("outcome") == REJECTED, 1)).alias("rejected"),
                F.count(F.when(F.col("outcome") == DUPLICATE, 1)).alias("duplicates"), F.max("source_line").alias("max_offset"),
                F.count(F.when(scored, 1)).alias("rows"), F.count(F.when(scored & F.col("late"), 1)).alias("late"),
                F.count(F.when(scored & (F.size("alert_reasons") > 0), 1)).alias("alerts"),
                F.percentile_approx("arrived_ms", [0.5, 0.05], 1000).alias("q"), F.min("arrived_ms").alias("first_ms"),
            )
            .collect()
        )
        # grouping_id's bits, in the order delivery_date, source_file, event_date, are set for the columns not grouped on
        tallies = [r for r in rows if r.g == 0b001]
        by_partition = [r for r in rows if r.g == 0b010 and r.rows]
        overall = [r for r in rows if r.g == 0b111 and r.rows]
        return tallies, by_partition, overall

    def _report(self, by_partition: list, overall: list, gold_at: dt.datetime, report: BatchReport) -> None:
        """Per event-date partition: rows, late rows, alerts and event-to-gold latency (arrival to the gold commit)."""
        at_ms = (gold_at - dt.datetime(1970, 1, 1)) / dt.timedelta(milliseconds=1)
        for r in sorted(by_partition, key=lambda r: (r.event_date, r.delivery_date)):
            report.partitions.append(PartitionStats(str(r.event_date), str(r.delivery_date), r.rows, r.late, r.alerts,
                                                    at_ms - r.q[0], at_ms - r.q[1], at_ms - r.first_ms))
        if overall:
            report.latency_p50_ms, report.latency_p95_ms = at_ms - overall[0].q[0], at_ms - overall[0].q[1]

    def _record_progress(self, spark: SparkSession, report: BatchReport, offsets: dict[str, int]) -> None:
        """The stream_batches rows of the micro-batch, with the input high-water mark (written last: it marks the batch done)."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        marks = json.dumps(offsets, sort_keys=True)
        parts = report.partitions or [PartitionStats(report.delivery_dates[0], report.delivery_dates[0], 0, 0, 0, None, None, None)]
        rows = [
            (
                self.stream, report.batch_id, dt.date.fromisoformat(p.event_date), dt.date.fromisoformat(p.ingest_date), p.scored_rows, p.late_rows,
                p.alerts, p.latency_p50_ms, p.latency_p95_ms, p.latency_max_ms, report.records, report.dlq_rows, report.duplicates,
                report.seconds, None, self.run_id, now, marks,
            )
            for p in parts
        ]
        self._append(spark.createDataFrame(rows, LANE_PROGRESS_SCHEMA), PROGRESS, "all", report.batch_id)
