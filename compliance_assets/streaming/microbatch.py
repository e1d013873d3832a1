"""One streaming micro-batch, end to end: bronze, DLQ, silver, scores, gold and alerts.

Every step calls the batch path's functions (validation and reference checks, deduplication,
behaviour features, model features, scoring, alert rules), so a streamed transaction gets what the
daily assets would give it. Per-account windows see every earlier micro-batch through the silver
table. Exactly once: appends carry Delta's idempotent-write ids (txnAppId = stream and delivery day,
txnVersion = micro-batch id) and gold is an insert-only MERGE, so a micro-batch replayed after a
crash writes nothing twice; the history it reads excludes its own records for the same reason.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import reduce
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.ingest.silver import DLQ, SILVER, reference_frames
from compliance_assets.transforms.alert_rules import RULE_COLUMNS, alert_rows
from catalog import ALERTS
from compliance_assets.ml.features_training import DISPOSITIONS, OUTCOMES, read_outcomes, table_version
from compliance_assets.ml.gold import GOLD_COLUMNS, insert_new_scores
from compliance_assets.ml.model_features import merchant_risk_between, model_feature_frame
from compliance_assets.ml.risk_model import RiskModel
from compliance_assets.ml.scoring import PASSTHROUGH, score_frame, with_model_ids
from compliance_assets.transforms.features import HISTORY_COLUMNS, HISTORY_SCHEMA
from compliance_assets.transforms.ingestion import BRONZE_SCHEMA, bronze_rows
from compliance_assets.transforms.pipeline import ReferenceFrames, check_batch, dlq_frame, duplicate_ingest_ids, history_window, silver_frame
from resources.lake import LakeResource

BRONZE = "transactions_bronze"
PROGRESS = "stream_batches"
PRIOR_SCHEMA = T.StructType([*HISTORY_SCHEMA.fields, T.StructField("ingest_id", T.StringType())])
PRIOR_COLUMNS = (*HISTORY_COLUMNS, "ingest_id")
HISTORY_COMPACT_EVERY = 20  # micro-batches of history kept as separate in-memory pieces before one merge
PROGRESS_SCHEMA = T.StructType(
    [
        T.StructField("stream", T.StringType()),
        T.StructField("batch_id", T.LongType()),
        T.StructField("event_date", T.DateType()),
        T.StructField("ingest_date", T.DateType()),
        T.StructField("scored_rows", T.LongType()),
        T.StructField("late_rows", T.LongType()),
        T.StructField("alerts", T.LongType()),
        T.StructField("latency_p50_ms", T.DoubleType()),
        T.StructField("latency_p95_ms", T.DoubleType()),
        T.StructField("latency_max_ms", T.DoubleType()),
        T.StructField("batch_records", T.LongType()),
        T.StructField("batch_dlq_rows", T.LongType()),
        T.StructField("batch_duplicates", T.LongType()),
        T.StructField("batch_seconds", T.DoubleType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("processed_at", T.TimestampType()),
    ]
)


def append_batch(df: DataFrame, lake: LakeResource, table: str, *, once: tuple[str, int] | None = None, label: str | None = None) -> None:
    """Append a stream's micro-batch rows (by event date; bronze, silver and stream_batches of an older release gain
    their new columns), with Delta's idempotent-write ids (`once`) or a commit label (`label`)."""
    lake.append(df, table, partition_by=("event_date",), merge_schema=table in (BRONZE, SILVER, PROGRESS), once=once, label=label)


def append_once(df: DataFrame, lake: LakeResource, table: str, app_id: str, batch_id: int) -> None:
    """Append a stream's micro-batch rows once: Delta skips a (txnAppId, txnVersion) it has already committed, so a
    micro-batch replayed after a crash writes nothing twice."""
    append_batch(df, lake, table, once=(app_id, batch_id))


@dataclass
class PartitionStats:
    """What one micro-batch did to one event-date partition."""

    event_date: str
    ingest_date: str
    scored_rows: int
    late_rows: int
    alerts: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None


@dataclass
class BatchReport:
    """One micro-batch: its records, where they went and how long they took."""

    batch_id: int
    records: int = 0
    dlq_rows: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    delivery_dates: list[str] = field(default_factory=list)
    partitions: list[PartitionStats] = field(default_factory=list)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step, to see where a batch's time goes

    def mark(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - since, 3)
        return now


@dataclass
class StreamModel:
    """The champion the stream scores with (loaded once per run)."""

    name: str
    version: str
    run_id: str | None
    model: RiskModel


class BatchWriter:
    """What the streams' foreachBatch functions share: a micro-batch's appends, once each, and its report."""

    lake: LakeResource
    stream: str
    on_batch: Callable[[BatchReport], None] | None = None

    def process(self, records: DataFrame, batch_id: int) -> BatchReport:
        raise NotImplementedError

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        report = self.process(records, batch_id)
        if self.on_batch is not None and report.records:
            self.on_batch(report)

    def _append(self, df: DataFrame, table: str, day: str, batch_id: int) -> None:
        append_once(df, self.lake, table, f"{self.stream}:{table}:{day}", batch_id)


class MicroBatchProcessor(BatchWriter):
    """The foreachBatch function of the transaction stream (files or the transactions topic)."""

    def __init__(
        self,
        lake: LakeResource,
        model: StreamModel,
        stream: str,
        pii_salt: str,
        run_id: str | None,
        lateness_days: int,
        source: str,
        on_batch: Callable[[BatchReport], None] | None = None,
    ):
        self.lake, self.model, self.stream, self.salt, self.run_id = lake, model, stream, pii_salt, run_id
        self.source = source
        self.lateness_days = lateness_days
        self.on_batch = on_batch
        self._refs: dict[str, ReferenceFrames] = {}
        self._merchant_risk: dict[tuple[str, int], DataFrame] = {}
        self._history_parts: list[DataFrame] = []
        self._history_key: tuple[str, int] | None = None

    # ---- cached per delivery day ------------------------------------------------------------
    def references(self, spark: SparkSession, day: str) -> ReferenceFrames:
        """The day's reference snapshots (the newest available), read once and cached."""
        if day not in self._refs:
            for old in self._refs.values():
                for frame in (old.kyc, old.limits, old.fx, old.merchants, old.watchlists):
                    frame.unpersist()
            self._refs.clear()
            refs = reference_frames(spark, self.lake, day, self.lateness_days, latest_available=True)
            self._refs[day] = ReferenceFrames(*(f.cache() for f in (refs.kyc, refs.limits, refs.fx, refs.merchants, refs.watchlists)))
        return self._refs[day]

    def merchant_risk(self, spark: SparkSession, day: str, merchants: DataFrame) -> DataFrame:
        """Merchant risk for every merchant and event date a delivery on `day` can carry. It only
        depends on deliveries and decisions before each date, so it is computed once per day and
        outcome versions (a new outcome delivery or investigator decision recomputes it)."""
        key = (day, table_version(spark, self.lake, OUTCOMES), table_version(spark, self.lake, DISPOSITIONS))
        if key not in self._merchant_risk:
            self._merchant_risk.clear()
            last_day = dt.date.fromisoformat(day)
            first_scored = last_day - dt.timedelta(days=self.lateness_days)
            dates = spark.range(1).select(F.explode(F.sequence(F.lit(first_scored), F.lit(last_day))).alias("event_date"))
            targets = merchants.select("merchant_id").distinct().crossJoin(dates)
            silver = self.lake.read_or_empty(spark, SILVER, "transaction_id string, merchant_id string, event_date date, ingest_date date")
            # checkpointed, not cached: a cached plan that reads silver is recomputed after every silver write
            risk = merchant_risk_between(targets, silver, read_outcomes(spark, self.lake), first_scored, last_day, self.model.model.label_delay_days)
            self._merchant_risk[key] = risk.localCheckpoint(eager=True)
        return self._merchant_risk[key]

    def history(self, spark: SparkSession, day: str) -> DataFrame:
        """Silver rows the features and duplicate checks of a delivery on `day` look back on, kept
        in memory between micro-batches (read from Delta again when the day changes or another
        writer changed silver) instead of re-reading the table every batch."""
        version = self.lake.version(spark, SILVER) if self.lake.table_exists(spark, SILVER) else -1
        if self._history_key != (day, version):
            first_day, _ = history_window(day, self.lateness_days)
            rows = self.lake.read_or_empty(spark, SILVER, PRIOR_SCHEMA).where(F.col("event_date") >= F.lit(first_day)).select(*PRIOR_COLUMNS)
            self._history_parts = [rows.localCheckpoint(eager=True)]
            self._history_key = (day, version)
        if len(self._history_parts) > HISTORY_COMPACT_EVERY:
            self._history_parts = [reduce(DataFrame.unionByName, self._history_parts).localCheckpoint(eager=True)]
        return reduce(DataFrame.unionByName, self._history_parts)

    def _remember(self, spark: SparkSession, silver: DataFrame) -> None:
        """Add a micro-batch's silver rows to the in-memory history (its write made the new version)."""
        if self._history_key is None:
            return
        version = self.lake.version(spark, SILVER)
        if version != self._history_key[1]:  # unchanged = a replayed batch whose rows were already there
            self._history_parts.append(silver.select(*PRIOR_COLUMNS).localCheckpoint(eager=True))
            self._history_key = (self._history_key[0], version)

    def process(self, records: DataFrame, batch_id: int) -> BatchReport:
        """Run every step for the micro-batch's records (RECORD_COLUMNS of sources.py)."""
        started = time.perf_counter()
        spark = records.sparkSession
        report = BatchReport(batch_id=batch_id)
        bronze = bronze_rows(
            records, self.source, F.col("delivery_date"), self.run_id, ingested_at=F.col("arrived_at"), payload_bytes=F.col("payload_bytes"), file_records=F.col("file_records")
        )
        bronze = bronze.select(*BRONZE_SCHEMA.fieldNames()).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            report.delivery_dates = sorted(str(r.event_date) for r in bronze.select("event_date").distinct().collect())
            for day in report.delivery_dates:
                self._process_delivery(spark, bronze.where(F.col("event_date") == F.lit(day).cast("date")), day, batch_id, report)
        finally:
            bronze.unpersist()
        report.seconds = round(time.perf_counter() - started, 3)
        self._record_progress(spark, report)
        return report

    def _process_delivery(self, spark: SparkSession, bronze: DataFrame, day: str, batch_id: int, report: BatchReport) -> None:
        # Delta writes run on background threads while the next step computes: a commit is mostly
        # driver-side waiting (log listing, commit, checkpoint), which would otherwise leave the
        # executors idle. Every write has finished before the micro-batch returns.
        writes = _Writes(report)
        writes.submit("write_bronze", self._append, bronze, BRONZE, day, batch_id)
        t = time.perf_counter()
        refs = self.references(spark, day)
        batch = check_batch(bronze, refs, day, self.lateness_days)
        scored = gold = None
        try:
            counts = {bool(r["_rejected"]): r["count"] for r in batch.rows.groupBy("_rejected").count().collect()}
            n_records, n_dlq = sum(counts.values()), counts.get(True, 0)
            t = report.mark("validate", t)
            writes.submit("write_dlq", self._append, dlq_frame(batch, self.run_id, self.salt), DLQ, day, batch_id)
            # earlier silver rows (earlier deliveries and micro-batches), without this batch's own
            # records in case a crash left them written before the batch was committed; only the
            # accounts and transactions of this batch, since the rest cannot change its features
            batch_keys = batch.valid().select("account_id", "transaction_id", "ingest_id")
            own = F.broadcast(batch_keys.select("ingest_id"))
            history = self.history(spark, day)
            seen = history.join(F.broadcast(batch_keys.select("transaction_id")), "transaction_id", "left_semi").join(own, "ingest_id", "left_anti")
            prior = history.join(F.broadcast(batch_keys.select("account_id").distinct()), "account_id", "left_semi").join(own, "ingest_id", "left_anti")
            duplicates = duplicate_ingest_ids(batch, seen, late_only=False).localCheckpoint(eager=True)
            n_dup = duplicates.count()
            t = report.mark("duplicates", t)

            silver = silver_frame(batch, refs, duplicates, prior.select(*HISTORY_COLUMNS), self.salt, self.run_id).localCheckpoint(eager=True)
            t = report.mark("features", t)
            writes.submit("write_silver", self._write_silver, spark, silver, day, batch_id)

            risk = self.merchant_risk(spark, day, refs.merchants)
            features = model_feature_frame(silver, risk, ("ingest_date", "dq_status", "ingest_id")).localCheckpoint(eager=True)
            t = report.mark("model_features", t)
            scored = score_frame(features, self.model.model, (*PASSTHROUGH, "ingest_id")).persist(StorageLevel.MEMORY_AND_DISK)
            scored.count()  # the scores exist from here: that is the row's scoring time
            scored_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            t = report.mark("score", t)
            arrival = bronze.select("ingest_id", F.col("ingested_at").alias("_arrived_at"))
            gold = (
                with_model_ids(scored, self.model.name, self.model.version, self.model.run_id, self.run_id or "", scored_at)
                .join(arrival, "ingest_id")
                .withColumn("latency_ms", (F.unix_micros("scored_at") - F.unix_micros("_arrived_at")) / 1000.0)
                .select(*GOLD_COLUMNS)
                .localCheckpoint(eager=True)
            )
            writes.submit("write_gold", insert_new_scores, gold, self.lake)
            alerts = alert_rows(gold, silver.select(*RULE_COLUMNS)).localCheckpoint(eager=True)
            writes.submit("write_alerts", self._append, alerts, ALERTS, day, batch_id)
            t = report.mark("alerts", t)

            stats = (
                gold.join(silver.select("transaction_id", "event_time", "is_late_arrival"), ["transaction_id", "event_time"])
                .groupBy("event_date")
                .agg(
                    F.count(F.lit(1)).alias("rows"),
                    F.sum(F.col("is_late_arrival").cast("long")).alias("late"),
                    F.percentile_approx("latency_ms", [0.5, 0.95], 1000).alias("q"),
                    F.max("latency_ms").alias("max_ms"),
                )
                .collect()
            )
            alert_counts = {r.event_date: r["count"] for r in alerts.groupBy("event_date").count().collect()}
            overall = gold.agg(F.percentile_approx("latency_ms", [0.5, 0.95], 1000).alias("q")).collect()[0].q
            report.mark("stats", t)
            writes.wait()
        finally:
            writes.wait(raise_errors=False)
            if scored is not None:
                scored.unpersist()
            batch.unpersist()
        for r in sorted(stats, key=lambda r: r.event_date):
            report.partitions.append(
                PartitionStats(str(r.event_date), day, r.rows, r.late or 0, alert_counts.get(r.event_date, 0), r.q[0], r.q[1], r.max_ms)
            )
        report.records += n_records
        report.dlq_rows += n_dlq
        report.duplicates += n_dup
        if overall:
            report.latency_p50_ms, report.latency_p95_ms = overall

    def _write_silver(self, spark: SparkSession, silver: DataFrame, day: str, batch_id: int) -> None:
        self._append(silver, SILVER, day, batch_id)
        self._remember(spark, silver)

    def _record_progress(self, spark: SparkSession, report: BatchReport) -> None:
        """One stream_batches row per event-date partition the micro-batch touched."""
        if not report.partitions:
            return
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        rows = [
            (
                self.stream, report.batch_id, dt.date.fromisoformat(p.event_date), dt.date.fromisoformat(p.ingest_date), p.scored_rows, p.late_rows,
                p.alerts, p.latency_p50_ms, p.latency_p95_ms, p.latency_max_ms, report.records, report.dlq_rows, report.duplicates,
                report.seconds, self.model.version, self.run_id, now,
            )
            for p in report.partitions
        ]
        self._append(spark.createDataFrame(rows, PROGRESS_SCHEMA), PROGRESS, "all", report.batch_id)


class _Writes:
    """Background Delta writes of one micro-batch, each timed into the report."""

    def __init__(self, report: BatchReport, workers: int = 3):
        self.report = report
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stream-write")
        self.futures: list[Future] = []

    def submit(self, name: str, fn: Callable, *args) -> Future:
        def timed():
            started = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.report.mark(name, started)

        future = self.pool.submit(timed)
        self.futures.append(future)
        return future

    def wait(self, raise_errors: bool = True) -> None:
        """Block until every write has finished; the first failure is raised (the batch then fails
        and is replayed from the checkpoint)."""
        for future in self.futures:
            exc = future.exception()
            if exc is not None and raise_errors:
                self.pool.shutdown(wait=True)
                raise exc
        self.pool.shutdown(wait=True)
