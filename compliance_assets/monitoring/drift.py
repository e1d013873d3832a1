"""model_drift: how far a delivery day has moved from what the scoring model was trained on.

Per model feature, the population stability index (PSI) of the day's feature rows (ml_features_training,
the same features scoring uses) against a deterministic sample of the model's own training rows, re-read
with Delta time travel at the version it was trained on; decile bins from the training sample, missing
values in a bin of their own; a feature with no value at all on either side (a dataset without that
field) is reported ABSENT, not scored. Also the risk-band distribution against the model's calibrated
band shares, the DLQ rate and the lowest DQ rule pass rate. Thresholds come from the monitoring resource.
"""

import datetime as dt
import json
import math

from dagster import AllPartitionMapping, AssetCheckResult, AssetDep, AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset, asset_check
from dagster_pyspark import PySparkResource
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.ml.training import TABLE_URI_TAGS
from compliance_assets.monitoring.levels import FAIL, WARN, level, leveled_result
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.mlflow import ModelRegistryResource
from resources.monitoring import MonitoringResource
from catalog import BRONZE, DLQ, DQ_RESULTS, Days, GOLD, MODEL_DRIFT, TRAINING_FEATURES

FEATURE_PSI, BAND_PSI, DLQ_RATE, DQ_MIN_PASS_RATE = "FEATURE_PSI", "BAND_PSI", "DLQ_RATE", "DQ_MIN_PASS_RATE"
DECILES = [i / 10 for i in range(1, 10)]
EPSILON = 1e-4  # share given to a bin one side has no rows in (PSI is undefined at zero)
MISSING_BIN = -1
BANDS = ("LOW", "MEDIUM", "HIGH")
# features whose day-level distribution differs from any training window by construction: reported, not judged
EXEMPT = {"is_weekend": "a single day is either all weekend or all weekday"}
EXEMPT_STATUS = "EXEMPT"
ABSENT_STATUS = "ABSENT"  # no value at all in the training rows or the day (the dataset lacks the field): not scored
SCHEMA = T.StructType(
    [
        T.StructField("event_date", T.DateType(), False),  # the delivery day (Dagster partition)
        T.StructField("metric", T.StringType(), False),
        T.StructField("name", T.StringType(), False),  # the feature, or the metric's subject
        T.StructField("value", T.DoubleType()),
        T.StructField("warn_at", T.DoubleType()),
        T.StructField("fail_at", T.DoubleType()),
        T.StructField("status", T.StringType(), False),
        T.StructField("rows", T.LongType()),
        T.StructField("detail", T.StringType()),  # JSON: per-bin shares (expected vs actual), counts
        T.StructField("model_name", T.StringType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("reference", T.StringType()),
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("computed_at", T.TimestampType(), False),
    ]
)


def psi(expected: dict, actual: dict) -> float:
    """Population stability index between two {bin: count} distributions."""
    e_total, a_total = sum(expected.values()) or 1, sum(actual.values()) or 1
    total = 0.0
    for b in set(expected) | set(actual):
        e = max(expected.get(b, 0) / e_total, EPSILON)
        a = max(actual.get(b, 0) / a_total, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def bin_edges(reference: DataFrame, features: list[str]) -> dict[str, list[float]]:
    """Decile edges of each feature in the reference (distinct, ascending; nulls and NaN ignored), exact: an
    approximate quantile's summary depends on how the rows are partitioned, and the same day's drift must not
    differ between a local run and a cluster's."""
    row = reference.agg(*[F.percentile(F.when(~F.isnan(f), F.col(f)), DECILES).alias(f) for f in features]).collect()[0]
    return {f: sorted({float(q) for q in row[f] or []}) for f in features}


def bin_column(feature: str, edges: list[float]):
    """Bin index of a feature value: the number of edges below it; missing (null or NaN) = MISSING_BIN."""
    value = F.col(feature).cast("double")
    index = sum((value > F.lit(e)).cast("int") for e in edges) if edges else F.lit(0)
    return F.when(value.isNull() | F.isnan(value), F.lit(MISSING_BIN)).otherwise(index)


def bin_counts(frame: DataFrame, edges: dict[str, list[float]]) -> dict[str, dict[int, int]]:
    """{feature: {bin: rows}} of a frame, in one pass."""
    pairs = F.array(*[F.struct(F.lit(f).alias("feature"), bin_column(f, e).alias("bin")) for f, e in edges.items()])
    counts: dict[str, dict[int, int]] = {f: {} for f in edges}
    for r in frame.select(F.explode(pairs).alias("p")).groupBy("p.feature", "p.bin").count().collect():
        counts[r.feature][r.bin] = r["count"]
    return counts


def bin_label(edges: list[float], b: int) -> str:
    if b == MISSING_BIN:
        return "missing"
    if not edges:
        return "all"
    if b == 0:
        return f"<= {edges[0]:.4g}"
    if b == len(edges):
        return f"> {edges[-1]:.4g}"
    return f"({edges[b - 1]:.4g}, {edges[b]:.4g}]"


def absent_from(expected: dict[int, int], actual: dict[int, int]) -> str | None:
    """Where a feature has no value at all (every row missing): "reference", "current", "both", or None.
    An empty side (no rows) is not absent: there is nothing to say about it."""
    gone = [side for side, counts in (("reference", expected), ("current", actual)) if counts and set(counts) == {MISSING_BIN}]
    return "both" if len(gone) == 2 else gone[0] if gone else None


def feature_drift(reference: DataFrame, current: DataFrame, features: list[str], warn: float, fail: float) -> list[tuple]:
    """(feature, PSI, status, current rows, detail) per feature of `current` against `reference`. A feature
    with no value at all on either side (a dataset without that field) is ABSENT: reported, not scored
    (its one bin of missing values is not a distribution to compare)."""
    edges = bin_edges(reference, features)
    expected, actual = bin_counts(reference, edges), bin_counts(current, edges)
    n_current = sum(next(iter(actual.values()), {}).values())
    out = []
    for f in features:
        value = round(psi(expected[f], actual[f]), 6) if n_current else None
        bins = sorted(set(expected[f]) | set(actual[f]))
        e_total, a_total = sum(expected[f].values()) or 1, sum(actual[f].values()) or 1
        detail = {"bins": [{"bin": bin_label(edges[f], b), "expected": round(expected[f].get(b, 0) / e_total, 5), "actual": round(actual[f].get(b, 0) / a_total, 5)} for b in bins]}
        absent = absent_from(expected[f], actual[f])
        if absent:
            value, status = None, ABSENT_STATUS
            detail["absent"] = absent
        elif f in EXEMPT:
            status = EXEMPT_STATUS
            detail["exempt"] = EXEMPT[f]
        else:
            status = level(value, warn, fail)
        out.append((f, value, status, n_current, detail))
    return out


def reference_sample(spark: SparkSession, lake: LakeResource, version, rows: int) -> DataFrame:
    """A deterministic sample of the training rows of a registered model version (Delta time travel), read where
    they were when the model was trained: a champion trained on another lake (a staging lake, a test's) is measured
    against its own training rows, not against whatever this lake's table held at that version number."""
    tags = version.tags
    first, last = tags["training_window"].split("..")
    uri, delta_version = tags.get(TABLE_URI_TAGS[TRAINING_FEATURES]), int(tags["training_delta_version"])  # versions trained before the URI was recorded: this lake's
    try:
        frame = lake.read_version(spark, TRAINING_FEATURES, delta_version, uri).where(TRAINING_FEATURES.where(Days.span(first, last)))
        n = frame.count()
    except (PySparkException, Py4JJavaError) as exc:  # a version that is gone / a table that is not there
        raise ValueError(
            f"model version {version.version}'s training rows ({uri or lake.table_path(TRAINING_FEATURES)} at Delta version {delta_version}) "
            f"cannot be read, so its drift has no reference: {str(exc).splitlines()[0]}"
        ) from exc
    rate = min(1.0, rows / n) if n else 1.0
    return frame.where((F.abs(F.xxhash64("transaction_id", F.lit(11))) % 1_000_000) < rate * 1_000_000)


def scoring_model_version(spark: SparkSession, lake: LakeResource, day: str) -> str | None:
    """The model version that scored most of the day's gold rows (None before the day is scored)."""
    rows = lake.read_days(spark, GOLD, Days.span(day)).groupBy("model_version").count().orderBy(F.desc("count")).limit(1).collect()
    return rows[0].model_version if rows else None


def band_expectation(model) -> dict[str, float]:
    """The band shares the model was calibrated to: its alert budget is HIGH, its review budget MEDIUM or HIGH."""
    high, review = model.params["alert_budget"], model.params["review_budget"]
    return {"LOW": 1.0 - review, "MEDIUM": review - high, "HIGH": high}


def drift_rows(spark: SparkSession, lake: LakeResource, registry: ModelRegistryResource, monitoring: MonitoringResource, day: str, run_id: str) -> list[tuple]:
    """The model_drift rows of one delivery day."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    version_id = scoring_model_version(spark, lake, day)
    if version_id is None:
        raise ValueError(f"{GOLD} has no rows for delivery day {day}: score the day before measuring its drift.")
    version = registry.version(version_id)
    model = registry.load(version)
    reference_label = f"{registry.model_name} v{version.version} training rows {version.tags['training_window']} (Delta v{version.tags['training_delta_version']})"
    d = dt.date.fromisoformat(day)

    def row(metric, name, value, warn, fail, status, rows, detail):
        return (d, metric, name, value, warn, fail, status, rows, json.dumps(detail, sort_keys=True, default=str), registry.model_name, str(version.version), reference_label, run_id, now)

    features = list(model.features)
    reference = reference_sample(spark, lake, version, monitoring.drift_reference_rows).select(*[F.col(f).cast("double").alias(f) for f in features]).localCheckpoint(eager=True)
    current = lake.read_days(spark, TRAINING_FEATURES, Days.span(day)).select(*[F.col(f).cast("double").alias(f) for f in features])
    out = [row(FEATURE_PSI, f, value, monitoring.psi_warn, monitoring.psi_fail, status, n, detail) for f, value, status, n, detail in feature_drift(reference, current, features, monitoring.psi_warn, monitoring.psi_fail)]

    bands = {r.risk_band: r["count"] for r in lake.read_days(spark, GOLD, Days.span(day)).groupBy("risk_band").count().collect()}
    n_scored = sum(bands.values())
    shares = band_expectation(model)
    expected_bands = {b: shares[b] * 1_000_000 for b in BANDS}
    band_value = round(psi(expected_bands, bands), 6) if n_scored else None
    detail = {"bins": [{"bin": b, "expected": round(shares[b], 5), "actual": round(bands.get(b, 0) / (n_scored or 1), 5)} for b in BANDS]}
    out.append(row(BAND_PSI, "risk_band", band_value, monitoring.band_psi_warn, monitoring.band_psi_fail, level(band_value, monitoring.band_psi_warn, monitoring.band_psi_fail), n_scored, detail))

    received = lake.read_days(spark, BRONZE, Days.span(day)).count()
    rejected = lake.read_days(spark, DLQ, Days.span(day)).count()
    dlq_rate = round(rejected / received, 6) if received else None
    out.append(row(DLQ_RATE, "transactions_dlq", dlq_rate, monitoring.dlq_rate_warn, monitoring.dlq_rate_fail, level(dlq_rate, monitoring.dlq_rate_warn, monitoring.dlq_rate_fail), received, {"received": received, "rejected": rejected}))

    rules = lake.read_days(spark, DQ_RESULTS, Days.span(day)).orderBy("pass_rate").collect()
    lowest = rules[0] if rules else None
    dq_value = round(lowest.pass_rate, 6) if lowest else None
    dq_status = level(dq_value, monitoring.dq_pass_rate_warn, monitoring.dq_pass_rate_fail, higher_is_worse=False)
    detail = {"lowest_rules": [{"rule": r.rule_id, "severity": r.severity, "pass_rate": round(r.pass_rate, 5), "failed": r.failed} for r in rules[:5]]}
    out.append(row(DQ_MIN_PASS_RATE, lowest.rule_id if lowest else "none", dq_value, monitoring.dq_pass_rate_warn, monitoring.dq_pass_rate_fail, dq_status, lowest.checked if lowest else 0, detail))
    return out


def bar(value: float | None, scale: float) -> str:
    """A text bar for the UI's markdown (the drift plot): one block per 1/20 of `scale`, capped at 40."""
    if value is None:
        return ""
    return "█" * min(40, int(round(value / scale * 20))) or "▏"


def drift_plot(rows: list[tuple], monitoring: MonitoringResource) -> MetadataValue:
    """Markdown plot: PSI per feature as bars (worst first), then the bins of the three most drifted features."""
    feats = sorted((r for r in rows if r[1] == FEATURE_PSI), key=lambda r: -(r[3] or 0))
    lines = [f"**PSI per feature** (warn {monitoring.psi_warn}, fail {monitoring.psi_fail}; one block = {monitoring.psi_fail / 20:.4f})", "", "| feature | PSI | | status |", "|---|---:|---|---|"]
    lines += [f"| {r[2]} | {r[3] if r[3] is not None else '-'} | `{bar(r[3], monitoring.psi_fail)}` | {r[6]} |" for r in feats]
    for r in feats[:3] + [r for r in rows if r[1] == BAND_PSI]:
        lines += ["", f"**{r[2]}**: share per bin, training (E) vs this day (A)", "", "| bin | E | | A | |", "|---|---:|---|---:|---|"]
        lines += [f"| {b['bin']} | {b['expected']:.4f} | `{bar(b['expected'], 0.05)}` | {b['actual']:.4f} | `{bar(b['actual'], 0.05)}` |" for b in json.loads(r[8])["bins"]]
    return MetadataValue.md("\n".join(lines))


@asset(
    name=MODEL_DRIFT,
    group_name="monitoring",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[TRAINING_FEATURES, GOLD, BRONZE, DLQ, DQ_RESULTS, AssetDep("risk_model", partition_mapping=AllPartitionMapping())],
    kinds={"spark", "delta", "mlflow"},
    description=(
        "Model drift of the delivery day: for every model feature, the population stability index (PSI) of the day "
        "against the training data of the model that scored it; the risk-band mix against the shares the model was "
        "calibrated to; the share of records rejected to the DLQ; and the lowest data-quality rule pass rate. "
        "Each with its OK / WARN / FAIL status (PSI warns at 0.1 and fails at 0.25 by default)."
    ),
    metadata={"partition_column": "event_date (delivery day)", "key": "event_date, metric, name"},
)
def model_drift(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, model_registry: ModelRegistryResource, monitoring: MonitoringResource) -> MaterializeResult:
    session = spark.spark_session
    version, rows = -1, []
    for key in context.partition_keys:
        rows = drift_rows(session, lake, model_registry, monitoring, key, context.run_id)
        version = lake.replace_days(session.createDataFrame(rows, SCHEMA), MODEL_DRIFT, Days.of(key))
        worst = sorted((r for r in rows if r[1] == FEATURE_PSI), key=lambda r: -(r[3] or 0))[:3]
        context.log.info(f"{MODEL_DRIFT} {key}: max PSI {[(r[2], r[3]) for r in worst]}; " + ", ".join(f"{r[1]}={r[3]} {r[6]}" for r in rows if r[1] != FEATURE_PSI))
    summary = {r[1].lower(): r[3] for r in rows if r[1] != FEATURE_PSI}
    summary["max_feature_psi"] = max((r[3] for r in rows if r[1] == FEATURE_PSI and r[3] is not None), default=None)
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(MODEL_DRIFT), version, len(rows), SCHEMA,
            plot=drift_plot(rows, monitoring),
            **{k: MetadataValue.float(float(v)) for k, v in summary.items() if v is not None},
            over_warn=markdown_table([{"metric": r[1], "name": r[2], "value": r[3], "status": r[6]} for r in rows if r[6] in (WARN, FAIL)]),
        )
    )


def _drift_rows(context, spark: PySparkResource, lake: LakeResource, metric: str):
    return lake.read_days(spark.spark_session, MODEL_DRIFT, Days.of(context.partition_keys)).where(F.col("metric") == metric).orderBy(F.desc("value")).collect()


def _level_check(metric: str, rows) -> AssetCheckResult:
    return leveled_result(
        [r.status for r in rows],
        {
            "measured": markdown_table([{"day": str(r.event_date), "name": r.name, "value": r.value, "warn_at": r.warn_at, "fail_at": r.fail_at, "status": r.status} for r in rows if r.status in (WARN, FAIL)][:20] or [{"day": "-", "name": "all within thresholds", "value": "", "warn_at": "", "fail_at": "", "status": "OK"}]),
            "worst_value": MetadataValue.float(float(max((r.value for r in rows if r.value is not None), default=0.0))) if metric != DQ_MIN_PASS_RATE else MetadataValue.float(float(min((r.value for r in rows if r.value is not None), default=1.0))),
            "rows_checked": len(rows),
        },
    )


@asset_check(asset=MODEL_DRIFT, partitions_def=daily_partitions, description="Every model feature's PSI against the training data is below the warn threshold (warns from 0.1, fails from 0.25 by default).")
def feature_psi_within_thresholds(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _level_check(FEATURE_PSI, _drift_rows(context, spark, lake, FEATURE_PSI))


@asset_check(asset=MODEL_DRIFT, partitions_def=daily_partitions, description="The day's LOW / MEDIUM / HIGH mix is close to the shares the model was calibrated to (band PSI).")
def risk_band_shift_within_thresholds(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _level_check(BAND_PSI, _drift_rows(context, spark, lake, BAND_PSI))


@asset_check(asset=MODEL_DRIFT, partitions_def=daily_partitions, description="The share of the day's records rejected to the DLQ is within its thresholds (a spike points at an upstream change).")
def dlq_rate_within_thresholds(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _level_check(DLQ_RATE, _drift_rows(context, spark, lake, DLQ_RATE))


@asset_check(asset=MODEL_DRIFT, partitions_def=daily_partitions, description="The lowest pass rate of any data-quality rule on the day is within its thresholds.")
def dq_pass_rate_within_thresholds(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _level_check(DQ_MIN_PASS_RATE, _drift_rows(context, spark, lake, DQ_MIN_PASS_RATE))
