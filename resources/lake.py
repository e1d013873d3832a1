"""The lake: where landing files arrive and where every Delta table lives.

A local folder by default (LAKE_ROOT), an `abfss://` URI in the Azure profile. All Delta reads and
partition writes go through this resource, so assets stay thin and every write is idempotent.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from catalog import Days, Table


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

    def landing_path(self, *parts: str) -> str:
        return "/".join([self.landing, *parts])

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

    def insert_new(self, df: DataFrame, table: str, key: str, partition_by: tuple[str, ...] = ("event_date",)) -> int:
        """Append the rows of `df` whose `key` is not in the table yet (insert-only MERGE; creates the
        table on its first write), so a retried run adds nothing twice. Returns the Delta version."""
        from delta.tables import DeltaTable

        if not self.table_exists(df.sparkSession, table):
            df.write.format("delta").partitionBy(*partition_by).save(self.table_path(table))
        else:
            DeltaTable.forPath(df.sparkSession, self.table_path(table)).alias("t").merge(df.alias("s"), f"t.{key} = s.{key}").whenNotMatchedInsertAll().execute()
        return self.version(df.sparkSession, table)

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
        from delta.tables import DeltaTable

        return DeltaTable.forPath(spark, self.table_path(table)).history(1).collect()[0]
