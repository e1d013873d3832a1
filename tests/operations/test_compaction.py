"""The lake_compaction job on a real Delta table: small files from several appends are compacted and Z-ordered, VACUUM
deletes the replaced files, the data is unchanged and compaction_log records the run."""

import datetime as dt
import os

import pandas as pd
import pytest
from dagster import DagsterInstance
from pyspark.sql import types as T

from resources.lake import RETENTION_CHECK
from compliance_assets.operations.compaction import ZORDER_COLUMNS, compact_table, compaction_job, compaction_log
from tests.conftest import make_resources
from tests.helpers import read_delta

TABLE = "transactions_silver"
SCHEMA = T.StructType(
    [
        T.StructField("account_id", T.StringType()),
        T.StructField("merchant_id", T.StringType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("event_date", T.DateType()),
    ]
)
DAYS = [dt.date(2026, 4, 1), dt.date(2026, 4, 2)]
APPENDS = 4
FILES = 4 * APPENDS  # each append: two write tasks (two slices of the rows), each with rows of both days


def parquet_files(table_path) -> int:
    count = 0
    for folder, dirs, files in os.walk(table_path):
        dirs[:] = [d for d in dirs if d != "_delta_log"]
        count += sum(1 for f in files if f.endswith(".parquet") and not f.startswith("."))
    return count


def sorted_rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df[["account_id", "merchant_id", "amount", "event_date"]].astype({"event_date": str})
    return out.sort_values(list(out.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A temp lake with a small silver-like table of 16 small files over two days (4 appends)."""
    root = tmp_path_factory.mktemp("compaction_lake")
    path = f"{root}/tables/{TABLE}"
    for i in range(APPENDS):
        rows = [(f"acc-{(i * 7 + j) % 13}", f"m-{j % 5}", float(i * 100 + j), DAYS[j % 2]) for j in range(40)]
        spark.createDataFrame(spark.sparkContext.parallelize(rows, 2), SCHEMA).write.format("delta").mode("append").partitionBy("event_date").save(path)
    return root


def test_short_retention_needs_the_flag(spark, lake):
    res = make_resources(lake)
    table_path = res["lake"].table_path(TABLE)
    files_on_disk, version = parquet_files(table_path), res["lake"].version(spark, TABLE)
    with pytest.raises(ValueError, match="below the safe minimum of 168 hours"):
        compact_table(spark, res["lake"], TABLE, ZORDER_COLUMNS[TABLE], retention_hours=24)

    result = compaction_job.execute_in_process(
        run_config={"ops": {"compact_lake": {"config": {"tables": [TABLE], "retention_hours": 24}}}},
        resources={"spark": res["spark"], "lake": res["lake"]},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "allow_short_retention" in str(error)
    assert parquet_files(table_path) == files_on_disk and res["lake"].version(spark, TABLE) == version  # nothing was touched


def test_compaction_job_compacts_vacuums_and_logs(spark, lake):
    res = make_resources(lake)
    table_path = res["lake"].table_path(TABLE)
    before = sorted_rows(read_delta(lake, TABLE))
    files_on_disk = parquet_files(table_path)
    assert files_on_disk == FILES

    result = compaction_job.execute_in_process(
        run_config={"ops": {"compact_lake": {"config": {"retention_hours": 0, "allow_short_retention": True}}}},
        resources={"spark": res["spark"], "lake": res["lake"]},
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success

    log = read_delta(lake, "compaction_log")
    assert list(log["table"]) == [TABLE]  # every other table of the mapping does not exist here: skipped
    row = log.iloc[0]
    assert row["files_before"] == FILES and row["files_after"] == len(DAYS) and row["files_after"] < row["files_before"]
    assert row["zorder_by"] == ",".join(ZORDER_COLUMNS[TABLE])
    assert row["bytes_before"] > 0 and row["bytes_after"] > 0
    assert row["files_removed_by_vacuum"] == files_on_disk
    assert row["retention_hours"] == 0
    assert row["dagster_run_id"] == result.run_id and row["compaction_id"] == f"{result.run_id}:{TABLE}"
    assert str(row["event_date"]) == str(dt.datetime.now(dt.timezone.utc).date())

    pd.testing.assert_frame_equal(sorted_rows(read_delta(lake, TABLE)), before)
    assert parquet_files(table_path) == len(DAYS)  # the replaced small files are gone from disk
    assert spark.conf.get(RETENTION_CHECK, None) in (None, "true")  # the retention check is back on

    materializations = result.asset_materializations_for_node("compact_lake")
    assert [m.asset_key for m in materializations] == [compaction_log.key]
    meta = materializations[0].metadata
    assert meta["files_before"].value == FILES and meta["files_after"].value == len(DAYS)
    assert TABLE in meta["tables"].value and "anomaly_alerts" in meta["tables_skipped"].value

