"""Reference-data assets: KYC profiles, account limits, watchlists, FX rates, merchant profiles.

Each is loaded from the day's CSV file (or the latest earlier one when no new file was delivered)
into a Delta table partitioned by event_date, typed by its contract; Delta time travel keeps every
earlier version. Checks: the partition matches its contract (pandera) and natural keys are unique.
"""


import datetime as dt

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    asset,
    asset_check,
)
from dagster_pyspark import PySparkResource
from pyspark.sql import functions as F

from compliance_assets.metadata import delta_metadata
from contracts import REFERENCE_TABLES, load_contract
from contracts.pandera_schemas import pandera_errors, pandera_schema
from contracts.spark import struct_type
from partitions import daily_partitions
from resources.lake import LakeResource

GROUP = "reference_data"
LOOKBACK_DAYS = 31

DESCRIPTIONS = {
    "kyc_profiles": "Know-your-customer profile per account (home location, risk rating, PEP flag, typical amount). Names are PII and never leave this table.",
    "account_limits": "Per-account single-transaction and daily limits and the regulatory reporting threshold, in EUR.",
    "watchlists": "Sanctions and internal watchlist entries; counterparties, merchants and accounts on them raise watchlist hits.",
    "fx_rates": "Daily FX reference rates into the base currency (EUR), used to normalise amounts.",
    "merchant_profiles": "Card acceptors with merchant category code (MCC) and location.",
}


class ReferenceFileMissing(FileNotFoundError):
    """No reference file for the day or the days before it."""


def reference_file_for(spark, lake: LakeResource, table: str, day: dt.date) -> str:
    """The day's file, else the most recent earlier one within LOOKBACK_DAYS."""
    for back in range(LOOKBACK_DAYS + 1):
        candidate = lake.landing_path("reference", table, f"{(day - dt.timedelta(days=back)).isoformat()}.csv")
        if lake.path_exists(spark, candidate):
            return candidate
    raise ReferenceFileMissing(
        f"No {table} file for {day} or the {LOOKBACK_DAYS} days before it under {lake.landing_path('reference', table)}"
    )


def load_reference_csv(spark, path: str, table: str):
    """Read a reference CSV with its contract's schema; malformed rows raise a clear error."""
    schema = struct_type(table)
    corrupt = "_corrupt_record"
    read_schema = schema.add(corrupt, "string")
    df = spark.read.csv(path, header=True, schema=read_schema, mode="PERMISSIVE", columnNameOfCorruptRecord=corrupt, dateFormat="yyyy-MM-dd").cache()
    bad = df.where(F.col(corrupt).isNotNull())
    n_bad = bad.count()
    if n_bad:
        examples = [r[corrupt] for r in bad.limit(3).collect()]
        df.unpersist()
        raise ValueError(f"{path}: {n_bad} rows do not match the {table} contract's types, e.g. {examples}")
    return df.drop(corrupt)


def write_contract_csv_day(spark, lake: LakeResource, table: str, key: str, path: str, delivered: bool = True) -> tuple[int, int]:
    """Replace day `key` of `table` with the rows of the contract-typed CSV at `path` (none when
    not `delivered`), stamped with the day and the file name; returns (Delta version, rows)."""
    df = load_reference_csv(spark, path, table) if delivered else spark.createDataFrame([], struct_type(table))
    df = df.withColumn("event_date", F.lit(key).cast("date")).withColumn("source_file", F.lit(path.rsplit("/", 1)[-1]))
    version = lake.replace_where(df, table, f"event_date = '{key}'")
    df.unpersist()
    return version, lake.rows_written(spark, table)


def build_reference_asset(table: str) -> AssetsDefinition:
    contract = load_contract(table)

    @asset(
        name=table,
        group_name=GROUP,
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        description=DESCRIPTIONS[table],
        kinds={"spark", "delta"},
        metadata={"contract": f"contracts/reference/{table}.schema.json", "natural_key": ", ".join(contract["x-natural-key"])},
    )
    def _reference(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource) -> MaterializeResult:
        session = spark.spark_session
        rows_total, files = 0, []
        version = -1
        for key in context.partition_keys:
            path = reference_file_for(session, lake, table, dt.date.fromisoformat(key))
            version, rows = write_contract_csv_day(session, lake, table, key, path)
            rows_total += rows
            files.append(path.rsplit("/", 1)[-1])
            context.log.info(f"{table} {key}: {rows} rows from {path}")
        return MaterializeResult(metadata=delta_metadata(lake.table_path(table), version, rows_total, struct_type(table), source_files=", ".join(files)))

    return _reference


def build_reference_checks(table: str) -> list[AssetChecksDefinition]:
    contract = load_contract(table)
    key_cols = contract["x-natural-key"]

    @asset_check(asset=table, name=f"{table}_matches_contract", partitions_def=daily_partitions, description=f"Every {table} row satisfies contracts/reference/{table}.schema.json (pandera).")
    def _matches(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
        df = lake.read(spark.spark_session, table).where(F.col("event_date").isin(context.partition_keys))
        errors = pandera_errors(pandera_schema(table, skip_checks_on=tuple(f for f, p in contract["properties"].items() if p.get("x-pii"))), df)
        return AssetCheckResult(passed=not errors, metadata={"pandera_errors": str(errors)[:4000] if errors else "none"})

    @asset_check(asset=table, name=f"{table}_keys_unique", partitions_def=daily_partitions, description=f"The natural key ({', '.join(key_cols)}) is unique within each day's snapshot.")
    def _unique(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
        df = lake.read(spark.spark_session, table).where(F.col("event_date").isin(context.partition_keys))
        dupes = df.groupBy("event_date", *key_cols).count().where("count > 1")
        n = dupes.count()
        return AssetCheckResult(passed=n == 0, metadata={"duplicate_keys": n, "examples": str([r.asDict() for r in dupes.limit(5).collect()])})

    return [_matches, _unique]


reference_assets = [build_reference_asset(t) for t in REFERENCE_TABLES]
reference_checks = [c for t in REFERENCE_TABLES for c in build_reference_checks(t)]
