"""The contracts are valid JSON Schema 2020-12 and every derived schema (Spark, pandera, DQ rules)
follows them rather than being retyped."""

import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from pyspark.sql import types as T

from contracts import CONTRACTS_DIR, load_contract
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
