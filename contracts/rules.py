"""Data-quality rules derived from a contract: one rule per JSON Schema keyword per property.

Each rule has a stable id (`field.keyword`), the reason code a failing record gets in the DLQ
and a severity. Critical rules gate downstream assets; warnings are reported only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import json_types, load_contract

CRITICAL = "critical"
WARNING = "warning"

_DEFAULT_REASON = {
    "required": "MISSING_REQUIRED_FIELD",
    "type": "WRONG_TYPE",
    "minimum": "BELOW_MINIMUM",
    "exclusiveMinimum": "BELOW_MINIMUM",
    "maximum": "ABOVE_MAXIMUM",
    "exclusiveMaximum": "ABOVE_MAXIMUM",
    "multipleOf": "TOO_PRECISE",
    "enum": "NOT_ALLOWED_VALUE",
    "pattern": "PATTERN_MISMATCH",
    "format": "INVALID_FORMAT",
    "minLength": "TOO_SHORT",
    "maxLength": "TOO_LONG",
    "items": "WRONG_ITEM_TYPE",
}
CONSTRAINT_KEYWORDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf", "enum", "pattern", "format", "minLength", "maxLength", "items")


@dataclass(frozen=True)
class Rule:
    """One data-quality rule."""

    rule_id: str
    field: str | None
    keyword: str
    value: Any
    reason_code: str
    severity: str
    description: str


def _describe(field: str, keyword: str, value: Any) -> str:
    if keyword == "enum":
        return f"{field} is one of {len(value)} allowed values"
    if keyword == "items":
        return f"{field} items have JSON type {value.get('type') if isinstance(value, dict) else value}"
    return {
        "required": f"{field} is present",
        "type": f"{field} has JSON type {value}",
        "minimum": f"{field} >= {value}",
        "exclusiveMinimum": f"{field} > {value}",
        "maximum": f"{field} <= {value}",
        "exclusiveMaximum": f"{field} < {value}",
        "multipleOf": f"{field} is a multiple of {value} (no more decimals than the contract keeps)",
        "pattern": f"{field} matches {value}",
        "format": f"{field} is a valid {value}",
        "minLength": f"{field} has at least {value} characters",
        "maxLength": f"{field} has at most {value} characters",
    }[keyword]


def contract_rules(contract: dict[str, Any] | str) -> list[Rule]:
    """All rules a contract implies, in contract order."""
    if isinstance(contract, str):
        contract = load_contract(contract)
    required = set(contract.get("required", []))
    rules: list[Rule] = []
    for field, prop in contract["properties"].items():
        severity = prop.get("x-dq-severity", CRITICAL if field in required else WARNING)
        overrides = prop.get("x-reason-codes", {})

        def add(keyword: str, value: Any) -> None:
            code = overrides.get(keyword, f"{_DEFAULT_REASON[keyword]}:{field}")
            rules.append(Rule(f"{field}.{keyword}", field, keyword, value, code, severity, _describe(field, keyword, value)))

        if field in required:
            add("required", True)
        types, _ = json_types(prop)
        add("type", "/".join(types))
        for keyword in CONSTRAINT_KEYWORDS:
            if keyword in prop:
                # a nullable enum lists null among its values (JSON Schema's way); null is not a value to check
                add(keyword, [v for v in prop[keyword] if v is not None] if keyword == "enum" else prop[keyword])
    return rules
