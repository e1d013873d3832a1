"""regulatory_snapshots (daily) and regulatory_snapshots_monthly: write-once, verifiable records of scores and alert decisions.

A snapshot of a period holds, for every transaction delivered in it, its amount, risk score and
band, the model version and the alert decision. It is written once: materialising an existing
period again is refused unless a supersede reason is given (config `supersede_reason` or the run
tag `supersede_reason`; a replay uses its incident id), and then it becomes version N+1 beside
version N, which stays readable (snapshot_version column, and Delta time travel). Every version's
row count, amount totals per currency and SHA-256 go to regulatory_snapshot_manifest; a check
recomputes them from the stored rows, so any later change to a snapshot is detected.

The SHA-256 of a snapshot version (definition 2, docs/snapshot-hash.md), computed inside Spark so no
row travels to the driver and a month needs no more driver memory than a day:
- a row's line: its CONTENT_COLUMNS in order, joined by U+001F; strings as they are, dates as
  yyyy-MM-dd, timestamps as integer microseconds since the Unix epoch (UTC), decimals as plain
  numbers with the column's scale (12.50), risk_score by its IEEE-754 bits as a signed 64-bit
  integer, booleans as true/false, alert_reasons joined by U+001E, null as \\N;
- a row's hash: SHA-256 (hex) of the line's UTF-8 bytes; its bucket: the hash's first two hex digits;
- a bucket's digest: SHA-256 of its rows' hashes sorted ascending, joined by newlines;
- the snapshot's SHA-256: SHA-256 of "<bucket>:<digest>\\n" for every non-empty bucket in ascending order.
scripts/verify_snapshot.py recomputes it from the Delta files with delta-rs and Python alone.
"""

import datetime as dt
import decimal
import hashlib
import json

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    asset,
    asset_check,
)
from dagster_pyspark import PySparkResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata, markdown_table
from compliance_assets.operations.audit import INCIDENT_ID, REASON, REPLAY_JOB, REQUESTED_BY, audited
from partitions import daily_partitions, monthly_partitions
from resources.lake import LakeResource
from catalog import ALERTS, Days, GOLD, SILVER, SNAPSHOTS, SNAPSHOTS_MONTHLY, SNAPSHOT_MANIFEST

SUPERSEDE_TAG = "supersede_reason"
# the snapshot's content, in the order of a row's line (see the module docstring for the hash)
CONTENT_COLUMNS = (
    "transaction_id", "event_time", "event_date", "ingest_date", "account_id", "amount", "currency", "amount_base",
    "risk_score", "risk_band", "model_name", "model_version", "alerted", "alert_id", "alert_reasons",
)
MANIFEST_SCHEMA = T.StructType(
    [
        T.StructField("snapshot_table", T.StringType(), False),
        T.StructField("period", T.StringType(), False),
        T.StructField("snapshot_version", T.IntegerType(), False),
        T.StructField("row_count", T.LongType(), False),
        T.StructField("amount_totals", T.StringType(), False),  # JSON {currency: "total"}, exact decimals as strings
        T.StructField("amount_base_total", T.StringType(), False),
        T.StructField("alerts", T.LongType(), False),
        T.StructField("sha256", T.StringType(), False),
        T.StructField("supersedes_version", T.IntegerType()),
        T.StructField("supersede_reason", T.StringType()),
        T.StructField("same_content_as_superseded", T.BooleanType()),
        T.StructField("requested_by", T.StringType()),
        T.StructField("incident_id", T.StringType()),
        T.StructField("delta_version", T.LongType(), False),
        T.StructField("dagster_run_id", T.StringType()),
        T.StructField("created_at", T.TimestampType(), False),
    ]
)


class SnapshotConfig(Config):
    supersede_reason: str = Field(
        default="",
        description="Required to re-materialise a period that already has a snapshot: why the new version supersedes it (kept in the manifest). The run tag supersede_reason works too (e.g. for backfills).",
    )


def snapshot_rows(spark: SparkSession, lake: LakeResource, first: dt.date, last: dt.date) -> DataFrame:
    """Every scored transaction delivered in [first, last] with its amount and alert decision (CONTENT_COLUMNS)."""
    days = (F.col("ingest_date") >= F.lit(first)) & (F.col("ingest_date") <= F.lit(last))
    gold = lake.read(spark, GOLD).where(days).select("transaction_id", "event_time", "event_date", "ingest_date", "account_id", "risk_score", "risk_band", "model_name", "model_version")
    silver = lake.read(spark, SILVER).where(days).select("transaction_id", "event_time", "amount", "currency", "amount_base")
    alerts = lake.read(spark, ALERTS).where(days).select("transaction_id", "event_time", "alert_id", F.col("reasons").alias("alert_reasons"))
    return (
        gold.join(silver, ["transaction_id", "event_time"], "left")
        .join(alerts, ["transaction_id", "event_time"], "left")
        .withColumn("alerted", F.col("alert_id").isNotNull())
        .select(*CONTENT_COLUMNS)
    )


HASH_DEFINITION = 2  # docs/snapshot-hash.md; 1 was SHA-256 over to_json rows streamed to the driver in key order
FIELD_SEP, ITEM_SEP, NULL = "\x1f", "\x1e", "\\N"


def _canonical(field: T.StructField) -> F.Column:
    """One content column as the text the hash definition gives it."""
    c = F.col(field.name)
    if isinstance(field.dataType, T.TimestampType):
        text = F.unix_micros(c).cast("string")
    elif isinstance(field.dataType, T.DoubleType):
        text = F.expr(f"reflect('java.lang.Double', 'doubleToLongBits', `{field.name}`)")
    elif isinstance(field.dataType, T.ArrayType):
        text = F.array_join(c, ITEM_SEP, NULL)
    elif isinstance(field.dataType, T.BooleanType):
        text = F.when(c, "true").otherwise("false")
    else:  # strings, dates (yyyy-MM-dd), decimals (plain, with the column's scale)
        text = c.cast("string")
    return F.when(c.isNull(), F.lit(NULL)).otherwise(text)


def row_hash(rows: DataFrame) -> F.Column:
    """SHA-256 (hex) of a row's canonical line."""
    fields = {f.name: f for f in rows.schema.fields}
    return F.sha2(F.concat_ws(FIELD_SEP, *[_canonical(fields[c]) for c in CONTENT_COLUMNS]), 256)


def _combined(digests: dict[str, str]) -> str:
    """The snapshot hash from its buckets' digests ({bucket: digest})."""
    return hashlib.sha256("".join(f"{b}:{digests[b]}\n" for b in sorted(digests)).encode("ascii")).hexdigest()


def fingerprints(rows: DataFrame, keys: list[str]) -> dict[tuple, dict]:
    """{key values: fingerprint} for every group of `keys` (e.g. period and snapshot_version): row count, amount
    totals per currency, alerts and the snapshot hash, recomputed from the content columns in two Spark jobs,
    whatever the number of groups. The bucket digests are computed by the executors: at most 256 small rows
    per group reach the driver."""
    agg = rows.groupBy(*keys, "currency").agg(
        F.count(F.lit(1)).alias("n"), F.sum("amount").alias("amount"), F.sum("amount_base").alias("base"), F.sum(F.col("alerted").cast("long")).alias("alerts")
    ).collect()
    buckets = (
        rows.select(*keys, row_hash(rows).alias("h"))
        .groupBy(*keys, F.substring("h", 1, 2).alias("bucket"))
        .agg(F.sha2(F.concat_ws("\n", F.array_sort(F.collect_list("h"))), 256).alias("digest"))
        .collect()
    )
    digests: dict[tuple, dict[str, str]] = {}
    for r in buckets:
        digests.setdefault(tuple(r[k] for k in keys), {})[r.bucket] = r.digest
    groups: dict[tuple, list] = {}
    for r in agg:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return {
        key: {
            "row_count": sum(r.n for r in g),
            "amount_totals": json.dumps({str(r.currency): str(r.amount) for r in sorted(g, key=lambda r: str(r.currency))}, sort_keys=True),
            "amount_base_total": str(sum((r.base for r in g if r.base is not None), start=decimal.Decimal("0.00"))),
            "alerts": sum(r.alerts or 0 for r in g),
            "sha256": _combined(digests.get(key, {})),
        }
        for key, g in groups.items()
    }


EMPTY = {"row_count": 0, "amount_totals": "{}", "amount_base_total": "0.00", "alerts": 0, "sha256": _combined({})}


def manifest(spark: SparkSession, lake: LakeResource) -> DataFrame:
    return lake.read_or_empty(spark, SNAPSHOT_MANIFEST, MANIFEST_SCHEMA)


def current_entries(spark: SparkSession, lake: LakeResource, table: str, periods: list[str]) -> dict:
    """{period: the manifest row of its newest version} for the periods that have one (one read)."""
    rows = manifest(spark, lake).where((F.col("snapshot_table") == table) & F.col("period").isin(periods)).collect()
    newest: dict = {}
    for r in rows:
        if r.period not in newest or r.snapshot_version > newest[r.period].snapshot_version:
            newest[r.period] = r
    return newest


def current_entry(spark: SparkSession, lake: LakeResource, table: str, period: str):
    """The manifest row of the period's newest version, or None."""
    return current_entries(spark, lake, table, [period]).get(period)


def supersede_reason(context: AssetExecutionContext, config: SnapshotConfig) -> str:
    """The reason a new version may supersede the current one: config, run tag, or a replay's incident."""
    tags = context.run.tags
    if config.supersede_reason.strip():
        return config.supersede_reason.strip()
    if tags.get(SUPERSEDE_TAG, "").strip():
        return tags[SUPERSEDE_TAG].strip()
    if context.run.job_name == REPLAY_JOB and tags.get(INCIDENT_ID):
        return f"replay for incident {tags[INCIDENT_ID]}: {tags.get(REASON, '')}".strip().rstrip(":")
    return ""


def write_snapshots(context: AssetExecutionContext, spark: SparkSession, lake: LakeResource, table: str, periods: list[str], rows: DataFrame, reason: str) -> list[dict]:
    """Write every period's next snapshot version in one Delta commit (refused, before anything is written, when
    a period has one and no reason is given), then their manifest entries, with the fingerprints recomputed from
    what was stored. `rows` hold the periods' content with a `period` column."""
    current = current_entries(spark, lake, table, periods)
    if current and not reason:
        c = current[min(current)]
        raise Failure(
            f"{table} {c.period} already has snapshot version {c.snapshot_version} (sha256 {c.sha256[:16]}…, created "
            f"{c.created_at:%Y-%m-%d %H:%M} UTC)" + (f", and so do {len(current) - 1} more of the run's periods" if len(current) > 1 else "")
            + f". Snapshots are write-once: to supersede it, give a reason (config supersede_reason or run tag {SUPERSEDE_TAG}); "
            f"version {c.snapshot_version} stays readable."
        )
    versions = {p: (current[p].snapshot_version if p in current else 0) + 1 for p in periods}
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    new_version = F.create_map(*[x for p, v in versions.items() for x in (F.lit(p), F.lit(v))])
    # rows of versions whose manifest entry was never written (a crashed run)
    lake.delete_where(spark, table, F.col("period").isin(periods) & (F.col("snapshot_version") >= new_version[F.col("period")]))
    lake.append(
        rows.withColumn("snapshot_version", new_version[F.col("period")]).withColumn("snapshot_created_at", F.lit(now)).withColumn("dagster_run_id", F.lit(context.run_id)),
        table, partition_by=("period",),
    )
    delta_version = lake.version(spark, table)
    stored = lake.read(spark, table).where(F.col("period").isin(periods) & (F.col("snapshot_version") == new_version[F.col("period")]))
    fps = fingerprints(stored, ["period"])
    tags = context.run.tags
    out, entries = [], []
    for p in periods:
        fp, c = fps.get((p,), EMPTY), current.get(p)
        entries.append((
            table, p, versions[p], fp["row_count"], fp["amount_totals"], fp["amount_base_total"], fp["alerts"], fp["sha256"],
            c.snapshot_version if c is not None else None, (reason or None) if c is not None else None,
            (c.sha256 == fp["sha256"]) if c is not None else None,
            tags.get(REQUESTED_BY), tags.get(INCIDENT_ID), delta_version, context.run_id, now,
        ))
        context.log.info(f"{table} {p}: version {versions[p]}, {fp['row_count']} rows, sha256 {fp['sha256']}")
        out.append({"period": p, **fp, "snapshot_version": versions[p], "delta_version": delta_version, "superseded": c.snapshot_version if c is not None else None})
    lake.append(spark.createDataFrame(entries, MANIFEST_SCHEMA), SNAPSHOT_MANIFEST)
    return out


def _materialize(context: AssetExecutionContext, config: SnapshotConfig, spark: SparkSession, lake: LakeResource, table: str, periods: list[str], rows: DataFrame) -> MaterializeResult:
    reason = supersede_reason(context, config)
    written = write_snapshots(context, spark, lake, table, periods, rows, reason)
    return MaterializeResult(
        metadata=delta_metadata(
            lake.table_path(table), written[-1]["delta_version"], sum(w["row_count"] for w in written), None,
            snapshots=markdown_table([{"period": w["period"], "version": w["snapshot_version"], "rows": w["row_count"], "alerts": w["alerts"], "sha256": w["sha256"], "supersedes": w["superseded"] or "-"} for w in written]),
            sha256=written[-1]["sha256"] if len(written) == 1 else "see snapshots",
            supersede_reason=reason or "-",
        )
    )


snapshot_manifest = AssetSpec(
    SNAPSHOT_MANIFEST,
    group_name="reporting",
    kinds={"delta"},
    description="One row per regulatory snapshot version (daily and monthly): row count, amount totals per currency, alerts, SHA-256, and for a superseding version the reason, who asked and the incident. Append-only.",
    metadata={"key": "snapshot_table, period, snapshot_version"},
)


@asset(
    name=SNAPSHOTS,
    group_name="reporting",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[GOLD, ALERTS, SILVER],
    kinds={"spark", "delta"},
    description=(
        "Write-once daily regulatory snapshot: every transaction delivered on the day with amount, risk score and band, "
        "model version and alert decision. Re-materialising needs a supersede reason and adds a new version (the old one "
        "stays readable); row count, amount totals and a SHA-256 per version are in regulatory_snapshot_manifest and verified."
    ),
    metadata={"partition_column": "period (delivery day)", "key": "period, snapshot_version, transaction_id, event_time", "hash_columns": ", ".join(CONTENT_COLUMNS)},
)
@audited
def regulatory_snapshots(context: AssetExecutionContext, config: SnapshotConfig, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    days = Days.of(context.partition_keys)
    rows = snapshot_rows(spark.spark_session, lake, days.first, days.last).withColumn("period", F.col("ingest_date").cast("string"))
    return _materialize(context, config, spark.spark_session, lake, SNAPSHOTS, days.keys, rows)


@asset(
    name=SNAPSHOTS_MONTHLY,
    group_name="reporting",
    partitions_def=monthly_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[SNAPSHOTS],
    kinds={"spark", "delta"},
    description=(
        "Write-once monthly regulatory snapshot: the month's scored transactions and alert decisions, with the same "
        "supersede rule, manifest and SHA-256 verification as the daily snapshots. Materialise it after the month's last day."
    ),
    metadata={"partition_column": "period (month, YYYY-MM-01)", "key": "period, snapshot_version, transaction_id, event_time", "hash_columns": ", ".join(CONTENT_COLUMNS)},
)
@audited
def regulatory_snapshots_monthly(context: AssetExecutionContext, config: SnapshotConfig, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
    months = sorted(context.partition_keys)
    first = dt.date.fromisoformat(months[0])
    last = (dt.date.fromisoformat(months[-1]).replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    rows = snapshot_rows(spark.spark_session, lake, first, last).withColumn("period", F.date_format(F.trunc("ingest_date", "month"), "yyyy-MM-dd"))
    return _materialize(context, config, spark.spark_session, lake, SNAPSHOTS_MONTHLY, months, rows)


def verify(spark: SparkSession, lake: LakeResource, table: str, periods: list[str]) -> list[dict]:
    """Recompute every stored version of the periods and compare with its manifest entry."""
    results = []
    entries = manifest(spark, lake).where((F.col("snapshot_table") == table) & F.col("period").isin(periods)).collect()
    for period in periods:
        if not any(e.period == period for e in entries):
            results.append({"period": period, "version": "-", "ok": False, "problem": "no snapshot in the manifest"})
    fps = fingerprints(lake.read(spark, table).where(F.col("period").isin(periods)), ["period", "snapshot_version"]) if entries and lake.table_exists(spark, table) else {}
    for e in sorted(entries, key=lambda e: (e.period, e.snapshot_version)):
        fp = fps.get((e.period, e.snapshot_version), EMPTY)
        problems = [k for k in ("row_count", "amount_totals", "amount_base_total", "alerts", "sha256") if fp[k] != e[k]]
        results.append({"period": e.period, "version": e.snapshot_version, "ok": not problems, "problem": ", ".join(problems) or "-", "sha256": fp["sha256"]})
    return results


def _verification(results: list[dict]) -> AssetCheckResult:
    return AssetCheckResult(
        passed=all(r["ok"] for r in results),
        metadata={"versions": markdown_table(results), "mismatches": sum(not r["ok"] for r in results)},
    )


@asset_check(
    asset=SNAPSHOTS,
    partitions_def=daily_partitions,
    additional_deps=[SNAPSHOT_MANIFEST],
    description="Recomputes each stored version's row count, amount totals and SHA-256 from its rows and compares them with the manifest: any change to a stored snapshot fails it.",
)
def daily_snapshot_matches_manifest(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _verification(verify(spark.spark_session, lake, SNAPSHOTS, list(context.partition_keys)))


@asset_check(
    asset=SNAPSHOTS_MONTHLY,
    partitions_def=monthly_partitions,
    additional_deps=[SNAPSHOT_MANIFEST],
    description="Recomputes each stored version's row count, amount totals and SHA-256 from its rows and compares them with the manifest: any change to a stored snapshot fails it.",
)
def monthly_snapshot_matches_manifest(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
    return _verification(verify(spark.spark_session, lake, SNAPSHOTS_MONTHLY, list(context.partition_keys)))
