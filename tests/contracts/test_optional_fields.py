"""Optional contract fields: only what the platform cannot work without is required; everything else may
be absent, says what its absence means, and reaches silver and the model as missing (null), never as an
invented constant."""

import csv
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from compliance_assets.ml.model_features import SILVER_FEATURES, _silver_feature_exprs
from compliance_assets.monitoring.drift import ABSENT_STATUS, feature_drift
from compliance_assets.monitoring.levels import OK
from compliance_assets.ingest.reference_data import ContractCsvError, check_header, read_contract_csv
from compliance_assets.transforms.enrichment import fx_lookup
from compliance_assets.transforms.pipeline import FLAG, ReferenceFrames, check_batch, silver_frame
from compliance_assets.transforms.quality import MISSING_LOCATION
from contracts import json_types, json_validator, load_contract
from contracts.pandera_schemas import pandera_errors, pandera_schema
from contracts.spark import struct_type

README = Path(__file__).resolve().parents[2] / "README.md"
DAY = dt.date(2026, 3, 2)
REQUIRED = {
    "transactions": ["transaction_id", "event_time", "account_id", "amount", "currency"],
    "kyc_profiles": ["account_id"],
    "account_limits": ["account_id"],
    "merchant_profiles": ["merchant_id"],
}
BARE = {"transaction_id": "T1", "event_time": "2026-03-02T10:00:00Z", "account_id": "ACC00000001", "amount": 12.5, "currency": "EUR"}
CARD = {**BARE, "transaction_id": "T2", "account_id": "ACC00000002", "channel": "CARD_PRESENT", "country": "DE", "merchant_id": "MER000001"}
NULL_CHANNEL = {**BARE, "transaction_id": "T3", "channel": None}
# what a transaction without any optional field still has: its amount, time, own history and (no) watchlist hit
KNOWN_WITHOUT_OPTIONAL_FIELDS = {
    "amount_base", "hour_of_day", "is_weekend", "watchlist_hit",
    *[f"{kind}_{w}" for kind in ("txn_count", "amount_sum") for w in ("1h", "24h", "7d", "30d")],
}
DISTANCES = ("distance_from_home_km", "delivery_distance_km", "distance_from_prev_km", "travel_speed_kmh")


def absent_fields_table() -> str:
    """The README's table of optional fields, derived from the contracts' `x-when-absent`."""
    rows = [
        f"| `{table}.{field}` | {prop['x-when-absent']} |"
        for table in REQUIRED
        for field, prop in load_contract(table)["properties"].items()
        if field not in load_contract(table)["required"]
    ]
    return "\n".join(["| optional field | when absent |", "| --- | --- |", *rows])


def test_only_what_the_platform_needs_is_required_and_every_optional_field_says_what_absent_means():
    for table, required in REQUIRED.items():
        contract = load_contract(table)
        assert contract["required"] == required, table
        for field, prop in contract["properties"].items():
            if field not in required:
                assert prop.get("x-when-absent"), f"{table}.{field} does not say what its absence means"
                # an empty cell of a reference file is null; a transaction's channel is left out instead (its enum has no null)
                if (table, field) != ("transactions", "channel"):
                    assert json_types(prop)[1], f"{table}.{field} does not allow null"
    assert absent_fields_table() in README.read_text(), f"README.md lacks the optional-fields table; it is:\n{absent_fields_table()}"


def test_json_schema_accepts_a_transaction_with_only_the_required_fields_and_refuses_a_null_channel():
    validator = json_validator("transactions")

    def valid(record: dict) -> bool:
        return validator.is_valid(json.loads(json.dumps(record), parse_float=Decimal))

    assert valid(BARE) and valid({**BARE, "country": None, "merchant_id": None})
    assert not valid(NULL_CHANNEL)  # null is not a channel: the key is left out
    assert not valid({k: v for k, v in BARE.items() if k != "currency"})


def test_a_reference_header_may_leave_out_optional_columns_but_not_required_ones():
    check_header(["account_id"], "kyc.csv", "kyc_profiles")
    check_header(["risk_rating", "account_id"], "kyc.csv", "kyc_profiles")
    with pytest.raises(ContractCsvError, match=r"missing columns \['account_id'\]"):
        check_header(["risk_rating", "pep_flag"], "kyc.csv", "kyc_profiles")
    with pytest.raises(ContractCsvError, match=r"repeated columns \['risk_rating'\]"):
        check_header(["account_id", "risk_rating", "risk_rating"], "kyc.csv", "kyc_profiles")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


@pytest.fixture(scope="module")
def bare_dataset(spark, tmp_path_factory):
    """A delivery of three records through check_batch and silver_frame against a KYC file with only
    account_id, a merchants file with only merchant_id and no limits file: (kyc rows and their pandera
    errors, (records MISSING_LOCATION checked, failed), checked rows by id, silver rows by id, model
    features by id)."""
    folder = tmp_path_factory.mktemp("bare")
    kyc = read_contract_csv(spark, write_csv(folder / "kyc.csv", ["account_id"], [["ACC00000001"], ["ACC00000002"]]), "kyc_profiles").rows
    merchants = read_contract_csv(spark, write_csv(folder / "merchants.csv", ["merchant_id"], [["MER000001"]]), "merchant_profiles").rows
    fx = spark.createDataFrame([(DAY, "EUR", 1.0)], struct_type("fx_rates"))
    refs = ReferenceFrames(
        kyc=kyc, limits=spark.createDataFrame([], struct_type("account_limits")), fx=fx_lookup(fx, DAY, DAY),
        merchants=merchants, watchlists=spark.createDataFrame([], struct_type("watchlists")),
    )
    records = [BARE, CARD, NULL_CHANNEL]
    bronze = spark.createDataFrame(
        [(f"landing:d/f.jsonl:{i}", DAY, "landing", "d/f.jsonl", i, json.dumps(r)) for i, r in enumerate(records, 1)],
        "ingest_id string, event_date date, source string, source_file string, source_line long, payload string",
    )
    batch = check_batch(bronze, refs, DAY.isoformat())
    history = spark.createDataFrame([], "transaction_id string, account_id string, event_time timestamp, event_date date, amount_base decimal(18,2), latitude double, longitude double")
    silver = silver_frame(batch, refs, spark.createDataFrame([], "ingest_id string"), history, "salt", "run").cache()
    # the model's silver features as model_feature_frame computes them (its merchant risk needs outcomes: not here)
    features = silver.select("transaction_id", *[expr.cast("double").alias(name) for name, expr in _silver_feature_exprs().items()])
    by_id = lambda frame: {r.transaction_id: r.asDict() for r in frame.collect()}  # noqa: E731
    checked = by_id(batch.rows)
    # what dq_results counts for MISSING_LOCATION, read from the rule outcome masks (outcomes.outcome_tallies)
    [flags] = [masks for masks, action in batch.groups if action == FLAG]
    bit = 1 << flags.rules.index(MISSING_LOCATION)
    location = (sum(not r[flags.unchecked] & bit for r in checked.values()), sum(bool(r[flags.failed] & bit) for r in checked.values()))
    out = ((kyc.collect(), pandera_errors(pandera_schema("kyc_profiles"), kyc)), location, checked, by_id(silver), by_id(features))
    batch.unpersist()
    silver.unpersist()
    return out


def test_reference_files_with_only_their_key_load_with_every_other_column_null(bare_dataset):
    (kyc, contract_errors), *_ = bare_dataset
    assert contract_errors == {}  # the blocking kyc_profiles_matches_contract check passes on them
    assert [r.asDict() for r in kyc] == [{f: (key if f == "account_id" else None) for f in load_contract("kyc_profiles")["properties"]} for key in ("ACC00000001", "ACC00000002")]


def test_a_transaction_with_only_the_required_fields_reaches_silver_with_nulls(bare_dataset):
    _, location, checked, silver, _ = bare_dataset
    assert {t: list(r["reason_codes"]) for t, r in checked.items()} == {"T1": [], "T2": [], "T3": ["WRONG_TYPE:channel"]}
    assert set(silver) == {"T1", "T2"}
    bare = silver["T1"]
    assert bare["amount_base"] == Decimal("12.50") and bare["watchlist_hit"] is False and bare["dq_status"] == "PASS"
    for column in ("channel", "country", "merchant_id", "kyc_risk_rating", "pep_flag", "segment", "home_country", "typical_amount",
                   "account_opened_date", "single_transaction_limit", "reporting_threshold", "exceeds_single_limit",
                   "just_below_reporting_threshold", "amount_to_typical", "days_since_last_activity"):
        assert bare[column] is None, column
    # a card-present record without coordinates is flagged; one whose channel is unknown is not checked
    assert silver["T2"]["dq_warnings"] == ["MISSING_LOCATION"] and silver["T2"]["merchant_country"] is None
    assert location == (1, 1)  # (checked, failed)


def test_absent_inputs_reach_the_model_as_missing_not_as_constants(bare_dataset):
    *_, features = bare_dataset
    known = {name for name in SILVER_FEATURES if features["T1"][name] is not None and name not in DISTANCES}
    assert known == KNOWN_WITHOUT_OPTIONAL_FIELDS, {name: features["T1"][name] for name in known - KNOWN_WITHOUT_OPTIONAL_FIELDS}
    assert features["T1"]["watchlist_hit"] == 0.0  # no entry on any list: no hit, a fact rather than a guess
    card = features["T2"]
    assert card["channel_card_present"] == 1.0 and card["channel_atm"] == 0.0
    assert card["is_cross_border"] is None and card["merchant_abroad"] is None  # the account's home country is unknown


def test_distances_without_coordinates_are_missing(bare_dataset):
    """geo.haversine_km: least(1.0, sqrt(a)) skips a null, so a missing coordinate once gave 2 * 6371 * asin(1) = 20015 km."""
    *_, features = bare_dataset
    assert {name: features["T1"][name] for name in DISTANCES} == dict.fromkeys(DISTANCES)


def test_drift_reports_a_feature_missing_on_one_side_as_absent_not_as_drift(spark):
    reference = spark.createDataFrame([(float(i), None, float(i)) for i in range(20)], "amount double, channel_atm double, pep_flag double")
    current = spark.createDataFrame([(float(i), float(i % 2), None) for i in range(20)], "amount double, channel_atm double, pep_flag double")
    rows = {f: (value, status, detail.get("absent")) for f, value, status, _, detail in feature_drift(reference, current, ["amount", "channel_atm", "pep_flag"], 0.1, 0.25)}
    # without the absent rule both would FAIL with PSI 18.4: the one bin of missing values read as a constant
    assert rows == {"amount": (0.0, OK, None), "channel_atm": (None, ABSENT_STATUS, "reference"), "pep_flag": (None, ABSENT_STATUS, "current")}
