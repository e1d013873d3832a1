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


def _constraint_fails(rule: Rule, field: str, prop: dict[str, Any]) -> Column:
    """The expression that is true where a (present, well-typed) value breaks `rule`, over the
    decoded columns of `with_parsed_fields`."""
    kw, val = rule.keyword, rule.value
    text, number, typed = (F.col(c) for c in _decoded_columns(field))
    if kw in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return {"minimum": number < val, "exclusiveMinimum": number <= val, "maximum": number > val, "exclusiveMaximum": number >= val}[kw]
    if kw == "enum":
        types, _ = json_types(prop)
        return ~(typed if types == ["integer"] else text).isin(*val)
    if kw == "pattern":
        return ~text.rlike(val)
    if kw == "minLength":
        return F.char_length(text) < val
    if kw == "maxLength":
        return F.char_length(text) > val
    if kw == "format":
        if val == "date-time":
            return ~text.rlike(_RFC3339) | typed.isNull()
        if val == "date":
            return ~text.rlike(_DATE) | typed.isNull()
        return F.lit(False)
    if kw == "items":
        item_types, _ = json_types(val)
        allowed = {"string": "STRING", "number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}
        item = allowed.get(item_types[0], "STRING")
        return ~F.col(_field_columns(field)[1]).isin(f"ARRAY<{item}>", "ARRAY<VOID>")
    raise ValueError(f"Unsupported keyword {kw}")


def _field_columns(field: str) -> tuple[str, str]:
    """Names of the helper columns holding a field's raw VARIANT and its variant type."""
    return f"_raw_{field}", f"_vtype_{field}"


def _decoded_columns(field: str) -> list[str]:
    """Names of the helper columns holding a field's value as string, as double and as its Spark type."""
    return [f"_str_{field}", f"_dbl_{field}", f"_typ_{field}"]


def with_parsed_fields(df: DataFrame, contract: dict[str, Any]) -> DataFrame:
    """Parse `payload` once and decode every property once (raw VARIANT, its type, its value as
    string, double and contract type), as columns.

    Keeping these as columns (rather than repeating the expressions in every rule) means each
    payload is parsed once and each field decoded once per record, however many rules use it.
    """
    props = contract["properties"]
    parsed = df.withColumn("_v", F.try_parse_json(F.col("payload")))
    raw_cols = [F.try_variant_get(F.col("_v"), f"$['{field}']", "variant").alias(_field_columns(field)[0]) for field in props]
    with_raw = parsed.select("*", *raw_cols)
    decoded = []
    for field, prop in props.items():
        raw = F.col(_field_columns(field)[0])
        str_name, dbl_name, typ_name = _decoded_columns(field)
        decoded += [
            F.schema_of_variant(raw).alias(_field_columns(field)[1]),
            F.try_variant_get(raw, "$", "string").alias(str_name),
            F.try_variant_get(raw, "$", "double").alias(dbl_name),
            F.try_variant_get(raw, "$", spark_type(prop).simpleString()).alias(typ_name),
        ]
    # JSON text that parses and starts with '{' is an object (cheaper than the whole object's schema)
    is_object = F.col("_v").isNotNull() & F.col("payload").rlike(r"^[ \t\r\n]*\{")
    return with_raw.select("*", *decoded, is_object.alias("_is_object"))


def contract_rule_flags(contract: dict[str, Any]) -> tuple[list[RuleFlags], dict[str, Column]]:
    """Rule flags for every contract rule, and the well-typed condition of every property, over
    the columns of `with_parsed_fields`."""
    rules_by_field: dict[str, list[Rule]] = {}
    for rule in contract_rules(contract):
        rules_by_field.setdefault(rule.field, []).append(rule)

    parsed = F.col("_v").isNotNull()
    is_object = F.col("_is_object")
    flags = [
        RuleFlags(MALFORMED_JSON, F.lit(True), ~parsed),
        RuleFlags(NOT_AN_OBJECT, parsed, parsed & ~is_object),
    ]
    well_typed_by_field: dict[str, Column] = {}
    for field, prop in contract["properties"].items():
        raw_name, type_name = _field_columns(field)
        raw, vtype = F.col(raw_name), F.col(type_name)
        present = is_object & raw.isNotNull() & ~F.is_variant_null(raw)
        types, _ = json_types(prop)
        type_ok = F.lit(False)
        for json_type in types:
            type_ok = type_ok | _type_ok(vtype, json_type)
        well_typed = present & type_ok
        well_typed_by_field[field] = well_typed
        for rule in rules_by_field.get(field, []):
            if rule.keyword == "required":
                flags.append(RuleFlags(rule, is_object, is_object & ~present))
            elif rule.keyword == "type":
                flags.append(RuleFlags(rule, present, present & ~type_ok))
            else:
                fails = F.coalesce(_constraint_fails(rule, field, prop), F.lit(True))
                flags.append(RuleFlags(rule, well_typed, well_typed & fails))
    return flags, well_typed_by_field


def rule_outcomes(flags: list[tuple[Column, Column]], offset: int = 0) -> tuple[Column, Column]:
    """Sparse per-record rule outcomes: (indices of failed rules, indices of rules not applicable).

    Two short integer arrays instead of a pair of boolean columns per rule keep records narrow
    (most records fail nothing and have few inapplicable rules); dq_results counts come from them.
    """
    failed = F.filter(F.array(*[F.when(f, F.lit(offset + i)) for i, (_, f) in enumerate(flags)]), lambda c: c.isNotNull())
    unchecked = F.filter(F.array(*[F.when(~c, F.lit(offset + i)) for i, (c, _) in enumerate(flags)]), lambda c: c.isNotNull())
    return failed, unchecked


def validate_payloads(bronze: DataFrame, contract_name: str = "transactions") -> tuple[DataFrame, list[Rule]]:
    """Parse and validate bronze payloads against a contract.

    Returns the bronze columns plus the typed contract columns (null unless present, well-typed
    and passing all the field's rules), `reason_codes` (empty when the record is valid) and the
    sparse rule outcomes `_failed_rules` / `_unchecked_rules` (indices into the returned rules).
    """
    contract = load_contract(contract_name)
    parsed = with_parsed_fields(bronze, contract)
    flags, well_typed = contract_rule_flags(contract)
    flag_cols = []
    for i, f in enumerate(flags):
        flag_cols += [f.checked.alias(f"_chk_{i}"), f.failed.alias(f"_fail_{i}")]
    decoded = [_decoded_columns(field)[2] for field in contract["properties"]]
    stage = parsed.select(*bronze.columns, *decoded, *[c.alias(f"_wt_{field}") for field, c in well_typed.items()], *flag_cols)

    typed = {}
    for field in contract["properties"]:
        ok = F.col(f"_wt_{field}")
        for i, f in enumerate(flags):
            if f.rule.field == field and f.rule.keyword not in ("required", "type"):
                ok = ok & ~F.col(f"_fail_{i}")
        typed[field] = F.when(ok, F.col(_decoded_columns(field)[2]))
    failed, unchecked = rule_outcomes([(F.col(f"_chk_{i}"), F.col(f"_fail_{i}")) for i in range(len(flags))])
    reasons = F.filter(
        F.array(*[F.when(F.col(f"_fail_{i}"), F.lit(f.rule.reason_code)) for i, f in enumerate(flags)]),
        lambda c: c.isNotNull(),
    )
    out = stage.select(
        *bronze.columns, *[c.alias(name) for name, c in typed.items()],
        reasons.alias("reason_codes"), failed.alias("_failed_rules"), unchecked.alias("_unchecked_rules"),
    )
    return out, [f.rule for f in flags]
