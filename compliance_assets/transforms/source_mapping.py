"""Bring-your-own data: a declarative YAML mapping from a foreign file format onto the contract.

The mapping names, for each contract field, the source column and how to convert it (timestamp
pattern and zone, decimal comma, code-value translation, prefix/padding). The result is a
contract-shaped JSON payload per source row, so foreign data goes through exactly the same
validation as native deliveries; values that cannot be converted are passed through as strings
and land in the DLQ with a reason code. The original row is kept in bronze.source_payload.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from contracts import json_types, load_contract
from compliance_assets.transforms.ingestion import bronze_rows, file_lines, relative_file

_DATE_PLACEHOLDER = re.compile(r"\{date(?::([^}]+))?\}")


class SourceMappingError(ValueError):
    """A source mapping that cannot be applied; the message says what to fix."""


@dataclass(frozen=True)
class SourceMapping:
    name: str
    format: str
    path: str
    options: dict[str, Any]
    columns: dict[str, dict[str, Any]]
    origin: str

    def path_for(self, day: dt.date) -> str:
        return _DATE_PLACEHOLDER.sub(lambda m: day.strftime(m.group(1) or "%Y-%m-%d"), self.path)

    def source_columns(self) -> list[str]:
        return sorted({spec["column"] for spec in self.columns.values() if "column" in spec})


def load_mapping(path: str | Path) -> SourceMapping:
    """Read and check a mapping file; raise SourceMappingError with a precise message if it is wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise SourceMappingError(f"Source mapping file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise SourceMappingError(f"Source mapping {path} is not valid YAML: {exc}") from exc
    schema = load_contract("source_mapping")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(f"at '{'/'.join(map(str, e.absolute_path)) or '(top)'}': {e.message}" for e in errors[:5])
        raise SourceMappingError(f"Source mapping {path} is invalid: {details}")
    contract = load_contract("transactions")
    unknown = sorted(set(raw["columns"]) - set(contract["properties"]))
    if unknown:
        raise SourceMappingError(
            f"Source mapping {path} maps unknown contract fields {unknown}; the transactions contract has: {', '.join(contract['properties'])}"
        )
    missing = [f for f in contract["required"] if f not in raw["columns"]]
    if missing:
        raise SourceMappingError(f"Source mapping {path} does not map required contract fields {missing}")
    columns = {field: ({"column": spec} if isinstance(spec, str) else dict(spec)) for field, spec in raw["columns"].items()}
    file_path = raw["path"] if raw["path"].startswith("/") or "://" in raw["path"] else str((path.parent / raw["path"]).resolve())
    return SourceMapping(raw["name"], raw["format"], file_path, dict(raw.get("options", {})), columns, str(path))


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
            f"Source mapping '{mapping.name}' ({mapping.origin}) refers to columns {missing} that {file} does not have; "
            f"its columns are: {', '.join(available)}"
        )


def read_mapped_delivery(spark: SparkSession, mapping: SourceMapping, delivery_date: str, run_id: str | None) -> DataFrame:
    """Bronze rows for one day of a mapped source (one row per source record, original row kept)."""
    pattern = mapping.path_for(dt.date.fromisoformat(delivery_date))
    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(pattern)
    fs = hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration())
    matches = fs.globStatus(hadoop_path)
    if not matches:
        raise SourceMappingError(f"Source mapping '{mapping.name}': no file matches {pattern} for {delivery_date}")
    first_file = str(matches[0].getPath())

    if mapping.format == "parquet":
        df = spark.read.parquet(pattern)
        _check_columns(mapping, df.columns, first_file)
        rows = df.select(
            relative_file(F.col("_metadata.file_path")).alias("source_file"),
            (F.col("_metadata.row_index") + 1).cast("long").alias("source_line"),
            F.struct(*[F.col(c) for c in df.columns]).alias("_src"),
        )
        cols = {c: F.col("_src")[c] for c in df.columns}
        source_payload = F.to_json("_src")
    elif mapping.format == "csv":
        delimiter = str(mapping.options.get("delimiter", ","))
        quote = str(mapping.options.get("quote", '"'))
        header_line = spark.read.text(first_file).first()
        if header_line is None:
            raise SourceMappingError(f"Source mapping '{mapping.name}': {first_file} is empty")
        header = next(csv.reader(io.StringIO(header_line[0].lstrip("\ufeff")), delimiter=delimiter, quotechar=quote))
        _check_columns(mapping, header, first_file)
        schema = T.StructType([T.StructField(c, T.StringType()) for c in header])
        lines = file_lines(spark, pattern).where((F.col("source_line") > 1) & (F.trim("line") != ""))
        opts = {"sep": delimiter, "quote": quote, "escape": str(mapping.options.get("escape", "\\"))}
        rows = lines.select("source_file", "source_line", F.from_csv("line", schema.simpleString(), opts).alias("_src"))
        cols = {c: F.col("_src")[c] for c in header}
        source_payload = F.to_json("_src")
    else:  # json lines
        lines = file_lines(spark, pattern).where(F.trim("line") != "")
        rows = lines.select("source_file", "source_line", F.try_parse_json("line").alias("_v"), F.col("line").alias("_line"))
        cols = {c: F.try_variant_get("_v", f"$['{c}']", "string") for c in mapping.source_columns()}
        source_payload = F.col("_line")
    payload = mapped_payload(mapping, cols)
    shaped = rows.select("source_file", "source_line", payload.alias("payload"), source_payload.alias("source_payload"))
    return bronze_rows(shaped, mapping.name, delivery_date, run_id, F.col("source_payload"))
