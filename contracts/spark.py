"""Spark types derived from the JSON Schema contracts."""

from __future__ import annotations

import re
from typing import Any

from pyspark.sql import types as T

from contracts import json_types, load_contract

_SIMPLE = {
    "string": T.StringType(),
    "number": T.DoubleType(),
    "integer": T.LongType(),
    "boolean": T.BooleanType(),
}


_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def _override(name: str) -> T.DataType:
    """An `x-spark-type` value, parsed without a running JVM (decimal(p,s) or a simple type name)."""
    match = _DECIMAL.match(name.strip().lower())
    if match:
        return T.DecimalType(int(match.group(1)), int(match.group(2)))
    simple = {"string": T.StringType(), "double": T.DoubleType(), "bigint": T.LongType(), "int": T.IntegerType(),
              "boolean": T.BooleanType(), "date": T.DateType(), "timestamp": T.TimestampType()}
    if name.strip().lower() not in simple:
        raise ValueError(f"Unsupported x-spark-type {name!r}")
    return simple[name.strip().lower()]


def spark_type(prop: dict[str, Any]) -> T.DataType:
    """The Spark type of one contract property (`x-spark-type` overrides the default mapping)."""
    if "x-spark-type" in prop:
        return _override(prop["x-spark-type"])
    types, _ = json_types(prop)
    if len(types) != 1:
        raise ValueError(f"Contract property has several non-null types {types}; add an x-spark-type")
    json_type = types[0]
    if json_type == "string":
        fmt = prop.get("format")
        if fmt == "date-time":
            return T.TimestampType()
        if fmt == "date":
            return T.DateType()
        return T.StringType()
    if json_type == "array":
        return T.ArrayType(spark_type(prop.get("items", {"type": "string"})))
    if json_type == "object":
        return T.MapType(T.StringType(), T.StringType())
    return _SIMPLE[json_type]


def struct_type(contract: dict[str, Any] | str) -> T.StructType:
    """The typed Spark schema of a contract: one field per property, in contract order."""
    if isinstance(contract, str):
        contract = load_contract(contract)
    required = set(contract.get("required", []))
    return T.StructType(
        [
            T.StructField(name, spark_type(prop), nullable=name not in required, metadata={"comment": column_comment(prop)})
            for name, prop in contract["properties"].items()
        ]
    )


def column_comment(prop: dict[str, Any]) -> str:
    """A property's description and, for an optional one, what its absence means (`x-when-absent`)."""
    absent = f"Absent: {prop['x-when-absent']}" if "x-when-absent" in prop else ""
    return " ".join(part for part in (prop.get("description", ""), absent) if part)
