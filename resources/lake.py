"""The lake: where landing files arrive and where every Delta table lives.

A local folder by default (LAKE_ROOT), an `abfss://` URI in the Azure profile. This is the only module
that knows the lake's layout (`tables/`, `landing/`, `checkpoints/`) and the only one that does Delta I/O,
with Spark (partition replace, append with idempotent ids, insert-only and upsert MERGE, time travel,
OPTIMIZE/VACUUM) and with delta-rs (sensors, CLIs and serving, which run without a JVM). A table's Delta
partition columns come from its catalog entry, so a caller names the table and the rows, nothing else.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from catalog import CATALOG, Days, Table


def partition_columns(table: str, partition_by: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The Delta partition columns of a table: as given, else its catalog entry's, else event_date."""
    if partition_by is not None:
        return partition_by
    entry = table if isinstance(table, Table) else CATALOG.get(str(table))
    return entry.partition_by if entry is not None else ("event_date",)


RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"  # Delta refuses VACUUM under 168 h while on
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"  # VACUUM's file listing tasks (10,000 by default)


def default_lake_root() -> str:
    return str(Path(os.getenv("LAKE_ROOT", "lake")).resolve()) if "://" not in os.getenv("LAKE_ROOT", "") else os.environ["LAKE_ROOT"]


def delta_rs_options(uri: str) -> dict[str, str]:
    """delta-rs storage options for a lake URI (the root or a table in it): none for a local folder; for abfss:// the Azure profile's
    account and credential (resources/azure.py's settings; secrets read from the environment here, passed to
    delta-rs only, never logged)."""
    if "://" not in uri or uri.startswith("file://"):
        return {}
    from resources.azure import AdlsSettings

    adls = AdlsSettings.from_env()
    options = {"azure_storage_account_name": adls.account}
    if adls.auth == "account_key":
        options["azure_storage_account_key"] = os.environ["AZURE_STORAGE_KEY"]
    elif adls.auth == "service_principal":
        options.update({"azure_client_id": adls.client_id, "azure_tenant_id": adls.tenant_id, "azure_client_secret": os.environ["AZURE_CLIENT_SECRET"]})
    elif adls.client_id:  # a user-assigned managed identity
        options["azure_msi_client_id"] = adls.client_id
    return options


def pyarrow_filesystem(uri: str):
    """(pyarrow file system, path in it) for a local path or an abfss://container@account.dfs.core.windows.net/... URI,
    with the Azure profile's credentials (the same settings as delta_rs_options; AZURE_BLOB_ACCOUNT_URL points
    it at another endpoint, e.g. Azurite)."""
    from urllib.parse import urlparse

    from pyarrow import fs

    if "://" not in uri or uri.startswith("file://"):
        return fs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).resolve())
    parsed = urlparse(uri)
    if parsed.scheme not in ("abfs", "abfss"):
        raise ValueError(f"Unsupported lake URI scheme {parsed.scheme!r} in {uri}: a local folder or abfss:// only")
    container, account = parsed.netloc.split("@", 1)
    options = delta_rs_options(uri)
    kwargs = {"account_name": options.get("azure_storage_account_name", account.split(".", 1)[0])}
    if "azure_storage_account_key" in options:
        kwargs["account_key"] = options["azure_storage_account_key"]
    if "azure_client_secret" in options:
        kwargs.update(client_id=options["azure_client_id"], client_secret=options["azure_client_secret"], tenant_id=options["azure_tenant_id"])
    elif "azure_msi_client_id" in options:
        kwargs["client_id"] = options["azure_msi_client_id"]
    endpoint = os.getenv("AZURE_BLOB_ACCOUNT_URL", "")
    if endpoint:  # an emulator or sovereign cloud: http(s)://host[:port][/account]
        url = urlparse(endpoint)
        kwargs.update(blob_storage_authority=url.netloc, dfs_storage_authority=url.netloc, blob_storage_scheme=url.scheme, dfs_storage_scheme=url.scheme)
    return fs.AzureFileSystem(**kwargs), f"{container}{parsed.path}".rstrip("/")


def open_delta(uri: str, version: int | None = None):
    """A Delta table at `uri` opened with delta-rs (no JVM: sensors and CLIs use it), or None before its first write."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, version=version, storage_options=delta_rs_options(uri) or None)
    except TableNotFoundError:
        return None


def append_rows(uri: str, rows, schema, partition_by: tuple[str, ...]) -> None:
    """Append rows (dicts) to the Delta table at `uri` with delta-rs (creating it on the first write)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(uri, pa.Table.from_pylist(list(rows), schema=schema), mode="append", partition_by=list(partition_by) or None,
                    storage_options=delta_rs_options(uri) or None)


def replace_rows(uri: str, table, predicate: str, partition_by: tuple[str, ...], storage_options: dict | None = None) -> int:
    """Replace the rows matching `predicate` of the Delta table at `uri` with `table` (pyarrow) with delta-rs, creating
    it on the first write and adding new columns; returns the table's new version. For Delta tables outside the lake
    (the file drop's exports), whose location and credentials the caller's resource holds."""
    from deltalake import DeltaTable, write_deltalake

    write_deltalake(uri, table, mode="overwrite", predicate=predicate, partition_by=list(partition_by), schema_mode="merge", storage_options=storage_options or None)
    return DeltaTable(uri, storage_options=storage_options or None).version()


class LakeResource(ConfigurableResource):
    """Lake root for Delta tables and the landing area for incoming files."""

    root: str = Field(description="Lake root: a local folder or an abfss:// URI.")
    landing_root: str = Field(default="", description="Where source files land; defaults to <root>/landing.")
    source_mappings_dir: str = Field(
        default="",
        description=(
            "The only folder source mappings (transactions_bronze's `source_mapping` config or run tag) are read from "
            "(SOURCE_MAPPINGS_DIR); empty = the repository's examples/ folder. A mapping's data path must be inside the landing area."
        ),
    )

    @property
    def landing(self) -> str:
        return self.landing_root or f"{self.root}/landing"

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options for this lake (empty for a local folder)."""
        return delta_rs_options(self.root)

    def table_path(self, table: str) -> str:
        return f"{self.root}/tables/{table}"

    def checkpoint_path(self, name: str) -> str:
        """Where a Structured Streaming query named `name` keeps its offsets and commits."""
        return f"{self.root}/checkpoints/{name}"

    def landing_path(self, *parts: str) -> str:
        return "/".join([self.landing, *parts])

    def landing_markers(self, folder: str, marker: str = "_SUCCESS") -> dict[str, float]:
        """{subfolder: the marker's modification time (epoch seconds)} for each subfolder of landing/`folder`
        that holds `marker` (a delivery's completion flag); {} when the folder does not exist. Local or
        abfss://, without a JVM (sensors call it on every tick)."""
        from pyarrow.fs import FileSelector, FileType

        fs, base = pyarrow_filesystem(self.landing_path(folder))
        folders = [i for i in fs.get_file_info(FileSelector(base, allow_not_found=True)) if i.type == FileType.Directory]
        markers = fs.get_file_info([f"{i.path}/{marker}" for i in folders])
        return {m.path.rsplit("/", 2)[-2]: m.mtime.timestamp() for m in markers if m.type == FileType.File}

    def path_exists(self, spark: SparkSession, path: str) -> bool:
        """Whether a file or folder exists (local or abfss://), through Spark's Hadoop file system."""
        hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(path)
        return hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(hadoop_path)

    def delta_table(self, table: str, version: int | None = None):
        """The table opened with delta-rs (no JVM), or None before its first write."""
        return open_delta(self.table_path(table), version)

    def table_exists(self, spark: SparkSession, table: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, self.table_path(table))

    def read(self, spark: SparkSession, table: str) -> DataFrame:
        return spark.read.format("delta").load(self.table_path(table))

    def read_or_empty(self, spark: SparkSession, table: str, schema) -> DataFrame:
        """The table, or an empty frame of `schema` before its first write."""
        if self.table_exists(spark, table):
            return self.read(spark, table)
        return spark.createDataFrame([], schema)

    def replace_where(self, df: DataFrame, table: str, predicate: str, partition_by: tuple[str, ...] = ("event_date",), merge_schema: bool = False) -> int:
        """Atomically replace the rows matching `predicate` with `df` (idempotent partition write).

        `merge_schema` lets the write add columns a newer release introduced to a table an older one
        created (existing rows read them as null). Returns the Delta table version this write created.
        """
        writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        writer.partitionBy(*partition_by).save(self.table_path(table))
        return self.version(df.sparkSession, table)

    def read_days(self, spark: SparkSession, table: Table, days: Days) -> DataFrame:
        """The rows of `days` (the table's day column, from the catalog)."""
        return self.read(spark, table).where(table.where(days))

    def replace_days(self, df: DataFrame, table: Table, days: Days, *, also: str | None = None, merge_schema: bool = False) -> int:
        """Replace `days` of the table (its day column and Delta partitions from the catalog) with `df`; `also`
        narrows the replaced rows further (e.g. one source of bronze). Returns the Delta version written."""
        predicate = table.where(days) if also is None else f"{table.where(days)} AND {also}"
        return self.replace_where(df, table, predicate, partition_by=table.partition_by, merge_schema=merge_schema)

    def insert_new(self, df: DataFrame, table: str, key: str | tuple[str, ...], partition_by: tuple[str, ...] | None = None, prune: str | None = None) -> int:
        """Append the rows of `df` whose `key` (a column or several) is not in the table yet (insert-only MERGE;
        creates the table on its first write), so a retried run adds nothing twice. `prune`: a partition column
        whose values in `df` bound the rows the MERGE reads. Returns the Delta version."""
        spark = df.sparkSession
        if not self.table_exists(spark, table):
            df.write.format("delta").partitionBy(*partition_columns(table, partition_by)).save(self.table_path(table))
            return self.version(spark, table)
        keys = (key,) if isinstance(key, str) else key
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        if prune is not None:
            values = [r[0] for r in df.select(prune).distinct().collect()]
            if not values:
                return self.version(spark, table)
            on = f"t.{prune} IN ({', '.join(_sql_literal(v) for v in values)}) AND {on}"
        self._delta(spark, table).alias("t").merge(df.alias("s"), on).whenNotMatchedInsertAll().execute()
        return self.version(spark, table)

    def upsert(self, df: DataFrame, table: str, on: str, *, changed: str | None = None, delete_unmatched: str | None = None) -> int:
        """MERGE `df` (alias `s`) into the table (alias `t`) on `on`: update the matched rows (only those where
        `changed` holds, if given), insert the new ones, and delete the table's rows matching `delete_unmatched`
        that `df` no longer has. The caller persists `df` if it is costly: MERGE reads its source twice."""
        merge = self._delta(df.sparkSession, table).alias("t").merge(df.alias("s"), on).whenMatchedUpdateAll(condition=changed).whenNotMatchedInsertAll()
        if delete_unmatched is not None:
            merge = merge.whenNotMatchedBySourceDelete(condition=delete_unmatched)
        merge.execute()
        return self.version(df.sparkSession, table)

    def append(self, df: DataFrame, table: str, *, partition_by: tuple[str, ...] | None = None, merge_schema: bool = False,
               once: tuple[str, int] | None = None, label: str | None = None) -> None:
        """Append `df` (creating the table on its first write). `once` = (application id, version): Delta's
        idempotent-write ids, so a replayed micro-batch or retried step commits nothing twice. `label`: the
        commit's userMetadata (see `labelled_commits`). `merge_schema` lets a newer release's columns join a
        table an older one created."""
        writer = df.write.format("delta").mode("append")
        if once is not None:
            writer = writer.option("txnAppId", once[0]).option("txnVersion", once[1])
        if label is not None:
            writer = writer.option("userMetadata", label)
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        writer.partitionBy(*partition_columns(table, partition_by)).save(self.table_path(table))

    def labelled_commits(self, spark: SparkSession, table: str, prefix: str, last: int = 1000) -> set[str]:
        """The userMetadata labels starting with `prefix` among the table's last `last` commits: how a writer
        that labels its appends finds, after a crash, which of them were committed (reads only commit files)."""
        if not self.table_exists(spark, table):
            return set()
        rows = self._delta(spark, table).history(last).select("userMetadata").where(F.col("userMetadata").startswith(prefix)).collect()
        return {r[0] for r in rows}

    def delete_where(self, spark: SparkSession, table: str, condition) -> None:
        """Delete the rows matching `condition` (a Column or SQL text), if the table exists."""
        if self.table_exists(spark, table):
            self._delta(spark, table).delete(condition)

    def read_version(self, spark: SparkSession, table: str, version: int, uri: str | None = None) -> DataFrame:
        """The table as it was at Delta `version` (time travel: what a model was trained on, for example); `uri`:
        where the table was when that version was recorded, if not in this lake (a model trained on another lake)."""
        return spark.read.format("delta").option("versionAsOf", int(version)).load(uri or self.table_path(table))

    def history(self, spark: SparkSession, table: str, limit: int | None = None) -> DataFrame:
        """The table's Delta commit log, newest first."""
        delta = self._delta(spark, table)
        return delta.history(limit) if limit else delta.history()

    def detail(self, spark: SparkSession, table: str):
        """The table's Delta detail row (numFiles, sizeInBytes, partitionColumns, ...)."""
        return self._delta(spark, table).detail().collect()[0]

    def optimize(self, spark: SparkSession, table: str, where: str | None = None, zorder: tuple[str, ...] = ()) -> DataFrame:
        """OPTIMIZE the table (the rows matching `where`), Z-ordered by `zorder` if given; Delta's metrics frame."""
        optimizer = self._delta(spark, table).optimize()
        if where:
            optimizer = optimizer.where(where)
        return optimizer.executeZOrderBy(*zorder) if zorder else optimizer.executeCompaction()

    def vacuum(self, spark: SparkSession, table: str, retention_hours: float) -> None:
        """Remove the files no version within `retention_hours` reads (time travel ends there). The caller
        decides whether a retention under Delta's 7 days is allowed: its safety check is off for this call."""
        current = int(spark.conf.get(LISTING_PARALLELISM, None) or 10000)
        settings = {LISTING_PARALLELISM: str(min(current, 4 * spark.sparkContext.defaultParallelism))}
        if retention_hours < 168:
            settings[RETENTION_CHECK] = "false"
        with session_conf(spark, settings):
            self._delta(spark, table).vacuum(float(retention_hours))

    def data_files(self, spark: SparkSession, table: str) -> int | None:
        """Parquet data files under the table's folder (live or not, _delta_log excluded); None when it cannot be listed."""
        path = self.table_path(table)
        local = path[len("file:"):] if path.startswith("file:") else path
        if "://" not in local:
            count = 0
            for folder, dirs, files in os.walk(local):
                dirs[:] = [d for d in dirs if d != "_delta_log"]
                count += sum(1 for f in files if _is_data_file(f))
            return count
        try:
            hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(path)
            files, count = hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).listFiles(hadoop_path, True), 0
            while files.hasNext():
                status = files.next()
                if "/_delta_log/" not in status.getPath().toString() and _is_data_file(status.getPath().getName()):
                    count += 1
            return count
        except Exception as exc:  # listing is informational: never fail a maintenance run over it
            logging.getLogger(__name__).warning(f"Could not list data files under {path}: {exc}")
            return None

    def append_rows(self, table: str, rows, schema, partition_by: tuple[str, ...] | None = None) -> None:
        """Append rows (dicts) with delta-rs, no JVM (sensors, CLIs): creates the table on its first write."""
        append_rows(self.table_path(table), rows, schema, partition_columns(table, partition_by))

    def _delta(self, spark: SparkSession, table: str):
        from delta.tables import DeltaTable

        return DeltaTable.forPath(spark, self.table_path(table))

    def version(self, spark: SparkSession, table: str) -> int:
        return int(self._last_commit(spark, table)["version"])

    def rows_written(self, spark: SparkSession, table: str) -> int:
        """Rows the table's latest commit wrote (from Delta's operation metrics, no scan).

        A write of no rows records no `numOutputRows` (only `numFiles` 0): that is 0. Delta makes no commit
        at all for an empty replaceWhere that removes nothing, so after one this reports the commit before
        it: a caller that may write an empty frame counts its rows itself."""
        return int((self._last_commit(spark, table)["operationMetrics"] or {}).get("numOutputRows", 0))

    def current_version(self, table: str) -> int:
        """The table's latest Delta version read with delta-rs, no Spark job (-1 before its first write): cheap
        enough to poll every few seconds, as the decision service does to see new reference data."""
        opened = open_delta(self.table_path(table))
        return -1 if opened is None else int(opened.version())

    def _last_commit(self, spark: SparkSession, table: str):
        return self._delta(spark, table).history(1).collect()[0]


def _is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith((".", "_"))


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]):
    """Set Spark SQL settings for the duration of a block, then restore the previous values (or unset them)."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _sql_literal(value) -> str:
    """A partition value as SQL text (dates as DATE literals)."""
    import datetime as dt

    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return f"DATE'{value}'"
    return f"'{value}'" if isinstance(value, str) else str(value)
