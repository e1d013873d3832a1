"""Reading deliveries into bronze rows: raw payload plus where it came from, nothing parsed yet.

Every line of a JSON-lines delivery becomes one bronze row, keyed by a stable, readable
ingest id (source, file, line), so re-ingesting the same files gives identical rows. Files are split
on their bytes: a line that is not valid UTF-8 keeps its original bytes (`payload_bytes`) beside a
readable copy, and every row carries how many records its file holds by a count of its raw bytes,
so the conservation check compares with what was delivered, not with what a parser kept.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.errors import AnalysisException

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
        T.StructField("payload_bytes", T.BinaryType(), True),
        T.StructField("source_file_records", T.LongType(), True),
        T.StructField("source_file_total_records", T.LongType(), True),
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
    """(source_file, source_line, line, line_bytes, file_lines, *keep) from whole files (`value`,
    `path`): the batch and the streaming file source number lines the same way.

    A file that is valid UTF-8 (the rule) is split as text; any other is split on its bytes (read as
    ISO-8859-1, one character per byte, so nothing is replaced), and each of its lines that is not valid
    UTF-8 keeps its original bytes in `line_bytes` beside its text. `file_lines` is the file's line count
    from its raw bytes (newlines, plus an unterminated last line), independent of the split.
    """
    # split on "\n" (a literal, so no regex runs over the text); a final newline ends the last line
    # rather than starting an empty one, and a "\r" before a newline belongs to the line break
    utf8 = F.is_valid_utf8(F.col("value"))  # the raw bytes: the text reader does not check them
    content = F.when(utf8, F.col("value")).otherwise(F.decode(F.col("value").cast("binary"), "ISO-8859-1"))
    newlines = F.length(content) - F.length(F.replace(content, F.lit("\n"), F.lit("")))
    line_count = newlines + F.when((F.length(content) > 0) & ~content.endswith("\n"), 1).otherwise(0)
    lines = files.select(
        relative_file(F.col("path")).alias("source_file"), utf8.alias("_utf8"), F.split(content, "\n").alias("_lines"), line_count.cast("long").alias("file_lines"), *keep
    )
    exploded = lines.select("source_file", "file_lines", "_utf8", F.size("_lines").alias("_n"), F.posexplode("_lines").alias("pos", "line"), *keep)
    exploded = exploded.where(~((F.col("pos") == F.col("_n") - 1) & (F.col("line") == "") & (F.col("_n") > 1)))
    line = F.when(F.col("line").endswith("\r"), F.expr("substring(line, 1, length(line) - 1)")).otherwise(F.col("line"))
    text, invalid_bytes = decoded_payload(F.encode(line, "ISO-8859-1"))
    return exploded.select(
        "source_file",
        (F.col("pos") + 1).cast("long").alias("source_line"),
        F.when(F.col("_utf8"), line).otherwise(text).alias("line"),
        F.when(~F.col("_utf8"), invalid_bytes).alias("line_bytes"),
        "file_lines",
        *keep,
    )


def decoded_payload(raw: Column) -> tuple[Column, Column]:
    """(text, bytes) of a raw record: its UTF-8 text, and its original bytes only where they are not valid
    UTF-8 (the text then shows U+FFFD for them, and validation rejects the record as INVALID_UTF8)."""
    text = raw.cast("string")  # a byte copy: Spark does not check UTF-8 here
    valid = F.is_valid_utf8(text)
    return F.when(valid, text).otherwise(F.make_valid_utf8(text)), F.when(~valid, raw)


def ingest_id(source: Column, source_file: Column, source_line: Column) -> Column:
    """The record's stable key: source, file and line (e.g. `landing:event_date=2026-03-02/part-00001.jsonl:17`)."""
    return F.concat_ws(":", source, source_file, source_line.cast("string"))


def _long(count: Column | None) -> Column:
    return (count if count is not None else F.lit(None)).cast("long")


def bronze_rows(
    lines: DataFrame,
    source: str,
    delivery_date: str | Column,
    run_id: str | None,
    source_payload: Column | None = None,
    ingested_at: Column | None = None,
    payload_bytes: Column | None = None,
    file_records: Column | None = None,
    file_total_records: Column | None = None,
    keep: tuple[str, ...] = (),
) -> DataFrame:
    """Shape raw lines (with a `payload` column) as bronze rows of one delivery (or, streamed, of
    each record's arrival day; or, for an export split across days, of each record's own day:
    `delivery_date` and `ingested_at` as columns). `payload_bytes` holds the original bytes of a payload
    that is not valid UTF-8; `file_records` how many records the source file holds by its raw bytes
    (null where the source has no files, e.g. Kafka), for a split export those assigned to the row's day,
    and `file_total_records` then all the file's records. `keep` names input columns to carry along."""
    day = delivery_date if isinstance(delivery_date, Column) else F.lit(delivery_date)
    return lines.select(
        ingest_id(F.lit(source), F.col("source_file"), F.col("source_line")).alias("ingest_id"),
        day.cast("date").alias("event_date"),
        F.lit(source).alias("source"),
        "source_file",
        "source_line",
        "payload",
        (source_payload if source_payload is not None else F.lit(None).cast("string")).alias("source_payload"),
        (payload_bytes if payload_bytes is not None else F.lit(None).cast("binary")).alias("payload_bytes"),
        _long(file_records).alias("source_file_records"),
        _long(file_total_records).alias("source_file_total_records"),
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("ingested_at"),
        F.lit(run_id).cast("string").alias("dagster_run_id"),
        *keep,
    )


def read_landing_deliveries(spark: SparkSession, root: str, days: list[str], run_id: str | None) -> DataFrame:
    """Bronze rows of the JSON-lines delivery folders `root`/event_date=<day>/ of `days`, in one read (one
    Hadoop glob, `{day1,day2,...}`): every line is a record of its folder's day (a blank line too, which then
    fails validation as MALFORMED_JSON rather than vanishing). A missing folder is an empty delivery."""
    if not days:
        return spark.createDataFrame([], BRONZE_SCHEMA)
    try:
        lines = file_lines(spark, f"{root}/event_date={{{','.join(days)}}}/*.jsonl*").withColumnRenamed("line", "payload")
    except AnalysisException as exc:
        if exc.getCondition() != "PATH_NOT_FOUND":
            raise
        return spark.createDataFrame([], BRONZE_SCHEMA)
    # source_file is "event_date=<day>/<file>": the folder names the delivery day
    day = F.regexp_extract(F.col("source_file"), r"^event_date=(\d{4}-\d{2}-\d{2})/", 1)
    return bronze_rows(lines, LANDING_SOURCE, day, run_id, payload_bytes=F.col("line_bytes"), file_records=F.col("file_lines"))
