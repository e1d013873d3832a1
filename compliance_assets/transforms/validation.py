"""Contract validation of raw JSON payloads, natively in Spark.

Each payload is parsed once into a VARIANT; every rule the contract implies (contracts.rules) is
evaluated against the exact JSON type and value, so a record fails here exactly when JSON Schema
would reject it. Output: the typed contract columns, the list of reason codes, and one
checked/failed flag per rule for dq_results. Shared by the batch assets and the streaming job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from contracts import json_types, load_contract
from contracts.rules import CRITICAL, Rule, contract_rules
from contracts.spark import spark_type

MALFORMED_JSON = Rule("payload.json", None, "json", None, "MALFORMED_JSON", CRITICAL, "payload is parseable JSON")
NOT_AN_OBJECT = Rule("payload.object", None, "object", None, "NOT_A_JSON_OBJECT", CRITICAL, "payload is a JSON object")

_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_INT_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")


@dataclass(frozen=True)
class RuleFlags:
    """A rule with the Spark expressions saying where it applies and where it fails."""

    rule: Rule
    checked: Column
    failed: Column


def _type_ok(variant_type: Column, json_type: str) -> Column:
    """Whether a VARIANT's type (from schema_of_variant) is the JSON Schema type `json_type`."""
    if json_type == "string":
        return variant_type == "STRING"
    if json_type == "boolean":
        return variant_type == "BOOLEAN"
    if json_type == "integer":
        return variant_type.isin(*_INT_TYPES) | variant_type.rlike(r"^DECIMAL\(\d+,0\)$")
    if json_type == "number":
        return variant_type.isin(*_INT_TYPES, "DOUBLE", "FLOAT") | variant_type.startswith("DECIMAL")
    if json_type == "array":
        return variant_type.startswith("ARRAY")
    if json_type == "object":
        return variant_type.startswith("OBJECT")
    raise ValueError(f"Unsupported JSON type {json_type}")


def _constraint_fails(rule: Rule, v: Column, path: str, prop: dict[str, Any]) -> Column:
    """The expression that is true where a (present, well-typed) value breaks `rule`."""
    kw, val = rule.keyword, rule.value
    if kw in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        num = F.try_variant_get(v, path, "double")
        return {"minimum": num < val, "exclusiveMinimum": num <= val, "maximum": num > val, "exclusiveMaximum": num >= val}[kw]
    if kw == "enum":
        types, _ = json_types(prop)
        target = "bigint" if types == ["integer"] else "string"
        return ~F.try_variant_get(v, path, target).isin(*val)
    text = F.try_variant_get(v, path, "string")
    if kw == "pattern":
        return ~text.rlike(val)
    if kw == "minLength":
        return F.char_length(text) < val
    if kw == "maxLength":
        return F.char_length(text) > val
    if kw == "format":
        if val == "date-time":
            return ~text.rlike(_RFC3339) | F.try_variant_get(v, path, "timestamp").isNull()
        if val == "date":
            return ~text.rlike(_DATE) | F.try_variant_get(v, path, "date").isNull()
        return F.lit(False)
    if kw == "items":
        item_types, _ = json_types(val)
        allowed = {"string": "STRING", "number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}
        item = allowed.get(item_types[0], "STRING")
        return ~F.schema_of_variant(F.try_variant_get(v, path, "variant")).isin(f"ARRAY<{item}>", "ARRAY<VOID>")
    raise ValueError(f"Unsupported keyword {kw}")


def contract_rule_flags(v: Column, contract: dict[str, Any]) -> tuple[list[RuleFlags], dict[str, Column]]:
    """Rule flags for every contract rule, and the typed value of every property.

    A typed value is null unless the property is present, well-typed and passes all its rules.
    """
    rules_by_field: dict[str, list[Rule]] = {}
    for rule in contract_rules(contract):
        rules_by_field.setdefault(rule.field, []).append(rule)

    parsed = v.isNotNull()
    is_object = parsed & F.schema_of_variant(v).startswith("OBJECT")
    flags = [
        RuleFlags(MALFORMED_JSON, F.lit(True), ~parsed),
        RuleFlags(NOT_AN_OBJECT, parsed, parsed & ~is_object),
    ]
    typed: dict[str, Column] = {}
    for field, prop in contract["properties"].items():
        path = f"$['{field}']"
        raw = F.try_variant_get(v, path, "variant")
        present = is_object & raw.isNotNull() & ~F.is_variant_null(raw)
        types, _ = json_types(prop)
        vtype = F.schema_of_variant(raw)
        type_ok = F.lit(False)
        for json_type in types:
            type_ok = type_ok | _type_ok(vtype, json_type)
        well_typed = present & type_ok
        field_ok = well_typed
        for rule in rules_by_field.get(field, []):
            if rule.keyword == "required":
                flags.append(RuleFlags(rule, is_object, is_object & ~present))
            elif rule.keyword == "type":
                flags.append(RuleFlags(rule, present, present & ~type_ok))
            else:
                fails = F.coalesce(_constraint_fails(rule, v, path, prop), F.lit(True))
                flags.append(RuleFlags(rule, well_typed, well_typed & fails))
                field_ok = field_ok & ~fails
        typed[field] = F.when(field_ok, F.try_variant_get(v, path, spark_type(prop).simpleString()))
    return flags, typed


def validate_payloads(bronze: DataFrame, contract_name: str = "transactions") -> tuple[DataFrame, list[Rule]]:
    """Parse and validate bronze payloads against a contract.

    Returns the bronze columns plus the typed contract columns, `reason_codes` (empty when the
    record is valid) and `_chk_<i>` / `_fail_<i>` flags per rule (for dq_results), and the rules
    in flag order.
    """
    contract = load_contract(contract_name)
    v = F.try_parse_json(F.col("payload"))
    flags, typed = contract_rule_flags(v, contract)
    flag_cols = []
    for i, f in enumerate(flags):
        flag_cols += [f.checked.alias(f"_chk_{i}"), f.failed.alias(f"_fail_{i}")]
    reasons = F.filter(
        F.array(*[F.when(F.col(f"_fail_{i}"), F.lit(f.rule.reason_code)) for i, f in enumerate(flags)]),
        lambda c: c.isNotNull(),
    )
    out = bronze.select("*", *[c.alias(name) for name, c in typed.items()], *flag_cols).withColumn("reason_codes", reasons)
    return out, [f.rule for f in flags]


def flag_columns(n_rules: int) -> list[str]:
    return [c for i in range(n_rules) for c in (f"_chk_{i}", f"_fail_{i}")]
