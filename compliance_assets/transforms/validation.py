"""Contract validation of raw JSON payloads, natively in Spark.

Each payload is parsed into one VARIANT per contract property (and its string fields once more,
as text); every rule the contract implies (contracts.rules) is evaluated against the exact JSON
type and value, so a record fails here exactly when JSON Schema would reject it. Before that, the
payload itself must be valid UTF-8 and exactly one JSON value with unique keys (a leading BOM is
skipped): Spark's parser would otherwise keep the first of two objects on a line, or the last of two
equal keys, without a word. Output: the typed contract columns, the reason codes, and the rule
outcomes as bit masks for dq_results. Shared by the batch assets and the streaming job.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from contracts import json_types, load_contract
from contracts.rules import CRITICAL, Rule, contract_rules
from contracts.spark import spark_type
from compliance_assets.transforms import json_payload
from compliance_assets.transforms.rule_outcomes import RuleMasks

INVALID_UTF8 = Rule("payload.utf8", None, "encoding", None, "INVALID_UTF8", CRITICAL, "payload bytes are valid UTF-8")
MALFORMED_JSON = Rule("payload.json", None, "json", None, json_payload.MALFORMED_JSON, CRITICAL, "payload is parseable JSON")
NOT_AN_OBJECT = Rule("payload.object", None, "object", None, "NOT_A_JSON_OBJECT", CRITICAL, "payload is a JSON object")
TRAILING_CONTENT = Rule("payload.single_value", None, "single_value", None, json_payload.TRAILING_CONTENT, CRITICAL, "nothing but whitespace follows the JSON object")
DUPLICATE_KEY = Rule("payload.unique_keys", None, "unique_keys", None, json_payload.DUPLICATE_KEY, CRITICAL, "no key appears twice in an object")

_RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_INT_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
_CORRUPT = "__payload_is_not_a_json_object__"  # where from_json puts what it cannot read as an object
_TEXT_TYPES = (T.StringType, T.TimestampType, T.DateType)  # contract types that JSON carries as strings
_JSON_SPACE = " \t\r\n"


@F.pandas_udf(T.StringType())
def _payload_problem(payloads: pd.Series) -> pd.Series:
    """json_payload's strict reading, for the few payloads the cheap checks cannot clear (null elsewhere)."""
    return payloads.map(json_payload.payload_problem)


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
    text, number, typed = (F.col(c) for c in _decoded_columns(field, prop))
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
    if kw == "multipleOf":
        # an integer, or a decimal written with at most k decimals, passes on its JSON type alone; else exact on
        # the number's JSON text: its decimals (trailing zeros aside) minus its exponent
        k, vtype = decimal_places(val), F.col(_type_column(field))
        few_decimals = vtype.isin(*_INT_TYPES)
        for scale in range(k + 1):
            few_decimals = few_decimals | (vtype.startswith("DECIMAL") & vtype.endswith(f",{scale})"))
        fraction = F.regexp_replace(F.regexp_extract(text, r"\.([0-9]+)", 1), "0+$", "")
        exponent = F.coalesce(F.regexp_extract(text, r"[eE]([-+]?[0-9]+)$", 1).try_cast("int"), F.lit(0))
        return F.when(few_decimals, F.lit(False)).otherwise((F.length(fraction) - exponent) > k)
    if kw == "items":
        item_types, _ = json_types(val)
        allowed = {"string": "STRING", "number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}
        item = allowed.get(item_types[0], "STRING")
        return ~F.col(_type_column(field)).isin(f"ARRAY<{item}>", "ARRAY<VOID>")
    raise ValueError(f"Unsupported keyword {kw}")


def decimal_places(multiple_of: float) -> int:
    """k for a `multipleOf` of 10^-k (the only kind the contracts use: a number of decimals)."""
    k = -Decimal(str(multiple_of)).normalize().as_tuple().exponent
    if Decimal(str(multiple_of)) != Decimal(1).scaleb(-k):
        raise ValueError(f"multipleOf {multiple_of} is not a power of ten")
    return max(k, 0)


def _type_column(field: str) -> str:
    """Name of the helper column holding a field's JSON type (schema_of_variant)."""
    return f"_vtype_{field}"


def _needs(prop: dict[str, Any]) -> tuple[bool, bool]:
    """Whether a property's rules need its value as text and as a double besides its contract type."""
    typ = spark_type(prop)
    text = any(k in prop for k in ("pattern", "minLength", "maxLength", "enum", "format", "multipleOf"))
    number = any(k in prop for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"))
    return text and not isinstance(typ, T.StringType), number and not isinstance(typ, T.DoubleType)


def _decoded_columns(field: str, prop: dict[str, Any]) -> list[str]:
    """Names of the columns holding a field's value as text, as double and as its contract type
    (one column when the contract type already is the text or the double)."""
    typed = f"_typ_{field}"
    need_text, need_number = _needs(prop)
    return [f"_str_{field}" if need_text else typed, f"_dbl_{field}" if need_number else typed, typed]


def _raw(field: str) -> Column:
    return F.col("_j").getField(field)


def with_parsed_fields(df: DataFrame, contract: dict[str, Any]) -> DataFrame:
    """Parse `payload` into one VARIANT per contract property and decode each once (its JSON type,
    its value in the contract type, and as text or double where a rule needs that).

    `from_json` with VARIANT fields parses a JSON object straight into per-property values and
    keeps the exact JSON type of each; payloads that are not a JSON object land in its corrupt-record
    field and are re-parsed (rarely) only to tell malformed JSON from valid non-object JSON. A
    string's value comes from a second, typed `from_json` of the string fields, used only where
    the VARIANT says the value is a JSON string.
    """
    props = contract["properties"]
    schema = T.StructType([T.StructField(f, T.VariantType()) for f in props] + [T.StructField(_CORRUPT, T.StringType())])
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT, "allowSingleQuotes": "false", "allowNonNumericNumbers": "false"}
    # string values come from a second, typed parse: reading them out of a VARIANT builds a Literal
    # and a Cast (or a JSON generator) per value, which costs more than parsing the text again
    text_fields = [f for f, prop in props.items() if isinstance(spark_type(prop), _TEXT_TYPES)]
    text_schema = T.StructType([T.StructField(f, T.StringType()) for f in text_fields])
    payload = F.col("payload")
    payload = F.when(payload.startswith(json_payload.BOM), F.expr("substring(payload, 2)")).otherwise(payload)  # as JSON readers do
    parsed = df.select(
        "*", F.from_json(payload, schema, options).alias("_j"),
        F.from_json(payload, text_schema, {"mode": "PERMISSIVE", "allowSingleQuotes": "false"}).alias("_s"),
        # parse_json refuses repeated keys (from_json keeps the last); both stop after the first value
        F.try_parse_json(payload).isNotNull().alias("_parses"),
        _single_flat_object(payload).alias("_flat"),
        payload.alias("_payload"),
    )
    is_object = F.col("_j").isNotNull() & F.col("_j").getField(_CORRUPT).isNull()
    # what the cheap checks cannot clear (a nested or brace-holding object, or one parse_json refused)
    # goes to the strict reader, which names the problem
    problem = _payload_problem(F.when(is_object & ~(F.col("_flat") & F.col("_parses")), F.col("_payload")))
    typed_json = parsed.select(
        "*", is_object.alias("_is_object"), (is_object | F.col("_parses")).alias("_is_json"), problem.alias("_problem"),
        *[F.schema_of_variant(_raw(field)).alias(_type_column(field)) for field in props],
    ).drop("_payload", "_parses", "_flat")
    decoded = []
    for field, prop in props.items():
        raw, vtype = _raw(field), F.col(_type_column(field))
        text, number, typed = _decoded_columns(field, prop)
        target = spark_type(prop)
        if not isinstance(target, T.AtomicType):
            decoded.append(F.try_variant_get(raw, "$", target.simpleString()).alias(typed))
            continue
        string = F.col("_s").getField(field) if field in text_fields else F.try_variant_get(raw, "$", "string")
        # a JSON string's characters; a number's or boolean's JSON text (cheap for non-strings)
        value = F.when(vtype == "STRING", string).when(vtype != "VOID", F.to_json(raw))
        # a number's value; beyond the double range (1e309) its JSON text is "Infinity", the value infinite
        as_double = F.coalesce(value.try_cast("double"), F.when(vtype == "DOUBLE", F.try_variant_get(raw, "$", "double")))
        decoded.append((value if isinstance(target, T.StringType) else as_double if isinstance(target, T.DoubleType) else value.try_cast(target)).alias(typed))
        if text != typed:
            decoded.append(value.alias(text))
        if number != typed:
            decoded.append(as_double.alias(number))
    return typed_json.select("*", *decoded).drop("_s")


def _single_flat_object(payload: Column) -> Column:
    """True where the payload is `{...}` with no other brace anywhere (so whatever object a parser
    read ends at its last character: nothing can follow it); literal replaces, no regex."""
    def count(char: str) -> Column:
        return F.length(payload) - F.length(F.replace(payload, F.lit(char), F.lit("")))

    trimmed = F.btrim(payload, F.lit(_JSON_SPACE))
    return (count("{") == 1) & (count("}") == 1) & trimmed.startswith("{") & trimmed.endswith("}")


def contract_rule_flags(contract: dict[str, Any], columns: tuple[str, ...] = ()) -> tuple[list[RuleFlags], dict[str, Column]]:
    """Rule flags for the payload rules and every contract rule, and the well-typed condition of every
    property, over the columns of `with_parsed_fields` (`columns`: those of the input)."""
    rules_by_field: dict[str, list[Rule]] = {}
    for rule in contract_rules(contract):
        rules_by_field.setdefault(rule.field, []).append(rule)

    parsed = F.col("_is_json")
    is_object = F.col("_is_object")
    problem = F.col("_problem")
    has_bytes = F.col("payload_bytes").isNotNull() if "payload_bytes" in columns else F.lit(False)
    flags = [
        RuleFlags(INVALID_UTF8, F.lit(True), has_bytes),
        RuleFlags(MALFORMED_JSON, F.lit(True), ~parsed | F.coalesce(problem == MALFORMED_JSON.reason_code, F.lit(False))),
        RuleFlags(NOT_AN_OBJECT, parsed, parsed & ~is_object),
        RuleFlags(TRAILING_CONTENT, is_object, is_object & F.coalesce(problem == TRAILING_CONTENT.reason_code, F.lit(False))),
        RuleFlags(DUPLICATE_KEY, is_object, is_object & F.coalesce(problem == DUPLICATE_KEY.reason_code, F.lit(False))),
    ]
    well_typed_by_field: dict[str, Column] = {}
    required = set(contract.get("required", []))
    for field, prop in contract["properties"].items():
        raw, vtype = _raw(field), F.col(_type_column(field))
        present = is_object & raw.isNotNull() & ~F.is_variant_null(raw)
        types, nullable = json_types(prop)
        type_ok = F.lit(False)
        for json_type in types:
            type_ok = type_ok | _type_ok(vtype, json_type)
        # an optional field may be left out, but a null is a value of the wrong type unless its type allows
        # null (as JSON Schema has it); a required field's null is MISSING_REQUIRED_FIELD
        null_refused = (is_object & F.is_variant_null(raw)) if not nullable and field not in required else F.lit(False)
        well_typed = present & type_ok
        well_typed_by_field[field] = well_typed
        for rule in rules_by_field.get(field, []):
            if rule.keyword == "required":
                flags.append(RuleFlags(rule, is_object, is_object & ~present))
            elif rule.keyword == "type":
                flags.append(RuleFlags(rule, present | null_refused, (present & ~type_ok) | null_refused))
            else:
                fails = F.coalesce(_constraint_fails(rule, field, prop), F.lit(True))
                flags.append(RuleFlags(rule, well_typed, well_typed & fails))
    return flags, well_typed_by_field


def validate_payloads(bronze: DataFrame, contract_name: str = "transactions") -> tuple[DataFrame, RuleMasks]:
    """Parse and validate bronze payloads against a contract.

    Returns the bronze columns plus the typed contract columns (null unless present, well-typed
    and passing all the field's rules), `reason_codes` (empty when the record is valid) and the
    rule outcome masks (`_contract_failed` / `_contract_unchecked`, described by the returned
    RuleMasks).
    """
    contract = load_contract(contract_name)
    parsed = with_parsed_fields(bronze, contract)
    flags, well_typed = contract_rule_flags(contract, tuple(bronze.columns))
    masks = RuleMasks(tuple(f.rule for f in flags), "_contract_failed", "_contract_unchecked")
    typed_cols = [_decoded_columns(field, prop)[2] for field, prop in contract["properties"].items()]
    stage = parsed.select(
        *bronze.columns, *typed_cols, *[c.alias(f"_wt_{field}") for field, c in well_typed.items()],
        *masks.columns([f.failed for f in flags], [~f.checked for f in flags]),
    )

    typed = {}
    for field, prop in contract["properties"].items():
        field_bits = sum(1 << i for i, f in enumerate(flags) if f.rule.field == field and f.rule.keyword not in ("required", "type"))
        ok = F.col(f"_wt_{field}") & (F.col(masks.failed).bitwiseAND(F.lit(field_bits)) == 0)
        typed[field] = F.when(ok, F.col(_decoded_columns(field, prop)[2]))
    out = stage.select(*bronze.columns, *[c.alias(name) for name, c in typed.items()], masks.reason_codes().alias("reason_codes"), masks.failed, masks.unchecked)
    return out, masks
