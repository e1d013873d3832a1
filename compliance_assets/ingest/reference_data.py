"""Reference-data assets: KYC profiles, account limits, watchlists, FX rates, merchant profiles.

A snapshot is a delivered file, landing/reference/<table>/<YYYY-MM-DD>.csv, loaded into the Delta
partition of its day (event_date) and typed by its contract; Delta time travel keeps every earlier
version. Files need not come every day: each delivery day is served by the newest snapshot on or
before it (`serving_snapshots`; a monthly KYC extract serves its month), which is what silver looks up.
Materialising a range loads every file dated in it with one Spark read per table and one Delta commit;
when the range's first day has no file of its own, the newest earlier file is loaded into that day's
partition as well, so every day of the range finds its snapshot inside the range. A day without a file
keeps no rows (Delta has no empty partitions): Dagster records it materialised, its checks pass on no
rows, and the log (a warning) and the metadata name such days, days that no snapshot serves at all and
days served by one older than LOOKBACK_DAYS. A header-only file loads no rows either, so the days it
would serve are served by the snapshot before it. Re-materialising a range replaces exactly its days.

Files are RFC 4180 CSV (a quote inside a quoted field is doubled, as Python's csv module and pandas
write it) with a header naming the contract's columns in any order. Checks, both blocking (a failure
stops the assets that read the table in the same run): the snapshots match their contract (pandera)
and natural keys are unique within each.
"""


import bisect
import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from functools import reduce

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
from catalog import CATALOG, Days

GROUP = "reference_data"
LOOKBACK_DAYS = 31  # a day served by an older snapshot is reported (a warning), not refused
DATED_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})\.csv")
PARTITION_DIR = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})")
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


def _hadoop(spark, path: str):
    """(Hadoop Path, its FileSystem): local folders and abfss:// alike, without a Spark job."""
    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path, hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration())


def dated_files(spark, folder: str) -> dict[str, str]:
    """{day: path} of the <YYYY-MM-DD>.csv files in a landing folder (one listing; empty without the folder)."""
    hadoop_path, fs = _hadoop(spark, folder)
    if not fs.exists(hadoop_path):
        return {}
    found = {}
    for status in fs.listStatus(hadoop_path):
        match = DATED_FILE.fullmatch(status.getPath().getName())
        if status.isFile() and match and _is_date(match.group(1)):
            found[match.group(1)] = f"{folder}/{match.group(0)}"
    return found


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def serving_snapshots(snapshot_days, days) -> dict[str, str | None]:
    """{day: the newest snapshot day on or before it, None when there is none} (days as YYYY-MM-DD)."""
    ordered = sorted(snapshot_days)
    return {day: (ordered[i - 1] if (i := bisect.bisect_right(ordered, day)) else None) for day in days}


def snapshot_days(spark, lake: LakeResource, table: str) -> list[str]:
    """The days that hold a snapshot of `table` in the lake, from the Delta log's file list (no table scan)."""
    if not lake.table_exists(spark, table):
        return []
    return sorted({m.group(1) for f in lake.read(spark, table).inputFiles() if (m := PARTITION_DIR.search(f))})


def day_ranges(days) -> str:
    """Days as runs of consecutive days: '2026-05-02..2026-05-05, 2026-05-09' ('none' without any)."""
    runs: list[list[dt.date]] = []
    for day in sorted(dt.date.fromisoformat(d) for d in days):
        if runs and day - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs) or "none"


def csv_header(spark, path: str, table: str) -> list[str]:
    """The column names on the file's first line (RFC 4180 quoting; a UTF-8 byte order mark dropped), read
    through the file system (a compressed file through its codec), not with a Spark job."""
    hadoop_path, fs = _hadoop(spark, path)
    jvm = spark._jvm
    codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(spark._jsc.hadoopConfiguration()).getCodec(hadoop_path)
    stream = fs.open(hadoop_path)
    reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(codec.createInputStream(stream) if codec else stream, "UTF-8"))
    try:
        first = reader.readLine()
    finally:
        reader.close()
    if first is None:
        raise ContractCsvError(f"{path} is empty: no header line naming the {table} contract's columns")
    return [name.strip() for name in next(csv.reader([first.lstrip("\ufeff")]), [""])]


def check_header(header: list[str], path: str, table: str) -> None:
    """Every required contract column once, optional ones at most once, nothing else, in any order (an
    optional column left out reads as null: its x-when-absent); the error names columns, never values."""
    contract = load_contract(table)
    expected, required = list(contract["properties"]), contract.get("required", [])
    where = f"{path}: the header does not match the {table} contract ({contract_path(table).name})"
    if not set(header) & set(expected):
        # no contract column at all: most likely a data row where the header should be, so no names
        raise ContractCsvError(f"{where}: its first line names none of the columns {expected} (a missing header? masked: {masked_excerpt(','.join(header))!r})")
    missing = [c for c in required if c not in header]
    unknown = [c[:64] for c in header if c not in expected]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if missing or unknown or repeated:
        problems = [f"{what} {cols}" for what, cols in (("missing columns", missing), ("unknown columns", unknown), ("repeated columns", repeated)) if cols]
        optional = [c for c in expected if c not in required]
        raise ContractCsvError(f"{where}: {'; '.join(problems)}; the file needs the columns {required} and may have {optional}, each once, in any order")


def read_contract_csv(spark, path: str, table: str, multi_line: bool | None = None) -> ContractRows:
    """Read an RFC 4180 CSV file of a contract (`table`): columns matched by the header's names and typed
    by the contract (an optional column the header leaves out is null); a row that does not fit (a value of
    the wrong type, too few or too many fields) fails the read with a ContractCsvError giving counts, line
    numbers and masked excerpts.

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
    # an optional column the file leaves out is null in every row
    columns = [F.col(f.name) if f.name in header else F.lit(None).cast(f.dataType).alias(f.name) for f in contract.fields]
    return ContractRows(raw.select(*columns), int(total), raw)


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


def load_contract_files(spark, lake: LakeResource, table: str, files: dict[str, str], first: str, last: str) -> tuple[int, dict[str, int]]:
    """Replace days first..last of `table` with the rows of the contract CSV files `files` ({day: path}, days
    in the range), each stamped with its day (event_date) and file name: one Spark read of all of them (files
    grouped by header, each header checked), one count, one replaceWhere. A file with a row that does not fit
    the contract fails the load before anything is written, with read_contract_csv's error (lines, masked
    excerpts). Returns (Delta version, {day: rows}); days without a file keep no rows."""
    contract = struct_type(table)
    groups: dict[tuple[str, ...], list[str]] = {}
    for _, path in sorted(files.items()):
        header = csv_header(spark, path, table)
        check_header(header, path, table)
        groups.setdefault(tuple(header), []).append(path)
    day_of = {path.rsplit("/", 1)[-1]: day for day, path in files.items()}
    parts = []
    for header, paths in groups.items():
        # the header's order, so Spark's positional read puts each column under its own name (as read_contract_csv)
        read_schema = T.StructType([T.StructField(name, contract[name].dataType) for name in header]).add(CORRUPT, T.StringType())
        raw = spark.read.csv(
            paths, schema=read_schema, header=True, enforceSchema=True, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT,
            multiLine=table in REFERENCE_TABLES, **CSV_OPTIONS,
        )
        columns = [F.col(f.name) if f.name in header else F.lit(None).cast(f.dataType).alias(f.name) for f in contract.fields]
        parts.append(raw.select(*columns, CORRUPT, F.col("_metadata.file_name").alias("source_file")))
    if parts:
        loaded = reduce(DataFrame.unionByName, parts).cache()
    else:
        loaded = spark.createDataFrame([], T.StructType([*contract.fields, T.StructField(CORRUPT, T.StringType()), T.StructField("source_file", T.StringType())]))
    try:
        counts = {r.source_file: (r.total, r.bad) for r in loaded.groupBy("source_file").agg(F.count(F.lit(1)).alias("total"), F.count(CORRUPT).alias("bad")).collect()}
        broken = sorted(files[day_of[name]] for name, (_, bad) in counts.items() if bad)
        if broken:
            read_contract_csv(spark, broken[0], table).unpersist()  # raises with the lines and masked excerpts
            raise ContractCsvError(f"{broken[0]}: rows that do not match the {table} contract ({contract_path(table).name})")
        day = F.create_map(*[F.lit(x) for name, d in day_of.items() for x in (name, d)])[F.col("source_file")] if day_of else F.lit(None)
        rows = loaded.select(*contract.fieldNames(), day.cast("date").alias("event_date"), "source_file")
        version = lake.replace_days(rows, CATALOG[table], Days(dt.date.fromisoformat(first), dt.date.fromisoformat(last)))
    finally:
        loaded.unpersist()
    # counted here, not from the commit: Delta makes no commit for an empty write that removes nothing
    return version, {day_of[name]: int(total) for name, (total, _) in counts.items()}


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
        days = sorted(context.partition_keys)
        first, last = days[0], days[-1]
        folder = lake.landing_path("reference", table)
        delivered = dated_files(session, folder)
        files = {d: path for d, path in delivered.items() if first <= d <= last}
        earlier = max((d for d in delivered if d < first), default=None)
        if first not in files and earlier:
            files[first] = delivered[earlier]  # the first day's snapshot: the newest earlier file
        version, rows = load_contract_files(session, lake, table, files, first, last)

        serving = serving_snapshots([d for d in delivered if d <= last], days)
        without_file = [d for d in days if d not in delivered]
        without_snapshot = [d for d in days if serving[d] is None]
        stale = [d for d in days if serving[d] and (dt.date.fromisoformat(d) - dt.date.fromisoformat(serving[d])).days > LOOKBACK_DAYS]
        if without_file:
            context.log.warning(
                f"{table}: no file under {folder} for {day_ranges(without_file)} ({len(without_file)} of {len(days)} days): "
                f"each such day is served by the newest snapshot on or before it"
                + (f" ({first} by {earlier}.csv, loaded into {first})" if first in without_file and earlier else "")
            )
        if without_snapshot:
            context.log.warning(f"{table}: no snapshot on or before {day_ranges(without_snapshot)}: those deliveries find no {table} rows")
        if stale:
            context.log.warning(f"{table}: {day_ranges(stale)} served by a snapshot more than {LOOKBACK_DAYS} days old")
        context.log.info(f"{table}: {sum(rows.values())} rows from {len(files)} files for {first}..{last}")
        return MaterializeResult(
            metadata=delta_metadata(
                lake.table_path(table), version, sum(rows.values()), struct_type(table),
                source_files=", ".join(sorted({p.rsplit("/", 1)[-1] for p in files.values()})) or "none",
                snapshots_written=len(files), days_without_file=day_ranges(without_file),
                days_without_snapshot=day_ranges(without_snapshot), days_served_by_stale_snapshot=day_ranges(stale),
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
        df = lake.read_days(spark.spark_session, CATALOG[table], Days.of(context.partition_keys))
        errors = pandera_errors(pandera_schema(contract, masked=True), df)
        return AssetCheckResult(passed=not errors, metadata={"pandera_errors": str(errors)[:4000] if errors else "none"})

    @asset_check(asset=table, name=f"{table}_keys_unique", partitions_def=daily_partitions, blocking=True, description=f"The natural key ({', '.join(key_cols)}) is unique within each day's snapshot.")
    def _unique(context, spark: PySparkResource, lake: LakeResource) -> AssetCheckResult:
        df = lake.read_days(spark.spark_session, CATALOG[table], Days.of(context.partition_keys))
        dupes = df.groupBy("event_date", *key_cols).count().where("count > 1")
        n = dupes.count()
        return AssetCheckResult(passed=n == 0, metadata={"duplicate_keys": n, "examples": str([r.asDict() for r in dupes.limit(5).collect()])})

    return [_matches, _unique]


reference_assets = [build_reference_asset(t) for t in REFERENCE_TABLES]
reference_checks = [c for t in REFERENCE_TABLES for c in build_reference_checks(t)]
