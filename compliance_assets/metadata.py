"""Asset metadata shown in the Dagster UI: table location, Delta version, schema, counts."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema
from pyspark.sql import types as T


def table_schema(schema: T.StructType) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, f.dataType.simpleString(), description=f.metadata.get("comment")) for f in schema.fields])


def delta_metadata(path: str, version: int, rows: int, schema: T.StructType | None = None, **extra: Any) -> dict[str, Any]:
    """The standard metadata of a Delta partition write."""
    meta: dict[str, Any] = {
        "dagster/row_count": rows,
        "delta_path": MetadataValue.path(path),
        "delta_version": version,
    }
    if schema is not None:
        meta["dagster/column_schema"] = table_schema(schema)
    meta.update(extra)
    return meta


def markdown_table(rows: list[dict[str, Any]]) -> MetadataValue:
    """A small markdown table (for per-rule or per-reason breakdowns in the UI)."""
    if not rows:
        return MetadataValue.md("_none_")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return MetadataValue.md("\n".join(lines))
