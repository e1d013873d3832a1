"""Spark-native contract validation agrees with a reference JSON Schema validator, record by record."""

import datetime as dt
import json

from jsonschema import Draft202012Validator, FormatChecker

from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.validation import validate_payloads
from contracts import load_contract

BASE = {
    "transaction_id": "T1", "event_time": "2026-03-02T10:00:00Z", "account_id": "ACC00000001", "amount": 12.5,
    "currency": "EUR", "channel": "CARD_PRESENT", "country": "DE", "merchant_id": "MER000001", "mcc_code": "5411",
}
EDGE_CASES = [
    json.dumps(BASE),
    json.dumps({**BASE, "amount": 0}),
    json.dumps({**BASE, "amount": 100000000}),
    json.dumps({**BASE, "amount": 100000000.01}),
    json.dumps({**BASE, "amount": True}),
    json.dumps({**BASE, "amount": "12.50"}),
    json.dumps({**BASE, "currency": "eur"}),
    json.dumps({**BASE, "account_id": "ACC1"}),
    json.dumps({**BASE, "merchant_id": None}),
    json.dumps({**BASE, "mcc_code": 5411}),
    json.dumps({**BASE, "risk_flags": ["A", 1]}),
    json.dumps({**BASE, "risk_flags": None}),
    json.dumps({**BASE, "latitude": 91.0}),
    json.dumps({**BASE, "latitude": -90}),
    json.dumps({**BASE, "event_time": "2026-03-02"}),
    json.dumps({**BASE, "event_time": "2026-03-02T10:00:00+01:00"}),
    json.dumps({**BASE, "transaction_id": ""}),
    json.dumps({k: v for k, v in BASE.items() if k != "channel"}),
    json.dumps([BASE]),
    "null",
    "",
    '{"transaction_id": "T2", ',
]


def test_spark_validation_matches_jsonschema_on_generated_and_edge_case_records(spark, tmp_path):
    generate_day(SynthConfig(seed=9, events_per_day=1500, malformed_json=0.01, missing_required=0.01, wrong_type=0.01), tmp_path, dt.date(2026, 3, 2))
    lines = [line for path in sorted((tmp_path / "transactions").rglob("*.jsonl")) for line in path.read_text().splitlines()]
    lines += EDGE_CASES
    validator = Draft202012Validator(load_contract("transactions"), format_checker=FormatChecker())

    def reference_valid(line: str) -> bool:
        try:
            return validator.is_valid(json.loads(line))
        except json.JSONDecodeError:
            return False

    frame = spark.createDataFrame([(i, line) for i, line in enumerate(lines)], "i long, payload string")
    checked, _ = validate_payloads(frame)
    spark_valid = {r.i: len(r.reason_codes) == 0 for r in checked.select("i", "reason_codes").collect()}
    disagreements = [(lines[i][:120], spark_valid[i]) for i in range(len(lines)) if spark_valid[i] != reference_valid(lines[i])]
    assert not disagreements
    assert sum(spark_valid.values()) < len(lines), "the sample must contain invalid records"
