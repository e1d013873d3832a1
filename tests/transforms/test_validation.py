"""Spark-native contract validation agrees with a reference JSON Schema validator, record by record."""

import datetime as dt
import json


from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.json_payload import PayloadProblem, strict_loads
from compliance_assets.transforms.validation import validate_payloads
from contracts import json_validator

BASE = {
    "transaction_id": "T1", "event_time": "2026-03-02T10:00:00Z", "account_id": "ACC00000001", "amount": 12.5,
    "currency": "EUR", "channel": "CARD_PRESENT", "country": "DE", "merchant_id": "MER000001", "mcc_code": "5411",
}
# valid records whose typed values are compared with the decoded JSON
VALUE_CASES = [
    json.dumps(BASE),
    json.dumps({**BASE, "description": 'say "hi" \\ back\tslash', "counterparty_name": "Zoë Müller"}),
    json.dumps({**BASE, "description": "caf\u00e9"}, ensure_ascii=True),
    json.dumps({**BASE, "amount": 1.5e2, "latitude": 48, "longitude": -0.5e-3}),
]
EDGE_CASES = [
    *VALUE_CASES,
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
    # what a lenient parser would let through: content after the object, repeated keys, over-precise amounts
    json.dumps(BASE) + "\r" + json.dumps({**BASE, "transaction_id": "T3"}),
    json.dumps(BASE) + " trailing",
    json.dumps(BASE) + "]",
    json.dumps(BASE)[:-1] + ', "transaction_id": "T1"}',
    json.dumps({**BASE, "extra": {"a": 1}})[:-1] + ', "extra": {"a": 1, "a": 2}}',
    json.dumps({**BASE, "extra": {"a": 1}}),
    json.dumps({**BASE, "description": "{curly} text"}),
    json.dumps({**BASE, "amount": 0.004}),
    json.dumps({**BASE, "amount": 0.005}),
    json.dumps({**BASE, "amount": 12.50}),
    json.dumps(BASE).replace('"amount": 12.5', '"amount": 12.500'),
    json.dumps(BASE).replace('"amount": 12.5', '"amount": 1.000000000000000000000000000001'),
    json.dumps(BASE).replace('"amount": 12.5', '"amount": 1.25e1'),
    json.dumps(BASE).replace('"amount": 12.5', '"amount": 1.255e1'),
    json.dumps(BASE).replace('"amount": 12.5', '"amount": 1e309'),
    json.dumps(BASE).replace('"amount": 12.5', '"amount": NaN'),
    "\ufeff" + json.dumps(BASE),
    "[" * 3000 + "]" * 3000,
    json.dumps({**BASE, "event_time": "2026-03-02T10:00:00.123456Z"}),
    json.dumps({**BASE, "event_time": "2026-03-02T10:00:00.1234567Z"}),
]


def test_spark_validation_matches_jsonschema_on_generated_and_edge_case_records(spark, tmp_path):
    generate_day(SynthConfig(seed=9, events_per_day=1500, malformed_json=0.01, missing_required=0.01, wrong_type=0.01), tmp_path, dt.date(2026, 3, 2))
    lines = [line for path in sorted((tmp_path / "transactions").rglob("*.jsonl")) for line in path.read_text().splitlines()]
    lines += EDGE_CASES
    # the reference reads the payload strictly (one value, unique keys, numbers as written) and the
    # contract with exact decimals, so multipleOf is decided without binary rounding
    validator = json_validator("transactions")

    def reference_valid(line: str) -> bool:
        try:
            return validator.is_valid(strict_loads(line))
        except PayloadProblem:
            return False

    frame = spark.createDataFrame([(i, line) for i, line in enumerate(lines)], "i long, payload string")
    checked, _ = validate_payloads(frame)
    spark_valid = {r.i: len(r.reason_codes) == 0 for r in checked.select("i", "reason_codes").collect()}
    disagreements = [(lines[i][:120], spark_valid[i]) for i in range(len(lines)) if spark_valid[i] != reference_valid(lines[i])]
    assert not disagreements
    assert sum(spark_valid.values()) < len(lines), "the sample must contain invalid records"


def test_typed_values_equal_the_decoded_json(spark):
    """The typed contract columns hold exactly the JSON values: escapes, non-ASCII text, integer
    and exponent numbers, timestamps."""
    frame = spark.createDataFrame(list(enumerate(VALUE_CASES)), "i long, payload string")
    checked, _ = validate_payloads(frame)
    rows = {r.i: r for r in checked.collect()}
    for i, line in enumerate(VALUE_CASES):
        record, row = json.loads(line), rows[i]
        assert row.reason_codes == [], line
        for field in ("transaction_id", "account_id", "currency", "description", "counterparty_name", "mcc_code"):
            assert getattr(row, field) == record.get(field), field
        assert float(row.amount) == record["amount"]
        for field in ("latitude", "longitude"):
            assert getattr(row, field) == (float(record[field]) if field in record else None), field
        assert row.event_time == dt.datetime(2026, 3, 2, 10, 0)


REASON_CASES = {
    json.dumps(BASE) + "\r" + json.dumps({**BASE, "transaction_id": "T3"}): ["TRAILING_CONTENT"],
    json.dumps(BASE) + "]": ["TRAILING_CONTENT"],
    json.dumps(BASE)[:-1] + ', "amount": 13}': ["DUPLICATE_KEY"],
    json.dumps({**BASE, "extra": {"a": 1}})[:-1] + ', "extra": {"a": 1, "a": 2}}': ["DUPLICATE_KEY"],
    json.dumps({**BASE, "amount": 0.004}): ["AMOUNT_TOO_PRECISE"],
    json.dumps({**BASE, "amount": 0.005}): ["AMOUNT_TOO_PRECISE"],
    json.dumps(BASE).replace('"amount": 12.5', '"amount": 1e309'): ["ABSURD_AMOUNT"],
    json.dumps(BASE).replace('"latitude"', '"x"').replace('"amount": 12.5', '"amount": 12.5, "latitude": 1e400'): ["ABOVE_MAXIMUM:latitude"],
    "\ufeff" + json.dumps(BASE): [],
    "[" * 3000 + "]" * 3000: ["MALFORMED_JSON"],
    json.dumps({**BASE, "event_time": "2026-03-02T10:00:00.123456789Z"}): ["EVENT_TIME_TOO_PRECISE"],
    json.dumps({**BASE, "event_time": "2026-03-02"}): ["INVALID_FORMAT:event_time"],
}


def test_payload_problems_get_their_own_reason_codes(spark):
    """Content after the object, repeated keys, over-precise and out-of-range numbers each get exactly their
    reason; a leading byte-order mark is skipped."""
    cases = list(REASON_CASES)
    frame = spark.createDataFrame(list(enumerate(cases)), "i long, payload string")
    checked, _ = validate_payloads(frame)
    got = {cases[r.i]: list(r.reason_codes) for r in checked.select("i", "reason_codes").collect()}
    assert got == REASON_CASES


def test_invalid_utf8_bytes_are_rejected_with_their_reason(spark):
    frame = spark.createDataFrame([(0, json.dumps(BASE), None), (1, json.dumps(BASE), bytearray(b'{"x":"\xff"}'))], "i long, payload string, payload_bytes binary")
    checked, _ = validate_payloads(frame)
    got = {r.i: list(r.reason_codes) for r in checked.select("i", "reason_codes").collect()}
    assert got == {0: [], 1: ["INVALID_UTF8"]}
