"""compliance_dashboard: one self-contained HTML page per delivery day for risk, compliance and audit users.

Spark aggregates the day's tables into small frames (risk bands, alerts by scenario / channel / band, the
30-day alert trend, DQ and DLQ, streaming latency, reconciliation, drift), dashboard_panels turns them into
Plotly figures and one HTML page with plotly.js inlined (it opens from a file or a static blob, no server).
The page and a 600x300 PNG preview go to the file drop as dashboards/<day>.html and .png; the asset's
metadata links the page and shows the preview. A missing input gives a "no data" panel, never a failure.
"""

import datetime as dt

import pandas as pd
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from compliance_assets.metadata import markdown_table
from compliance_assets.transforms.alert_rules import scenario_of
from compliance_assets.monitoring.drift import FEATURE_PSI
from compliance_assets.serving import dashboard_panels as panels
from partitions import daily_partitions
from resources.file_drops import FileDropResource
from resources.lake import LakeResource
from resources.mlflow import CHAMPION, ModelRegistryResource
from resources.monitoring import MonitoringResource
from catalog import ALERTS, DLQ, DQ_RESULTS, GOLD, MODEL_DRIFT, RECONCILIATION_REPORT, SILVER

ASSET = "compliance_dashboard"
FOLDER = "dashboards"
TREND_DAYS = 30


def page_name(day: str) -> str:
    return f"{FOLDER}/{day}.html"


def preview_name(day: str) -> str:
    return f"{FOLDER}/{day}.png"


def scenario_column(reason: str = "primary_reason"):
    """The alert's scenario: its primary reason's family, the text before any ':' (WATCHLIST_MATCH:OFAC_SDN -> WATCHLIST_MATCH)."""
    return F.when(F.col(reason).isNull() | (F.trim(reason) == ""), F.lit(panels.NO_REASON)).otherwise(scenario_of(F.col(reason)))


class DayTables:
    """The day's inputs, read once: a table that does not exist yet reads as None."""

    def __init__(self, spark: SparkSession, lake: LakeResource, day: str):
        self.spark, self.lake, self.day = spark, lake, day
        self.date = F.lit(day).cast("date")
        self._cache: dict[str, DataFrame | None] = {}

    def table(self, name: str) -> DataFrame | None:
        if name not in self._cache:
            self._cache[name] = self.lake.read(self.spark, name) if self.lake.table_exists(self.spark, name) else None
        return self._cache[name]


def gold_summary(t: DayTables) -> tuple[pd.DataFrame, dict | None, pd.DataFrame]:
    """(rows per risk band, streaming latency stats, rows per scoring model version) of the day's gold rows."""
    gold = t.table(GOLD)
    empty = pd.DataFrame({"risk_band": pd.Series(dtype=str), "rows": pd.Series(dtype=int)})
    if gold is None:
        return empty, None, pd.DataFrame({"model_version": pd.Series(dtype=str), "rows": pd.Series(dtype=int)})
    day = gold.where(F.col("ingest_date") == t.date).select("risk_band", "model_version", "latency_ms").persist()
    try:
        bands = day.groupBy("risk_band").agg(F.count(F.lit(1)).alias("rows")).toPandas()
        versions = day.groupBy("model_version").agg(F.count(F.lit(1)).alias("rows")).orderBy(F.desc("rows")).toPandas()
        lat = day.where(F.col("latency_ms").isNotNull()).agg(
            F.count(F.lit(1)).alias("n"),
            F.percentile_approx("latency_ms", 0.5, 10_000).alias("p50_ms"),
            F.percentile_approx("latency_ms", 0.95, 10_000).alias("p95_ms"),
            F.max("latency_ms").alias("max_ms"),
        ).collect()[0].asDict()
    finally:
        day.unpersist()
    return bands, lat, versions


def alert_summary(t: DayTables) -> pd.DataFrame:
    """The day's alerts per scenario, channel (from the silver row: transaction_id + event_time) and band."""
    alerts = t.table(ALERTS)
    if alerts is None:
        return pd.DataFrame(columns=["scenario", "channel", "risk_band", "alerts"])
    day = alerts.where(F.col("ingest_date") == t.date).select("transaction_id", "event_time", "event_date", "primary_reason", "risk_band")
    event_dates = [r.event_date for r in day.select("event_date").distinct().collect()]
    silver = t.table(SILVER)
    if silver is not None and event_dates:
        channels = silver.where(F.col("event_date").isin(event_dates)).select("transaction_id", "event_time", "channel")
        day = day.join(channels, ["transaction_id", "event_time"], "left")
    else:
        day = day.withColumn("channel", F.lit(None).cast("string"))
    return (
        day.select(scenario_column().alias("scenario"), F.coalesce("channel", F.lit(panels.NOT_IN_SILVER)).alias("channel"), "risk_band")
        .groupBy("scenario", "channel", "risk_band").agg(F.count(F.lit(1)).alias("alerts")).toPandas()
    )


def alert_trend(t: DayTables, days: int = TREND_DAYS) -> pd.DataFrame:
    """day, alerts, scored for the `days` delivery days up to the day (only days with gold or alert rows)."""
    first = dt.date.fromisoformat(t.day) - dt.timedelta(days=days - 1)
    window = F.col("ingest_date").between(F.lit(first), t.date)
    frames = []
    for name, column in ((ALERTS, "alerts"), (GOLD, "scored")):
        table = t.table(name)
        if table is not None:
            frames.append(table.where(window).groupBy(F.date_format("ingest_date", "yyyy-MM-dd").alias("day")).agg(F.count(F.lit(1)).alias(column)).toPandas().set_index("day"))
    out = pd.concat(frames, axis=1) if frames else pd.DataFrame()
    return out.reindex(columns=["alerts", "scored"]).fillna(0).astype(int).rename_axis("day").reset_index()


def dq_summary(t: DayTables) -> pd.DataFrame:
    dq = t.table(DQ_RESULTS)
    if dq is None:
        return pd.DataFrame(columns=["rule_id", "severity", "checked", "failed", "pass_rate"])
    return dq.where(F.col("event_date") == t.date).select("rule_id", "severity", "checked", "failed", "pass_rate").toPandas()


def dlq_summary(t: DayTables) -> tuple[pd.DataFrame, int | None]:
    """(records per reason code, the day's DLQ rows); None rows when the DLQ table does not exist yet."""
    dlq = t.table(DLQ)
    if dlq is None:
        return pd.DataFrame(columns=["reason", "rows"]), None
    day = dlq.where(F.col("event_date") == t.date)
    rows = day.count()
    reasons = day.select(F.explode_outer("reason_codes").alias("reason")).groupBy("reason").agg(F.count(F.lit(1)).alias("rows")).toPandas()
    return reasons, rows


def reconciliation_summary(t: DayTables) -> tuple[pd.DataFrame, object, object]:
    """(the day's report per category, summed over currencies; first reconciled at; deadline)."""
    report = t.table(RECONCILIATION_REPORT)
    if report is None:
        return pd.DataFrame(columns=["category", "explained", "transactions", "amount"]), None, None
    day = report.where(F.col("event_date") == t.date)
    frame = day.groupBy("category", "explained").agg(F.sum("transactions").alias("transactions"), F.sum("amount").cast("double").alias("amount")).toPandas()
    times = day.agg(F.min("first_reconciled_at").alias("first"), F.min("deadline").alias("deadline")).collect()[0]
    return frame, times.first, times.deadline


def drift_summary(t: DayTables) -> pd.DataFrame | None:
    drift = t.table(MODEL_DRIFT)
    if drift is None:
        return None
    return drift.where((F.col("event_date") == t.date) & (F.col("metric") == FEATURE_PSI)).select("name", "value", "status", "warn_at", "fail_at").toPandas()


def champion_summary(registry: ModelRegistryResource) -> tuple[dict | None, str | None]:
    """(the @champion version's facts or None, why the registry could not be read or None)."""
    try:
        version = registry.version_by_alias(CHAMPION)
    except Exception as exc:  # an unreachable tracking server: the page says so instead of failing
        return None, f"{type(exc).__name__}: {exc}"
    if version is None:
        return None, None
    since = dt.datetime.fromtimestamp(version.creation_timestamp / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if version.creation_timestamp else "-"
    return {"name": registry.model_name, "version": str(version.version), "run_id": version.run_id, "since": since}, None


def build_dashboard(spark: SparkSession, lake: LakeResource, registry: ModelRegistryResource, monitoring: MonitoringResource, day: str, run_id: str, now: dt.datetime) -> dict:
    """The page, its preview and the key numbers of one delivery day."""
    t = DayTables(spark, lake, day)
    bands, latency, versions = gold_summary(t)
    alerts = alert_summary(t)
    trend = alert_trend(t)
    dq = dq_summary(t)
    reasons, dlq_rows = dlq_summary(t)
    report, first_reconciled, deadline = reconciliation_summary(t)
    champion, unavailable = champion_summary(registry)

    by_scenario, by_channel = panels.alert_panels(alerts)
    page_panels = [
        panels.band_panel(bands), by_scenario, by_channel, panels.trend_panel(trend, day, TREND_DAYS),
        panels.dq_panel(dq, monitoring.slo_dq_pass_rate), panels.dlq_panel(reasons, dlq_rows),
        panels.latency_panel(latency, monitoring.slo_latency_p95_seconds), panels.reconciliation_panel(report, first_reconciled, deadline),
        panels.drift_panel(drift_summary(t)), panels.model_panel(champion, versions, unavailable),
    ]
    scored = int(bands["rows"].sum()) if not bands.empty else 0
    n_alerts = int(alerts["alerts"].sum()) if not alerts.empty else 0
    high = int(alerts.loc[alerts.risk_band == "HIGH", "alerts"].sum()) if not alerts.empty else 0
    low_rule = dq.sort_values(["pass_rate", "rule_id"]).iloc[0] if not dq.empty else None
    status, unexplained, _ = panels.reconciliation_status(report)
    numbers = {
        "transactions_scored": scored, "alerts": n_alerts, "high_alerts": high, "dlq_rows": dlq_rows,
        "dq_min_pass_rate": float(low_rule.pass_rate) if low_rule is not None else None,
        "dq_min_rule": str(low_rule.rule_id) if low_rule is not None else None,
        "stream_latency_p95_s": round(latency["p95_ms"] / 1000.0, 3) if latency and latency.get("n") else None,
        "reconciliation_status": status, "unexplained_differences": unexplained,
        "champion_version": champion["version"] if champion else None,
    }
    kpis = [
        panels.Kpi("transactions-scored", "Transactions scored", f"{scored:,}"),
        panels.Kpi("alerts", "Alerts", f"{n_alerts:,}", f"{n_alerts / scored:.2%} of scored" if scored else ""),
        panels.Kpi("high-alerts", "HIGH alerts", f"{high:,}"),
        panels.Kpi("dlq-rows", "DLQ rows", f"{dlq_rows:,}" if dlq_rows is not None else "no data"),
        panels.Kpi("dq-min-pass-rate", "DQ min pass rate", f"{low_rule.pass_rate:.2%}" if low_rule is not None else "no data", str(low_rule.rule_id) if low_rule is not None else ""),
        panels.Kpi("reconciliation", "Reconciliation", status, f"{unexplained:,} unexplained" if not report.empty else ""),
        panels.Kpi("champion", "Champion model", f"v{champion['version']}" if champion else "none"),
    ]
    page = panels.render_page(day, now, run_id, kpis, page_panels)
    return {
        "html": page.encode("utf-8"),
        "png": panels.preview_png(bands, trend, day, TREND_DAYS),
        "numbers": numbers,
        "no_data": {p.key: p.no_data for p in page_panels if p.no_data},
    }


def link(file_drops: FileDropResource, name: str) -> MetadataValue:
    """A local file as a path, anything else (Blob, ADLS) as a URL."""
    uri = file_drops.uri(name)
    return MetadataValue.url(uri) if "://" in uri else MetadataValue.path(uri)


@asset(
    name=ASSET,
    group_name="serving",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, ALERTS, SILVER, DQ_RESULTS, DLQ, RECONCILIATION_REPORT, MODEL_DRIFT],
    kinds={"spark", "plotly", "html"},
    description=(
        "The daily compliance dashboard: one page per delivery day that opens in any browser without a server. "
        "Risk-band mix, alerts by scenario and channel, the 30-day alert trend, data-quality pass rates and DLQ "
        "reasons, streaming latency p95, reconciliation status, drift per feature and the champion model, with the "
        "day's key numbers on top. Follow the 'dashboard' link in the metadata to open it; inputs not produced yet "
        "show as 'no data'."
    ),
    metadata={"partition_column": "the delivery day (one page per day)", "location": f"file drop: {FOLDER}/<day>.html"},
)
def compliance_dashboard(
    context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, file_drops: FileDropResource,
    model_registry: ModelRegistryResource, monitoring: MonitoringResource,
) -> MaterializeResult:
    session = spark.spark_session
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    pages, built = [], None
    for key in context.partition_keys:
        built = build_dashboard(session, lake, model_registry, monitoring, key, context.run_id, now)
        file_drops.write_bytes(page_name(key), built["html"])
        file_drops.write_bytes(preview_name(key), built["png"])
        pages.append({"day": key, "page": file_drops.uri(page_name(key)), "panels without data": ", ".join(built["no_data"]) or "none"})
        context.log.info(f"{ASSET} {key}: {file_drops.uri(page_name(key))} ({len(built['html']):,} bytes); {built['numbers']}; no data: {built['no_data'] or 'none'}")
    last = context.partition_keys[-1]
    numbers = built["numbers"]
    metadata = {
        "dashboard": link(file_drops, page_name(last)),
        "preview": MetadataValue.md(panels.preview_markdown(built["png"])),
        "preview_png": link(file_drops, preview_name(last)),
        "day": last,
        "page_bytes": len(built["html"]),
        "panels_without_data": markdown_table([{"panel": k, "reason": v} for k, v in built["no_data"].items()]),
        **{k: v for k, v in numbers.items() if v is not None},
    }
    if len(pages) > 1:
        metadata["pages"] = markdown_table(pages)
    return MaterializeResult(metadata=metadata)
