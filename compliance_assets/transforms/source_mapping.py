"""Bring-your-own data: a declarative YAML mapping from a foreign file format onto the contract.

The mapping names, for each contract field, the source column and how to convert it (timestamp
pattern and zone, decimal comma, code-value translation, prefix/padding). The result is a
contract-shaped JSON payload per source row, so foreign data goes through exactly the same
validation as native deliveries; values that cannot be converted are passed through as strings
and land in the DLQ with a reason code. The original row is kept in bronze.source_payload. Where a
mapping may come from, where its data may be and how its file is read: mapping_files.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from contracts import json_types, load_contract
from compliance_assets.transforms.ingestion import bronze_rows, file_lines, relative_file
from compliance_assets.transforms.mapping_files import (
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


def _convert(field: str, prop: dict[str, Any], spec: dict[str, Any], src: Column) -> Column:
    """JSON text of the contract value for one field; unconvertible input passes through as a JSON string."""
    if "constant" in spec:
        return F.lit(json.dumps(spec["constant"]))
    value = F.trim(src.cast("string"))
    value = F.when(value != "", value)
    if "values" in spec:
        mapping = F.create_map(*[x for k, v in spec["values"].items() for x in (F.lit(str(k)), F.lit(v))])
        value = F.when(F.map_contains_key(mapping, value), mapping[value]).otherwise(value)
    if spec.get("zero_pad"):
        value = F.lpad(value, spec["zero_pad"], "0")
    if spec.get("prefix"):
        value = F.concat(F.lit(spec["prefix"]), value)
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
        ts = F.try_to_timestamp(value, F.lit(spec["format"])) if spec.get("format") else value.try_cast("timestamp")
        if spec.get("timezone"):
            ts = F.to_utc_timestamp(ts, spec["timezone"])
        iso = F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")
        return F.when(ts.isNotNull(), _json_value(iso)).otherwise(as_string)
    return as_string


def mapped_payload(mapping: SourceMapping, row: dict[str, Column]) -> Column:
    """The contract-shaped JSON object for one source row given its columns by name."""
    contract = load_contract("transactions")
    parts = []
    for field, spec in mapping.columns.items():
        src = row[spec["column"]] if "column" in spec else F.lit(None)
        parts.append(F.concat(F.lit(f'"{field}":'), _convert(field, contract["properties"][field], spec, src)))
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


def read_mapped_delivery(spark: SparkSession, mapping: SourceMapping, delivery_date: str, run_id: str | None) -> DataFrame:
    """Bronze rows for one day of a mapped source (one row per source record, original row kept)."""
    # checked again once the day is in: a {date:<format>} could spell a '..' segment
    pattern = data_pattern(mapping.path_for(dt.date.fromisoformat(delivery_date)), mapping.landing, mapping.name)
    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(pattern)
    fs = hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration())
    matches = fs.globStatus(hadoop_path)
    if not matches:
        raise SourceMappingError(f"Source mapping '{mapping.name}': no file matches {pattern} for {delivery_date}")
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
    payload = mapped_payload(mapping, cols)
    shaped = rows.select("source_file", "source_line", payload.alias("payload"), source_payload.alias("source_payload"), "line_bytes", "_records")
    return bronze_rows(shaped, mapping.name, delivery_date, run_id, F.col("source_payload"), payload_bytes=F.col("line_bytes"), file_records=F.col("_records"))
