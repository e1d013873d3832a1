"""pandera (pyspark.sql backend) schemas derived from the contracts, used by asset checks."""

from __future__ import annotations

from typing import Any

import pandera.pyspark as pa
from pyspark.sql import types as T

from contracts import load_contract, pii_fields
from contracts.rules import contract_rules
from contracts.spark import struct_type


_TEXT_KEYWORDS = ("pattern", "minLength", "maxLength")


def _checks(rule_keyword: str, value: Any) -> list[pa.Check]:
    if rule_keyword == "minimum":
        return [pa.Check.greater_than_or_equal_to(value)]
    if rule_keyword == "exclusiveMinimum":
        return [pa.Check.greater_than(value)]
    if rule_keyword == "maximum":
        return [pa.Check.less_than_or_equal_to(value)]
    if rule_keyword == "exclusiveMaximum":
        return [pa.Check.less_than(value)]
    if rule_keyword == "enum":
        return [pa.Check.isin(list(value))]
    if rule_keyword == "pattern":
        return [pa.Check.str_matches(value)]
    if rule_keyword == "minLength":
        return [pa.Check.str_length(min_value=value)]
    if rule_keyword == "maxLength":
        return [pa.Check.str_length(max_value=value)]
    return []  # type/format are enforced by the column dtype; required by nullable=False


def pandera_schema(contract: dict[str, Any] | str, *, masked: bool = False) -> pa.DataFrameSchema:
    """A pandera schema for a typed table holding the contract's columns (extra columns allowed).

    `masked`: the table holds the contract's PII fields masked (tokens), so their value checks do not apply.
    """
    if isinstance(contract, str):
        contract = load_contract(contract)
    skip_checks_on = set(pii_fields(contract)) if masked else set()
    fields = struct_type(contract).fields
    text_columns = {f.name for f in fields if isinstance(f.dataType, T.StringType)}
    checks: dict[str, list[pa.Check]] = {}
    for rule in contract_rules(contract):
        # a pattern or length rule is on the JSON text: checked at validation, not on a typed timestamp column
        if rule.field not in skip_checks_on and (rule.keyword not in _TEXT_KEYWORDS or rule.field in text_columns):
            checks.setdefault(rule.field, []).extend(_checks(rule.keyword, rule.value))
    columns = {}
    for field in fields:
        dtype = None if isinstance(field.dataType, (T.ArrayType, T.MapType)) else field.dataType
        columns[field.name] = pa.Column(dtype, checks=checks.get(field.name, []), nullable=field.nullable, description=field.metadata.get("comment"))
    return pa.DataFrameSchema(columns, strict=False, name=contract.get("title"))


def pandera_errors(schema: pa.DataFrameSchema, df) -> dict[str, Any]:
    """Validate a Spark DataFrame and return pandera's error report (empty when valid)."""
    validated = schema.validate(df)
    return dict(validated.pandera.errors)
