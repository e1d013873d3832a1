"""Data contracts: JSON Schema files that are the one source of schema truth.

Spark schemas (`contracts.spark`), validation rules (`contracts.rules`) and pandera schemas
(`contracts.pandera_schemas`) are all derived from these files at run time, never retyped.
One thing a deployment sets: the identifier patterns (ACCOUNT_ID_PATTERN, MERCHANT_ID_PATTERN,
contracts/id_patterns.py), applied here as the contracts are loaded. They are read once, with the
first contract loaded (contracts are parsed once per process); reload_contracts() reads them again.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from contracts.id_patterns import configured_id_patterns, with_id_patterns

CONTRACTS_DIR = Path(__file__).resolve().parent

REFERENCE_TABLES = ("kyc_profiles", "account_limits", "watchlists", "fx_rates", "merchant_profiles")


def contract_path(name: str) -> Path:
    """The file of a contract: 'transactions', 'risk_scores', 'source_mapping' or a reference table name."""
    for candidate in (CONTRACTS_DIR / f"{name}.schema.json", CONTRACTS_DIR / "reference" / f"{name}.schema.json"):
        if candidate.exists():
            return candidate
    known = sorted(p.name.removesuffix(".schema.json") for p in CONTRACTS_DIR.rglob("*.schema.json"))
    raise KeyError(f"No contract named {name!r}; known contracts: {', '.join(known)}")


@lru_cache(maxsize=1)
def id_patterns() -> dict[str, str]:
    """The deployment's identifier patterns ({field: pattern}; read from the environment once, checked)."""
    return configured_id_patterns()


@lru_cache(maxsize=None)
def load_contract(name: str) -> dict[str, Any]:
    """Load a contract by name (parsed once per process), with the deployment's identifier patterns."""
    return with_id_patterns(json.loads(contract_path(name).read_text()), id_patterns())


def reload_contracts() -> None:
    """Forget the loaded contracts and identifier settings: the next load reads the files and the
    environment again (what a test that changes the settings calls before and after)."""
    id_patterns.cache_clear()
    load_contract.cache_clear()


def json_types(prop: dict[str, Any]) -> tuple[list[str], bool]:
    """The JSON types a property allows (without 'null') and whether null is allowed."""
    declared = prop.get("type", "string")
    types = [declared] if isinstance(declared, str) else list(declared)
    nullable = "null" in types
    return [t for t in types if t != "null"], nullable


def pii_fields(contract: dict[str, Any]) -> list[str]:
    """Properties marked `x-pii: true`: masked before they leave bronze."""
    return [name for name, prop in contract["properties"].items() if prop.get("x-pii")]


def json_validator(name: str):
    """A JSON Schema (2020-12, formats checked) validator of a contract whose numbers are Decimal, so
    `multipleOf` (0.01 for amounts) is decided exactly; give it instances parsed with parse_float=Decimal
    (compliance_assets.transforms.json_payload.strict_loads does), not binary floats."""
    from jsonschema import Draft202012Validator, FormatChecker

    schema = with_id_patterns(json.loads(contract_path(name).read_text(), parse_float=Decimal), id_patterns())
    return Draft202012Validator(schema, format_checker=FormatChecker())
