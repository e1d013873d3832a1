"""The contracts are valid JSON Schema 2020-12 and every derived schema (Spark, pandera, DQ rules)
follows them rather than being retyped."""

import json
from decimal import Decimal

import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from pyspark.sql import types as T

from contracts import CONTRACTS_DIR, json_validator, load_contract, reload_contracts
from contracts.pandera_schemas import pandera_errors, pandera_schema
from contracts.rules import contract_rules
from contracts.spark import struct_type

CONTRACTS = sorted(p.name.removesuffix(".schema.json") for p in [*CONTRACTS_DIR.glob("*.schema.json"), *CONTRACTS_DIR.glob("reference/*.schema.json")])


@pytest.mark.parametrize("name", CONTRACTS)
def test_contract_is_valid_json_schema_2020_12(name):
    contract = load_contract(name)
    assert contract["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(contract)


@pytest.mark.parametrize("name", [c for c in CONTRACTS if c != "source_mapping"])
def test_spark_schema_has_every_contract_field_with_required_not_null(name):
    contract = load_contract(name)
    schema = struct_type(contract)
    assert schema.fieldNames() == list(contract["properties"])
    for field in schema.fields:
        assert field.nullable is (field.name not in contract.get("required", [])), field.name


def test_transactions_contract_types():
    schema = {f.name: f.dataType for f in struct_type(load_contract("transactions")).fields}
    assert schema["amount"] == T.DecimalType(18, 2)
    assert schema["event_time"] == T.TimestampType()
    assert schema["risk_flags"] == T.ArrayType(T.StringType())
    assert schema["latitude"] == T.DoubleType()


def test_rules_carry_the_contract_reason_codes():
    rules = {r.rule_id: r for r in contract_rules(load_contract("transactions"))}
    assert rules["amount.exclusiveMinimum"].reason_code == "NON_POSITIVE_AMOUNT"
    assert rules["currency.enum"].reason_code == "UNKNOWN_CURRENCY"
    assert rules["amount.required"].reason_code == "MISSING_REQUIRED_FIELD:amount"
    assert rules["amount.required"].severity == "critical"


def test_pandera_schema_from_contract_rejects_out_of_contract_rows(spark):
    schema = pandera_schema("fx_rates")
    spark_schema = struct_type(load_contract("fx_rates"))
    good = spark.createDataFrame(pd.DataFrame({"rate_date": [pd.Timestamp("2026-03-01").date()], "currency": ["USD"], "rate_to_base": [0.92]}), spark_schema)
    bad = spark.createDataFrame(pd.DataFrame({"rate_date": [pd.Timestamp("2026-03-01").date()], "currency": ["usd"], "rate_to_base": [-1.0]}), spark_schema)
    assert pandera_errors(schema, good) == {}
    errors = str(pandera_errors(schema, bad))
    assert "str_matches" in errors and "greater_than" in errors


# Identifier formats per deployment (ACCOUNT_ID_PATTERN / MERCHANT_ID_PATTERN, contracts/id_patterns.py).

ALNUM_ACCOUNT = "C-00017a"
RECORD = {"transaction_id": "T1", "event_time": "2026-03-02T10:00:00Z", "amount": 12.5, "currency": "EUR", "channel": "CARD_PRESENT", "country": "DE"}


@pytest.fixture
def id_settings(monkeypatch):
    """Set identifier settings for one test; the contracts are re-read with them, and with the defaults after."""

    def configure(**settings):
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        reload_contracts()

    yield configure
    monkeypatch.undo()
    reload_contracts()
    assert load_contract("transactions")["properties"]["account_id"]["pattern"] == "^ACC[0-9]{8}$"


def _account_reasons(spark, *account_ids: str) -> dict[str, list[str]]:
    """The reason codes Spark validation gives a record with each account (and a default-format merchant)."""
    from compliance_assets.transforms.validation import validate_payloads

    payloads = [(a, json.dumps({**RECORD, "account_id": a, "merchant_id": "MER000001"})) for a in account_ids]
    checked, _ = validate_payloads(spark.createDataFrame(payloads, "account string, payload string"))
    return {r.account: list(r.reason_codes) for r in checked.collect()}


def test_an_alphanumeric_account_id_is_valid_only_with_a_configured_pattern(spark, id_settings):
    def tx(account_id):  # parsed as json_validator wants it: exact decimals
        return json.loads(json.dumps({**RECORD, "account_id": account_id}), parse_float=Decimal)

    assert _account_reasons(spark, ALNUM_ACCOUNT, "ACC00000001") == {ALNUM_ACCOUNT: ["PATTERN_MISMATCH:account_id"], "ACC00000001": []}
    assert not json_validator("transactions").is_valid(tx(ALNUM_ACCOUNT))

    id_settings(ACCOUNT_ID_PATTERN="^C-[0-9]{5}[a-z]$")
    # the configured pattern replaces the default
    assert _account_reasons(spark, ALNUM_ACCOUNT, "ACC00000001") == {ALNUM_ACCOUNT: [], "ACC00000001": ["PATTERN_MISMATCH:account_id"]}
    assert json_validator("transactions").is_valid(tx(ALNUM_ACCOUNT))
    # every contract with an account_id pattern, and everything derived from it, uses the setting
    for name in ("kyc_profiles", "account_limits", "risk_scores", "system_of_record"):
        assert load_contract(name)["properties"]["account_id"]["pattern"] == "^C-[0-9]{5}[a-z]$", name
    assert {r.rule_id: r.value for r in contract_rules("kyc_profiles")}["account_id.pattern"] == "^C-[0-9]{5}[a-z]$"
    assert load_contract("merchant_profiles")["properties"]["merchant_id"]["pattern"] == "^MER[0-9]{6}$", "merchants keep theirs"


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("C-[0-9]{5}", "must be anchored"),
        ("^C-[0-9$", "does not compile cleanly"),
        ("^C-[0-9]{5$", "has a { that is not a quantifier"),
        ("^C-\\d{5}$", "a backslash may only escape punctuation"),
        ("^(?<=C)-[0-9]{5}$", "no lookbehind"),
        ("^C-[0-9]++$", "possessive"),
        ("^C-[0-9]{5}|D$", "has | outside a group"),
    ],
)
def test_an_identifier_pattern_outside_the_common_subset_is_refused_clearly(id_settings, pattern, message):
    id_settings(MERCHANT_ID_PATTERN=pattern)
    with pytest.raises(ValueError) as err:
        load_contract("transactions")
    assert "MERCHANT_ID_PATTERN=" in str(err.value) and message in str(err.value)
