"""Reading deliveries into bronze rows: raw payload plus where it came from, nothing parsed yet.

Every line of a JSON-lines delivery becomes one bronze row, keyed by a stable, readable
ingest id (source, file, line), so re-ingesting the same files gives identical rows.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

LANDING_SOURCE = "landing"

BRONZE_SCHEMA = T.StructType(
    [
        T.StructField("ingest_id", T.StringType(), False),
        T.StructField("event_date", T.DateType(), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("source_line", T.LongType(), False),
        T.StructField("payload", T.StringType(), True),
        T.StructField("source_payload", T.StringType(), True),
        T.StructField("ingested_at", T.TimestampType(), False),
        T.StructField("dagster_run_id", T.StringType(), True),
    ]
)


def relative_file(path: Column) -> Column:
    """The last two path components (folder/file): stable wherever the lake is mounted."""
    return F.substring_index(path, "/", -2)


def file_lines(spark: SparkSession, pattern: str, name_filter: str | None = None) -> DataFrame:
    """(source_file, source_line, line) for every line of the matching text files (gzip allowed).

    `pattern` is a path or glob; `name_filter` restricts the files of a folder by name glob.
    Files are read whole and split, which gives exact 1-based line numbers.
    """
    reader = spark.read.option("pathGlobFilter", name_filter) if name_filter else spark.read
    files = reader.text(pattern, wholetext=True).select(F.col("value"), F.col("_metadata.file_path").alias("path"))
    return split_lines(files)


def split_lines(files: DataFrame, *keep: str) -> DataFrame:
    """(source_file, source_line, line, *keep) from whole files (`value`, `path`): the batch and the
    streaming file source number lines the same way."""
    # split on "\n" (a literal, so no regex runs over the text); a final newline ends the last line
    # rather than starting an empty one, and a "\r" before a newline belongs to the line break
    lines = files.select(relative_file(F.col("path")).alias("source_file"), F.split(F.col("value"), "\n").alias("_lines"), *keep)
    exploded = lines.select("source_file", F.size("_lines").alias("_n"), F.posexplode("_lines").alias("pos", "line"), *keep)
    exploded = exploded.where(~((F.col("pos") == F.col("_n") - 1) & (F.col("line") == "") & (F.col("_n") > 1)))
    line = F.when(F.col("line").endswith("\r"), F.expr("substring(line, 1, length(line) - 1)")).otherwise(F.col("line"))
    return exploded.select("source_file", (F.col("pos") + 1).cast("long").alias("source_line"), line.alias("line"), *keep)


def ingest_id(source: Column, source_file: Column, source_line: Column) -> Column:
    """The record's stable key: source, file and line (e.g. `landing:event_date=2026-03-02/part-00001.jsonl:17`)."""
    return F.concat_ws(":", source, source_file, source_line.cast("string"))


def bronze_rows(
    lines: DataFrame, source: str, delivery_date: str | Column, run_id: str | None, source_payload: Column | None = None, ingested_at: Column | None = None
) -> DataFrame:
    """Shape raw lines (with a `payload` column) as bronze rows of one delivery (or, streamed, of
    each record's arrival day: `delivery_date` and `ingested_at` as columns)."""
    day = delivery_date if isinstance(delivery_date, Column) else F.lit(delivery_date)
    return lines.select(
        ingest_id(F.lit(source), F.col("source_file"), F.col("source_line")).alias("ingest_id"),
        day.cast("date").alias("event_date"),
        F.lit(source).alias("source"),
        "source_file",
        "source_line",
        "payload",
        (source_payload if source_payload is not None else F.lit(None).cast("string")).alias("source_payload"),
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("ingested_at"),
        F.lit(run_id).cast("string").alias("dagster_run_id"),
    )


def read_landing_delivery(spark: SparkSession, folder: str, delivery_date: str, run_id: str | None) -> DataFrame:
    """Bronze rows of a JSON-lines delivery folder: every line is a record (a blank line too, which
    then fails validation as MALFORMED_JSON rather than vanishing)."""
    return bronze_rows(file_lines(spark, folder, "*.jsonl*").withColumnRenamed("line", "payload"), LANDING_SOURCE, delivery_date, run_id)
