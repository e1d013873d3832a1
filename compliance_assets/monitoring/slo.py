"""slo_status: the morning checklist's SLOs for a delivery day, each measured from the tables that prove it.

- streaming latency: p95 of event-to-score latency_ms over the day's streamed gold rows (< 60 s);
- reconciliation: the day's first completed reconciliation against its T+1 06:00 UTC deadline;
- data quality: the lowest pass rate of the day's critical rules (>= 95%);
- alert volume: the day's alerts against the mean of the seven delivery days before it.
"""

import datetime as dt
import json

from dagster import AssetCheckResult, AssetCheckSeverity, AssetExecutionContext, BackfillPolicy, MaterializeResult, asset, asset_check
from dagster_pyspark import PySparkResource
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.reporting.reconciliation import deadline_for
from contracts.rules import CRITICAL
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.monitoring import MonitoringResource
from catalog import ALERTS, DQ_RESULTS, Days, GOLD, RECONCILIATION_REPORT, SLO_STATUS

LATENCY, RECONCILIATION, DQ_CRITICAL, ALERT_VOLUME = "STREAM_LATENCY_P95", "RECONCILIATION_BY_DEADLINE", "DQ_CRITICAL_PASS_RATE", "ALERT_VOLUME"
MET, BREACHED, NO_DATA, PENDING = "MET", "BREACHED", "NO_DATA", "PENDING"
BASELINE_DAYS = 7
SCHEMA = T.StructType(
    [
        T.StructField("event_date", T.DateType(), False),  # the delivery day
        T.StructField("slo", T.StringType(), False),
        T.StructField("target", T.StringType(), False),
        T.StructField("measured", T.DoubleType()),
        T.StructField("unit", T.StringType()),
        T.StructField("status", T.StringType(), False),  # MET / BREACHED / NO_DATA / PENDING
        T.StructField("evidence", T.StringType()),  # JSON: what was measured, from which table
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("computed_at", T.TimestampType(), False),
    ]
)


def slo_rows(spark: SparkSession, lake: LakeResource, monitoring: MonitoringResource, day: str, run_id: str, now: dt.datetime) -> list[tuple]:
    """The four SLO rows of one delivery day."""
    d, lit_day = dt.date.fromisoformat(day), F.lit(day).cast("date")

    def row(slo, target, measured, unit, status, evidence):
        return (d, slo, target, None if measured is None else float(measured), unit, status, json.dumps(evidence, sort_keys=True, default=str), run_id, now)

    def table(name):
        return lake.read(spark, name) if lake.table_exists(spark, name) else None

    out = []
    gold = table(GOLD)
    streamed = gold.where((F.col("ingest_date") == lit_day) & F.col("latency_ms").isNotNull()) if gold is not None else None
    lat = streamed.agg(F.count(F.lit(1)).alias("n"), F.percentile_approx("latency_ms", 0.95, 10_000).alias("p95"), F.max("latency_ms").alias("max")).collect()[0] if streamed is not None else None
    target = monitoring.slo_latency_p95_seconds
    if lat is None or not lat.n:
        out.append(row(LATENCY, f"p95 < {target:g} s", None, "s", NO_DATA, {"streamed_rows": 0, "note": "no row of the day was scored by the stream"}))
    else:
        p95 = lat.p95 / 1000.0
        out.append(row(LATENCY, f"p95 < {target:g} s", round(p95, 3), "s", MET if p95 < target else BREACHED, {"streamed_rows": lat.n, "max_s": round(lat.max / 1000.0, 3), "source": f"{GOLD}.latency_ms"}))

    report = table(RECONCILIATION_REPORT)
    rec = report.where(F.col("event_date") == lit_day).agg(F.min("first_reconciled_at").alias("first"), F.min("deadline").alias("deadline")).collect()[0] if report is not None else None
    deadline = rec.deadline if rec is not None and rec.first is not None else deadline_for(day)
    target = f"before {deadline:%Y-%m-%d %H:%M} UTC"
    if rec is None or rec.first is None:
        status = BREACHED if now > deadline else PENDING
        out.append(row(RECONCILIATION, target, None, "minutes before deadline", status, {"note": "not reconciled yet", "deadline": deadline}))
    else:
        margin = (deadline - rec.first).total_seconds() / 60.0
        out.append(row(RECONCILIATION, target, round(margin, 1), "minutes before deadline", MET if rec.first <= deadline else BREACHED, {"first_reconciled_at": rec.first, "deadline": deadline, "source": RECONCILIATION_REPORT}))

    dq = table(DQ_RESULTS)
    critical = dq.where((F.col("event_date") == lit_day) & (F.col("severity") == CRITICAL)).orderBy("pass_rate").collect() if dq is not None else []
    target = monitoring.slo_dq_pass_rate
    if not critical:
        out.append(row(DQ_CRITICAL, f">= {target:.0%} on every critical rule", None, "pass rate", BREACHED, {"note": "no dq_results for the day: the day was not validated"}))
    else:
        low = critical[0]
        below = [{"rule": r.rule_id, "pass_rate": round(r.pass_rate, 5), "failed": r.failed} for r in critical if r.pass_rate < target]
        out.append(row(DQ_CRITICAL, f">= {target:.0%} on every critical rule", round(low.pass_rate, 6), "pass rate", MET if not below else BREACHED, {"lowest_rule": low.rule_id, "rules": len(critical), "below_target": below}))

    alerts = table(ALERTS)
    window = F.col("ingest_date").between(F.lit(d - dt.timedelta(days=BASELINE_DAYS)), F.lit(d))
    counts = {r.ingest_date: r["count"] for r in alerts.where(window).groupBy("ingest_date").count().collect()} if alerts is not None else {}
    today = counts.pop(d, 0)
    bound = monitoring.slo_alert_volume_ratio
    target = f"within x{bound:g} of the {BASELINE_DAYS}-day mean"
    if not counts:
        out.append(row(ALERT_VOLUME, target, float(today), "alerts", NO_DATA, {"alerts": today, "note": f"no alerts in the {BASELINE_DAYS} delivery days before: no baseline"}))
    else:
        mean = sum(counts.values()) / len(counts)
        ratio = today / mean if mean else float("inf")
        ok = 1.0 / bound <= ratio <= bound
        out.append(row(ALERT_VOLUME, target, float(today), "alerts", MET if ok else BREACHED, {"alerts": today, "baseline_mean": round(mean, 2), "baseline_days": len(counts), "ratio": round(ratio, 3)}))
    return out


@asset(
    name=SLO_STATUS,
    group_name="monitoring",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, RECONCILIATION_REPORT, DQ_RESULTS, ALERTS],
    kinds={"spark", "delta"},
    description=(
        "Service levels of the delivery day, as in the morning checklist: streaming p95 event-to-score latency "
        "under 60 s, reconciliation completed before T+1 06:00 UTC, every critical data-quality rule passing for "
        "at least 95% of records, and alert volume in line with the previous week. MET, BREACHED, NO_DATA or "
        "PENDING, with the evidence for each."
    ),
    metadata={"partition_column": "event_date (delivery day)", "key": "event_date, slo"},
)
def slo_status(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, monitoring: MonitoringResource) -> MaterializeResult:
    session = spark.spark_session
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    rows, version = [], -1
    for key in context.partition_keys:
        day_rows = slo_rows(session, lake, monitoring, key, context.run_id, now)
        version = lake.replace_days(session.createDataFrame(day_rows, SCHEMA), SLO_STATUS, Days.of(key))
        rows += day_rows
        context.log.info(f"{SLO_STATUS} {key}: " + ", ".join(f"{r[1]}={r[5]}" for r in day_rows))
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(SLO_STATUS), version, len(rows), SCHEMA,
            slos=markdown_table([{"day": str(r[0]), "slo": r[1], "target": r[2], "measured": r[3], "unit": r[4], "status": r[5]} for r in rows]),
            breached=sum(r[5] == BREACHED for r in rows),
        )
    )


def _slo_check(context, spark: PySparkResource, lake: LakeResource, slo: str, severity: AssetCheckSeverity) -> AssetCheckResult:
    rows = lake.read_days(spark.spark_session, SLO_STATUS, Days.of(context.partition_keys)).where(F.col("slo") == slo).orderBy("event_date").collect()
    breached = [r for r in rows if r.status == BREACHED]
    return AssetCheckResult(
        passed=not breached and len(rows) == len(context.partition_keys),
        severity=severity,
        metadata={
            "days": markdown_table([{"day": str(r.event_date), "target": r.target, "measured": r.measured, "unit": r.unit, "status": r.status} for r in rows]),
            "breached_days": len(breached),
            "evidence": breached[0].evidence if breached else (rows[0].evidence if rows else "{}"),
        },
    )


@asset_check(asset=SLO_STATUS, partitions_def=daily_partitions, description="Streaming event-to-score latency p95 is under the SLO (60 s) for the day's streamed transactions.")
def streaming_latency_within_slo(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _slo_check(context, spark, lake, LATENCY, AssetCheckSeverity.ERROR)


@asset_check(asset=SLO_STATUS, partitions_def=daily_partitions, description="The day's reconciliation with the ledger completed before T+1 06:00 UTC (a warning for days run by a backfill).")
def reconciliation_within_slo(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    backfill = "dagster/backfill" in context.run.tags
    return _slo_check(context, spark, lake, RECONCILIATION, AssetCheckSeverity.WARN if backfill else AssetCheckSeverity.ERROR)


@asset_check(asset=SLO_STATUS, partitions_def=daily_partitions, description="Every critical data-quality rule passed for at least 95% of the day's records.")
def dq_critical_pass_rate_within_slo(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _slo_check(context, spark, lake, DQ_CRITICAL, AssetCheckSeverity.ERROR)


@asset_check(asset=SLO_STATUS, partitions_def=daily_partitions, description="The day's alert volume is within x3 (SLO_ALERT_VOLUME_RATIO) of the mean of the seven delivery days before it: a jump or a collapse needs a look.")
def alert_volume_within_bounds(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _slo_check(context, spark, lake, ALERT_VOLUME, AssetCheckSeverity.WARN)
