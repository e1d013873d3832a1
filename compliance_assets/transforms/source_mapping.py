"""Bring-your-own data: a declarative YAML mapping from a foreign file format onto the contract.

The mapping names, for each contract field, the source column and how to convert it (timestamp
pattern and zone, decimal comma, code-value translation, prefix/padding). The result is a
contract-shaped JSON payload per source row, so foreign data goes through exactly the same
validation as native deliveries; values that cannot be converted are passed through as strings
and land in the DLQ with a reason code. The original row is kept in bronze.source_payload. A mapping
reads one file (or glob) per partition day, or, with `split_by`, one export covering many days, read
once and split into daily partitions by each record's own date (read_mapped_export). Where a
mapping may come from, where its data may be and how its file is read: mapping_files.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from contracts import json_types, load_contract
from compliance_assets.transforms.ingestion import bronze_rows, file_lines, relative_file
from compliance_assets.transforms.mapping_files import (
    EVENT_TIME,
    SourceMapping,
    SourceMappingError,
    check_matched_files,
    data_pattern,
    shown_names,
)


def _json_value(col: Column) -> Column:
    """The JSON text of a typed value (null stays null, so the key is omitted)."""
    wrapped = F.to_json(F.struct(col.alias("v")))
    return F.when(col.isNotNull(), F.regexp_extract(wrapped, r'^\{"v":(.*)\}$', 1))


def _source_text(spec: dict[str, Any], src: Column) -> Column:
    """A source value as the mapping reads it: trimmed (blank = null), codes translated, padded and prefixed;
    a constant as its text."""
    if "constant" in spec:
        return F.lit(str(spec["constant"]))
    value = F.trim(src.cast("string"))
    value = F.when(value != "", value)
    if "values" in spec:
        mapping = F.create_map(*[x for k, v in spec["values"].items() for x in (F.lit(str(k)), F.lit(v))])
        value = F.when(F.map_contains_key(mapping, value), mapping[value]).otherwise(value)
    if spec.get("zero_pad"):
        value = F.lpad(value, spec["zero_pad"], "0")
    if spec.get("prefix"):
        value = F.concat(F.lit(spec["prefix"]), value)
    return value


def _date_time_text(spec: dict[str, Any], value: Column) -> Column:
    """A timestamp's contract text (RFC 3339 in UTC) read with the mapping's pattern and zone; the value
    unchanged where it cannot be read (validation then rejects it, or reads it as it stands)."""
    ts = F.try_to_timestamp(value, F.lit(spec["format"])) if spec.get("format") else value.try_cast("timestamp")
    if spec.get("timezone"):
        ts = F.to_utc_timestamp(ts, spec["timezone"])
    return F.when(ts.isNotNull(), F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")).otherwise(value)


def _convert(field: str, prop: dict[str, Any], spec: dict[str, Any], src: Column) -> Column:
    """JSON text of the contract value for one field; unconvertible input passes through as a JSON string."""
    if "constant" in spec:
        return F.lit(json.dumps(spec["constant"]))
    value = _source_text(spec, src)
    types, _ = json_types(prop)
    as_string = _json_value(value)
    if "number" in types or "integer" in types:
        text = F.regexp_replace(F.regexp_replace(value, r"\.", ""), ",", ".") if spec.get("decimal_comma") else value
        number = text.try_cast("double")
        return F.when(number.isNotNull(), _json_value(number)).otherwise(as_string)
    if "array" in types:
        sep = spec.get("split", ",")
        arr = F.filter(F.split(value, re.escape(sep)), lambda c: F.trim(c) != "")
        return F.when(value.isNotNull(), _json_value(arr)).otherwise(_json_value(F.array().cast("array<string>")))
    if prop.get("format") == "date-time":
        return _json_value(_date_time_text(spec, value))
    return as_string


def _source(spec: dict[str, Any], row: dict[str, Column]) -> Column:
    return row[spec["column"]] if "column" in spec else F.lit(None)


def mapped_payload(mapping: SourceMapping, row: dict[str, Column]) -> Column:
    """The contract-shaped JSON object for one source row given its columns by name."""
    contract = load_contract("transactions")
    parts = []
    for field, spec in mapping.columns.items():
        parts.append(F.concat(F.lit(f'"{field}":'), _convert(field, contract["properties"][field], spec, _source(spec, row))))
    return F.concat(F.lit("{"), F.concat_ws(",", *parts), F.lit("}"))


def _check_columns(mapping: SourceMapping, available: list[str], file: str) -> None:
    missing = [c for c in mapping.source_columns() if c not in available]
    if missing:
        raise SourceMappingError(
            f"Source mapping '{mapping.name}' ({mapping.origin}) refers to columns [{shown_names(missing)}] that {file} does not have; "
            f"its columns are: {shown_names(available)}"
        )


def _quoted(name: str) -> str:
    """A column name as a Spark identifier (any characters: spaces, brackets, dots, backticks)."""
    return "`" + name.replace("`", "``") + "`"


def _csv_header(names: list[str]) -> list[str]:
    """Header names usable as struct fields: an empty or repeated name becomes _c<index> (as Spark names them)."""
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        usable = name if name and name not in seen else f"_c{i}"
        seen.add(usable)
        out.append(usable)
    return out


def _json_key_path(mapping: SourceMapping, name: str) -> str:
    """The variant path of a top-level key: `$['name']`, or `$["name"]` for a name with a single quote."""
    if "'" not in name:
        return f"$['{name}']"
    if '"' not in name:
        return f'$["{name}"]'
    raise SourceMappingError(f"Source mapping '{mapping.name}': a JSON source column name cannot contain both ' and \"")


def _mapped_records(spark: SparkSession, mapping: SourceMapping, pattern: str, what: str) -> tuple[DataFrame, dict[str, Column]]:
    """(rows, source columns) of the files matching `pattern`: rows hold source_file, source_line, the payload,
    the original row (source_payload), line_bytes and _records (the file's records by its raw bytes, null for
    Parquet); the source columns by name, for a split day."""
    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(pattern)
    fs = hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration())
    matches = fs.globStatus(hadoop_path)
    if not matches:
        raise SourceMappingError(f"Source mapping '{mapping.name}': no file matches {pattern}{what}")
    check_matched_files(mapping, [str(m.getPath().toUri().getPath()) for m in matches])
    first_file = str(matches[0].getPath())

    if mapping.format == "parquet":
        df = spark.read.parquet(pattern)
        _check_columns(mapping, df.columns, first_file)
        rows = df.select(
            relative_file(F.col("_metadata.file_path")).alias("source_file"),
            (F.col("_metadata.row_index") + 1).cast("long").alias("source_line"),
            F.struct(*[F.col(_quoted(c)) for c in df.columns]).alias("_src"),
            F.lit(None).cast("binary").alias("line_bytes"),
            F.lit(None).cast("long").alias("_records"),  # a row group has no raw lines to count: bronze rows are the count
        )
        cols = {c: F.col("_src")[c] for c in df.columns}
        source_payload = F.to_json("_src")
    elif mapping.format == "csv":
        delimiter = str(mapping.options.get("delimiter", ","))
        quote = str(mapping.options.get("quote", '"'))
        header_line = spark.read.text(first_file).first()
        if header_line is None:
            raise SourceMappingError(f"Source mapping '{mapping.name}': {first_file} is empty")
        header = _csv_header(next(csv.reader(io.StringIO(header_line[0].lstrip("\ufeff")), delimiter=delimiter, quotechar=quote), []))
        _check_columns(mapping, header, first_file)
        # DDL with quoted names: a header such as `Amount (EUR)` is a valid column
        schema = ", ".join(f"{_quoted(c)} STRING" for c in header)
        # every line after the header is a record (a blank one too: it then fails validation rather than vanishing)
        lines = file_lines(spark, pattern).where(F.col("source_line") > 1)
        opts = {"sep": delimiter, "quote": quote, "escape": str(mapping.options.get("escape", "\\"))}
        rows = lines.select(
            "source_file", "source_line", F.from_csv("line", schema, opts).alias("_src"), "line_bytes", (F.col("file_lines") - 1).alias("_records")
        )
        cols = {c: F.col("_src")[c] for c in header}
        source_payload = F.to_json("_src")
    else:  # json lines
        lines = file_lines(spark, pattern)
        rows = lines.select(
            "source_file", "source_line", F.try_parse_json("line").alias("_v"), F.col("line").alias("_line"), "line_bytes", F.col("file_lines").alias("_records")
        )
        cols = {c: F.try_variant_get("_v", _json_key_path(mapping, c), "string") for c in mapping.source_columns()}
        source_payload = F.col("_line")
    rows = rows.select("*", mapped_payload(mapping, cols).alias("payload"), source_payload.alias("source_payload"))
    return rows, cols


def read_mapped_delivery(spark: SparkSession, mapping: SourceMapping, delivery_date: str, run_id: str | None) -> DataFrame:
    """Bronze rows for one day of a mapped source (one row per source record, original row kept)."""
    # checked again once the day is in: a {date:<format>} could spell a '..' segment
    pattern = data_pattern(mapping.path_for(dt.date.fromisoformat(delivery_date)), mapping.landing, mapping.name)
    rows, _ = _mapped_records(spark, mapping, pattern, f" for {delivery_date}")
    return bronze_rows(rows, mapping.name, delivery_date, run_id, F.col("source_payload"), payload_bytes=F.col("line_bytes"), file_records=F.col("_records"))


def split_day(mapping: SourceMapping, row: dict[str, Column]) -> Column:
    """The delivery day a record of a split export belongs to (null where it cannot be read): with
    `split_by: event_time`, the UTC date of event_time as the payload carries it (converted with the
    mapping's pattern and zone, then read as validation reads it); with `split_by: {column, format}`, the
    date written in that column (its pattern, default ISO; a timestamp's date as written)."""
    spec = mapping.split_spec()
    value = _source_text(spec, _source(spec, row))
    if mapping.split_by == EVENT_TIME:
        return F.to_date(_date_time_text(spec, value).try_cast("timestamp"))
    return F.to_date(F.try_to_timestamp(value, F.lit(spec["format"])) if spec.get("format") else value.try_cast("date"))


def read_mapped_export(spark: SparkSession, mapping: SourceMapping, run_id: str | None) -> DataFrame:
    """Bronze rows of every day of a split export (a mapping with `split_by`; its path, a file or a glob,
    read once), `event_date` = each record's split day.

    A record whose split day cannot be read lands on its file's first (earliest readable) day, where
    validation rejects it if the unreadable value is its event_time (`split_day_read` says which records).
    `source_file_records` is the number of the file's records assigned to the row's day (what the
    conservation check compares per delivery day); `source_file_total_records` all the file's records by
    its raw bytes (null for Parquet), which the file's days must add up to."""
    pattern = data_pattern(mapping.path, mapping.landing, mapping.name)
    rows, cols = _mapped_records(spark, mapping, pattern, "")
    read = split_day(mapping, cols)
    rows = rows.select("*", read.alias("_read_day"), read.isNotNull().alias("split_day_read"))
    day = F.coalesce(F.col("_read_day"), F.min("_read_day").over(Window.partitionBy("source_file")))
    rows = rows.select("*", day.alias("_day"))
    per_day = F.count(F.lit(1)).over(Window.partitionBy("source_file", "_day"))
    return bronze_rows(
        rows, mapping.name, F.col("_day"), run_id, F.col("source_payload"), payload_bytes=F.col("line_bytes"),
        file_records=F.when(F.col("_records").isNotNull(), per_day), file_total_records=F.col("_records"), keep=("split_day_read",),
    )


def export_days(export: DataFrame) -> dict:
    """Records per day of a split export (`per_day`), all its `records` and those whose date could not be read
    (`undated`). Raises when a file's days do not add up to its record count by its raw bytes, or when no
    record of a file has a readable date (then they would have no day to go to)."""
    per_file_day = export.groupBy("source_file", "event_date").agg(
        F.count(F.lit(1)).alias("rows"), F.max("source_file_total_records").alias("total"), F.sum((~F.col("split_day_read")).cast("long")).alias("undated")
    ).collect()
    files: dict[str, dict] = {}
    for r in per_file_day:
        f = files.setdefault(r.source_file, {"rows": 0, "total": r.total, "undated": 0, "days": set()})
        f["rows"] += r.rows
        f["undated"] += r.undated
        f["days"].add(r.event_date)
    for name, f in sorted(files.items()):
        if None in f["days"]:
            raise SourceMappingError(f"No record of {name} has a readable split date (split_by): check the mapping's date column and format; nothing was written")
        if f["total"] is not None and f["rows"] != f["total"]:
            raise SourceMappingError(f"{name}: its days hold {f['rows']} records but the file has {f['total']} by its raw bytes; nothing was written")
    per_day: dict[str, int] = {}
    for r in per_file_day:
        per_day[str(r.event_date)] = per_day.get(str(r.event_date), 0) + r.rows
    return {"per_day": per_day, "records": sum(per_day.values()), "undated": sum(f["undated"] for f in files.values())}
