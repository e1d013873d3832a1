"""ledger_files: the core ledger's daily system-of-record file, from the file drop into the landing area.

The ledger drops `system_of_record/<day>.csv` into the file drop (a folder locally, a Blob container in
Azure: `FileDropResource`). This asset checks it against its contract
(contracts/reference/system_of_record.schema.json: header, types through the loader reconciliation
uses, required fields, patterns and bounds, unique transaction_id) and only then puts the same bytes
at `<landing>/system_of_record/<day>.csv`, where reconciliation reads them. A broken or missing drop
fails the step and lands nothing; a re-run replaces the day's file with the drop's current one.

The landing area is a local folder or an abfss:// URI, so the file is written through Spark's Hadoop
FileSystem (the same one that reads it): into a hidden `_incoming/<run>/` folder first, validated
there, then renamed into place, so reconciliation never sees a partial or unchecked file.
"""

import hashlib
import uuid

from dagster import AssetExecutionContext, BackfillPolicy, Failure, MaterializeResult, MetadataValue, asset
from dagster_pyspark import PySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from compliance_assets.metadata import markdown_table
from compliance_assets.ingest.reference_data import read_contract_csv
from contracts import contract_path, load_contract
from contracts.rules import CRITICAL, contract_rules
from partitions import daily_partitions
from resources.file_drops import FileDropResource
from resources.lake import LakeResource

ASSET = "ledger_files"
CONTRACT = "system_of_record"
CHUNK = 4 << 20  # bytes per call through py4j


def drop_name(day: str) -> str:
    """The day's file in the drop."""
    return f"{CONTRACT}/{day}.csv"


def check_header(data: bytes, where: str) -> list[str]:
    """The file is UTF-8 and its header names the contract's columns in contract order (the loader
    matches columns by name; the landed file keeps the ledger's layout for whoever reads it by
    position). Returns the columns."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Failure(f"{where} is not UTF-8 text (byte {err.start}); nothing was landed") from err
    expected = list(load_contract(CONTRACT)["properties"])
    header = [c.strip() for c in text.split("\n", 1)[0].rstrip("\r").split(",")] if text else []
    if header != expected:
        raise Failure(
            f"{where}: the header {header or '(empty file)'} does not match the {CONTRACT} contract's columns {expected} "
            f"({contract_path(CONTRACT).name}); nothing was landed"
        )
    return header


def _rule_failure(keyword: str, column, value):
    return {
        "required": column.isNull(),
        "pattern": column.isNotNull() & ~column.rlike(str(value)),
        "minLength": F.length(column) < value,
        "maxLength": F.length(column) > value,
        "minimum": column < value,
        "exclusiveMinimum": column <= value,
        "maximum": column > value,
        "exclusiveMaximum": column >= value,
        "enum": ~column.isin(list(value)) if isinstance(value, (list, tuple)) else None,
    }.get(keyword)  # type and format are enforced by the loader's typed read


def contract_violations(rows: DataFrame) -> tuple[int, dict[str, int], int]:
    """(rows, {rule_id: failing rows} of the critical rules, duplicate natural keys), in one pass."""
    contract = load_contract(CONTRACT)
    rules = [(r.rule_id, f) for r in contract_rules(contract) if r.severity == CRITICAL and (f := _rule_failure(r.keyword, F.col(r.field), r.value)) is not None]
    keys = contract.get("x-natural-key", [])
    with_key = F.count(F.when(F.expr(" AND ".join(f"`{k}` IS NOT NULL" for k in keys)), 1)) if keys else F.lit(0)
    distinct = F.count_distinct(*[F.col(k) for k in keys]) if keys else F.lit(0)
    agg = rows.agg(F.count(F.lit(1)), with_key - distinct, *[F.sum(F.when(fail, 1).otherwise(0)) for _, fail in rules]).collect()[0]
    return int(agg[0]), {rule_id: int(n) for (rule_id, _), n in zip(rules, agg[2:]) if n}, int(agg[1])


class LandingFiles:
    """Bytes into a file of the landing area through Spark's Hadoop FileSystem (local or abfss://)."""

    def __init__(self, spark: SparkSession, path: str):
        jvm = spark._jvm
        self.path = path
        self.target = jvm.org.apache.hadoop.fs.Path(path)
        fs = self.target.getFileSystem(spark._jsc.hadoopConfiguration())
        # the local file system writes .crc side files; a later plain rewrite of the file (the synthetic
        # generator, a person) would then fail Hadoop's checksum on read, so write without them
        if jvm.java.lang.Class.forName("org.apache.hadoop.fs.ChecksumFileSystem").isInstance(fs):
            fs = fs.getRawFileSystem()
        self.fs = fs
        self.staging_dir = jvm.org.apache.hadoop.fs.Path(self.target.getParent(), f"_incoming/{uuid.uuid4().hex}")
        self.staging = jvm.org.apache.hadoop.fs.Path(self.staging_dir, self.target.getName())

    def exists(self) -> bool:
        return bool(self.fs.exists(self.target))

    def stage(self, data: bytes) -> str:
        """Write the bytes to the hidden staging file; returns its path (for reading it back)."""
        out = self.fs.create(self.staging, True)
        try:
            for start in range(0, len(data), CHUNK):
                out.write(bytearray(data[start:start + CHUNK]))
        finally:
            out.close()
        return self.staging.toString()

    def publish(self) -> None:
        """Move the staged file into place, replacing an earlier one."""
        if not self.fs.rename(self.staging, self.target):
            if self.fs.exists(self.target):
                self.fs.delete(self.target, False)
            if not self.fs.rename(self.staging, self.target):
                raise OSError(f"Could not move {self.staging.toString()} to {self.path}")

    def clean_up(self) -> None:
        """Remove this run's staging folder, and _incoming/ when no other run is using it."""
        from py4j.protocol import Py4JJavaError

        if self.fs.exists(self.staging_dir):
            self.fs.delete(self.staging_dir, True)
        incoming = self.staging_dir.getParent()
        try:
            if self.fs.exists(incoming) and len(self.fs.listStatus(incoming)) == 0:
                self.fs.delete(incoming, False)
        except Py4JJavaError:  # another run staged a file meanwhile: it removes the folder
            pass


def land_ledger_file(context: AssetExecutionContext, spark: SparkSession, lake: LakeResource, file_drops: FileDropResource, day: str) -> dict:
    """Read, check and land one day's file; returns its metadata row."""
    name = drop_name(day)
    source = file_drops.uri(name)
    try:
        data = file_drops.read_bytes(name)
    except FileNotFoundError as err:
        raise Failure(f"No system-of-record file for {day} in the file drop: looked for {source}", metadata={"looked_for": source}) from err
    check_header(data, source)
    landing = lake.landing_path(CONTRACT, f"{day}.csv")
    files = LandingFiles(spark, landing)
    try:
        staged = files.stage(data)
        try:
            loaded = read_contract_csv(spark, staged, CONTRACT)
        except ValueError as err:  # values of the wrong type (the loader gives line numbers, masked excerpts)
            raise Failure(f"{source} breaks the {CONTRACT} contract's types: {err}; nothing was landed", metadata={"source": source}) from err
        try:
            n, violations, duplicates = contract_violations(loaded.rows)
        finally:
            loaded.unpersist()
        if violations or duplicates:
            problems = [f"{rule}: {k} rows" for rule, k in sorted(violations.items())] + ([f"{', '.join(load_contract(CONTRACT)['x-natural-key'])}: {duplicates} duplicates"] if duplicates else [])
            raise Failure(f"{source} breaks the {CONTRACT} contract ({contract_path(CONTRACT).name}): {'; '.join(problems)}; nothing was landed", metadata={"source": source})
        replaced = files.exists()
        files.publish()
    finally:
        files.clean_up()
    digest = hashlib.sha256(data).hexdigest()
    context.log.info(f"{ASSET} {day}: {len(data)} bytes, {n} rows from {source} to {landing}")
    return {"day": day, "rows": n, "bytes": len(data), "sha256": digest, "source": source, "landing": landing, "replaced": replaced}


@asset(
    name=ASSET,
    group_name="file_exchange",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    kinds={"spark", "csv"},
    description=(
        "The core ledger's daily system-of-record file (booked transactions of the delivery day), taken from the file drop "
        "(system_of_record/<day>.csv: a folder locally, an Azure Blob container in Azure), checked against its contract and "
        "landed at landing/system_of_record/<day>.csv for reconciliation. A missing or broken drop fails and lands nothing."
    ),
    metadata={"contract": "contracts/reference/system_of_record.schema.json", "landing": "landing/system_of_record/<day>.csv"},
)
def ledger_files(context: AssetExecutionContext, spark: PySparkResource, lake: LakeResource, file_drops: FileDropResource) -> MaterializeResult:
    landed = [land_ledger_file(context, spark.spark_session, lake, file_drops, day) for day in context.partition_keys]
    last = landed[-1]
    return MaterializeResult(
        metadata={
            "dagster/row_count": sum(r["rows"] for r in landed),
            "bytes": sum(r["bytes"] for r in landed),
            "sha256": last["sha256"] if len(landed) == 1 else "see files",
            "source": MetadataValue.url(last["source"]) if "://" in last["source"] else MetadataValue.path(last["source"]),
            "landing_path": MetadataValue.path(last["landing"]),
            "replaced_existing": any(r["replaced"] for r in landed),
            "files": markdown_table([{k: r[k] for k in ("day", "rows", "bytes", "sha256", "source")} for r in landed]),
        }
    )
