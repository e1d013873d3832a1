"""Reference-data assets: KYC profiles, account limits, watchlists, FX rates, merchant profiles.

Each is loaded from the day's CSV file (or the latest earlier one within LOOKBACK_DAYS when no new
file was delivered) into a Delta table partitioned by event_date, typed by its contract; Delta time
travel keeps every earlier version. With no file in the window the day is an empty partition (a
warning in the log and the metadata). Files are RFC 4180 CSV (a quote inside a quoted field is
doubled, as Python's csv module and pandas write it) with a header naming the contract's columns in
any order. Checks, both blocking (a failure stops the assets that read the table in the same run):
the partition matches its contract (pandera) and natural keys are unique.
"""


import csv
import datetime as dt
import io
from dataclasses import dataclass

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
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from compliance_assets.metadata import delta_metadata
from contracts import REFERENCE_TABLES, contract_path, load_contract
from contracts.pandera_schemas import pandera_errors, pandera_schema
from contracts.spark import struct_type
from partitions import daily_partitions
from resources.lake import LakeResource
from resources.masking import masked_excerpt

GROUP = "reference_data"
LOOKBACK_DAYS = 31
# RFC 4180: fields with a comma, quote or line break are quoted and a quote inside one is doubled
# (Spark's CSV reader escapes with a backslash unless told otherwise)
CSV_OPTIONS = {"quote": '"', "escape": '"', "dateFormat": "yyyy-MM-dd"}
CORRUPT = "_corrupt_record"
EXAMPLES = 3  # malformed rows described in an error (line, columns, masked excerpt)
ROW_ID_BITS = 33  # monotonically_increasing_id(): partition index above these bits, row within it below

DESCRIPTIONS = {
    "kyc_profiles": "Know-your-customer profile per account (home location, risk rating, PEP flag, typical amount). Names are PII and never leave this table.",
    "account_limits": "Per-account single-transaction and daily limits and the regulatory reporting threshold, in EUR.",
    "watchlists": "Sanctions and internal watchlist entries; counterparties, merchants and accounts on them raise watchlist hits.",
    "fx_rates": "Daily FX reference rates into the base currency (EUR), used to normalise amounts.",
    "merchant_profiles": "Card acceptors with merchant category code (MCC) and location.",
}


class ContractCsvError(ValueError):
    """A contract CSV file whose header or rows do not match the contract. The message names the file,
    the columns, row counts and line numbers; of a row's contents at most a short masked excerpt."""


@dataclass
class ContractRows:
    """A contract CSV file's rows, typed and in contract column order, projected from a cached read
    (`unpersist()` frees it)."""

    rows: DataFrame
    count: int
    cached: DataFrame

    def unpersist(self) -> None:
        self.cached.unpersist()


def reference_file_for(spark, lake: LakeResource, table: str, day: dt.date) -> str | None:
    """The day's file, else the most recent earlier one within LOOKBACK_DAYS; None without either."""
    for back in range(LOOKBACK_DAYS + 1):
        candidate = lake.landing_path("reference", table, f"{(day - dt.timedelta(days=back)).isoformat()}.csv")
        if lake.path_exists(spark, candidate):
            return candidate
    return None


def csv_header(spark, path: str, table: str) -> list[str]:
    """The column names on the file's first line (RFC 4180 quoting; a UTF-8 byte order mark dropped)."""
    first = spark.read.text(path).first()
    if first is None:
        raise ContractCsvError(f"{path} is empty: no header line naming the {table} contract's columns")
    return [name.strip() for name in next(csv.reader([first.value.lstrip("\ufeff")]), [""])]


def check_header(header: list[str], path: str, table: str) -> None:
    """Every contract column once, nothing else, in any order; the error names columns, never values."""
    expected = list(load_contract(table)["properties"])
    where = f"{path}: the header does not match the {table} contract ({contract_path(table).name})"
    if not set(header) & set(expected):
        # no contract column at all: most likely a data row where the header should be, so no names
        raise ContractCsvError(f"{where}: its first line names none of the columns {expected} (a missing header? masked: {masked_excerpt(','.join(header))!r})")
    missing = [c for c in expected if c not in header]
    unknown = [c[:64] for c in header if c not in expected]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or repeated:
        problems = [f"{what} {cols}" for what, cols in (("missing columns", missing), ("unknown columns", unknown), ("repeated columns", repeated)) if cols]
        raise ContractCsvError(f"{where}: {'; '.join(problems)}; the file needs exactly the columns {expected}, in any order")


def read_contract_csv(spark, path: str, table: str, multi_line: bool | None = None) -> ContractRows:
    """Read an RFC 4180 CSV file of a contract (`table`): columns matched by the header's names and typed
    by the contract; a row that does not fit (a value of the wrong type, too few or too many fields)
    fails the read with a ContractCsvError giving counts, line numbers and masked excerpts.

    `multi_line` (quoted fields with line breaks; the file is then read in one task) defaults to the
    reference tables, small files with names in them; the ledger and outcomes files are large and split.
    """
    header = csv_header(spark, path, table)
    check_header(header, path, table)
    contract = struct_type(table)
    # the header's order, so Spark's positional read puts each column under its own name
    read_schema = T.StructType([T.StructField(name, contract[name].dataType) for name in header]).add(CORRUPT, T.StringType())
    multi_line = table in REFERENCE_TABLES if multi_line is None else multi_line
    raw = spark.read.csv(
        path, schema=read_schema, header=True, enforceSchema=True, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT,
        multiLine=multi_line, **CSV_OPTIONS,
    ).cache()
    total, bad = raw.agg(F.count(F.lit(1)), F.count(CORRUPT)).first()
    if bad:
        examples = raw.where(F.col(CORRUPT).isNotNull()).limit(EXAMPLES).collect()
        raw.unpersist()
        raise ContractCsvError(malformed_rows_message(spark, path, table, header, contract, total, bad, examples))
    return ContractRows(raw.select(*contract.fieldNames()), int(total), raw)


def load_reference_csv(spark, path: str, table: str) -> DataFrame:
    """The typed rows of a contract CSV file (read_contract_csv); the cached read stays until the session ends."""
    return read_contract_csv(spark, path, table).rows


def malformed_rows_message(spark, path: str, table: str, header: list[str], contract: T.StructType, total: int, bad: int, examples: list) -> str:
    """Which rows failed and why (line, wrong columns or field count), with a masked excerpt of each."""
    lines = line_numbers(spark, path, [r[CORRUPT] for r in examples])
    described = []
    for row in examples:
        record = row[CORRUPT]
        try:
            fields = next(csv.reader(io.StringIO(record)), [])
        except csv.Error:
            fields = []
        if len(fields) != len(header):
            what = f"{len(fields)} fields where the header has {len(header)}"
        else:
            wrong = [f"{c} is not a {contract[c].dataType.simpleString()}" for c, value in zip(header, fields) if value != "" and row[c] is None]
            what = ", ".join(wrong) or "unreadable"
        where = f"line {lines[record]}" if record in lines else "a row"
        described.append(f"{where}: {what} (masked: {masked_excerpt(record)!r})")
    more = f"; {bad - len(examples)} more" if bad > len(examples) else ""
    return f"{path}: {bad} of {total} rows do not match the {table} contract ({contract_path(table).name}): {'; '.join(described)}{more}"


def line_numbers(spark, path: str, records: list[str]) -> dict[str, int]:
    """{record: 1-based number of the file line it starts on} (for error messages, so no row is quoted)."""
    first_lines = {record.split("\n", 1)[0].rstrip("\r"): record for record in records}
    numbered = spark.read.text(path).select("value", F.monotonically_increasing_id().alias("id"))
    sizes = dict(numbered.groupBy(F.shiftright("id", ROW_ID_BITS)).count().collect())
    found: dict[str, int] = {}
    for value, row_id in numbered.where(F.col("value").isin(list(first_lines))).select("value", "id").collect():
        part, index = row_id >> ROW_ID_BITS, row_id & ((1 << ROW_ID_BITS) - 1)
        line = sum(n for p, n in sizes.items() if p < part) + index + 1
        record = first_lines[value]
        found[record] = min(line, found.get(record, line))
    return found


def write_contract_csv_day(spark, lake: LakeResource, table: str, key: str, path: str, delivered: bool = True) -> tuple[int, int]:
    """Replace day `key` of `table` with the rows of the contract CSV at `path` (none when not
    `delivered`: an empty partition), stamped with the day and the file name; returns (Delta version, rows)."""
    loaded = read_contract_csv(spark, path, table) if delivered else None
    df = loaded.rows if loaded else spark.createDataFrame([], struct_type(table))
    df = df.withColumn("event_date", F.lit(key).cast("date")).withColumn("source_file", F.lit(path.rsplit("/", 1)[-1]))
    try:
        version = lake.replace_where(df, table, f"event_date = '{key}'")
    finally:
        if loaded:
            loaded.unpersist()
    # counted here, not from the commit: Delta makes no commit for an empty write that removes nothing
    return version, loaded.count if loaded else 0


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
        rows_total, files, missing = 0, [], []
        version = -1
        for key in context.partition_keys:
            path = reference_file_for(session, lake, table, dt.date.fromisoformat(key))
            if path is None:
                context.log.warning(
                    f"{table} {key}: no file for the day or the {LOOKBACK_DAYS} days before it under "
                    f"{lake.landing_path('reference', table)}; the partition is empty"
                )
                missing.append(key)
            version, rows = write_contract_csv_day(session, lake, table, key, path or lake.landing_path("reference", table, f"{key}.csv"), path is not None)
            rows_total += rows
            if path:
                files.append(path.rsplit("/", 1)[-1])
            context.log.info(f"{table} {key}: {rows} rows from {path or 'no file'}")
        return MaterializeResult(
            metadata=delta_metadata(
                lake.table_path(table), version, rows_total, struct_type(table),
                source_files=", ".join(files) or "none", days_without_file=", ".join(missing) or "none",
            )
        )

    return _reference


def build_reference_checks(table: str) -> list[AssetChecksDefinition]:
    """The contract and natural-key checks of a contract CSV table; blocking, so a failure stops the assets
    that read the table in the same run."""
    contract = load_contract(table)
    key_cols = contract["x-natural-key"]

    @asset_check(asset=table, name=f"{table}_matches_contract", partitions_def=daily_partitions, blocking=True, description=f"Every {table} row satisfies contracts/reference/{table}.schema.json (pandera).")
    def _matches(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
        df = lake.read(spark.spark_session, table).where(F.col("event_date").isin(context.partition_keys))
        errors = pandera_errors(pandera_schema(table, skip_checks_on=tuple(f for f, p in contract["properties"].items() if p.get("x-pii"))), df)
        return AssetCheckResult(passed=not errors, metadata={"pandera_errors": str(errors)[:4000] if errors else "none"})

    @asset_check(asset=table, name=f"{table}_keys_unique", partitions_def=daily_partitions, blocking=True, description=f"The natural key ({', '.join(key_cols)}) is unique within each day's snapshot.")
    def _unique(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
        df = lake.read(spark.spark_session, table).where(F.col("event_date").isin(context.partition_keys))
        dupes = df.groupBy("event_date", *key_cols).count().where("count > 1")
        n = dupes.count()
        return AssetCheckResult(passed=n == 0, metadata={"duplicate_keys": n, "examples": str([r.asDict() for r in dupes.limit(5).collect()])})

    return [_matches, _unique]


reference_assets = [build_reference_asset(t) for t in REFERENCE_TABLES]
reference_checks = [c for t in REFERENCE_TABLES for c in build_reference_checks(t)]
