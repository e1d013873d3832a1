"""Parity: events through the real-time validation (compliance_assets/realtime/validation.py) one at a time,
and the same events through the Spark path (pipeline.check_batch, whose contract step is validate_payloads),
give the same contract reason codes in the same order, the same typed contract values, and the same final
reason codes, warnings, event dates and FX lookups. Inputs: the synthetic generator's bad records,
hand-written edge cases, hypothesis-generated payloads and a batch exercising every reference and
timeliness rule, all judged by Spark in one job (a Spark job per example would cost seconds each)."""

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from compliance_assets.realtime.validation import _decoded, _first_value, _Number, _plain_number, _Unbuildable, _variant_type, check_record, compiled, validate_payload
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.synthetic.config import INLINE_DEFECTS
from compliance_assets.transforms.enrichment import fx_lookup
from compliance_assets.transforms.pipeline import REJECT, ReferenceFrames, check_batch
from contracts import load_contract
from contracts.spark import struct_type

FIELDS = list(load_contract("transactions")["properties"])
DAY = dt.date(2026, 3, 10)  # the delivery day of every record
LATENESS = 7
BASE = {
    "transaction_id": "T1", "event_time": "2026-03-10T10:00:00Z", "account_id": "ACC00000001", "amount": 12.5,
    "currency": "EUR", "channel": "CARD_PRESENT", "country": "DE", "merchant_id": "MER000001", "mcc_code": "5411",
    "latitude": 48.137, "longitude": 11.575, "risk_flags": ["NEW_DEVICE"], "description": "groceries",
}
TEXT = json.dumps(BASE)


def with_amount(text: str) -> str:
    return TEXT.replace('"amount": 12.5', f'"amount": {text}')


def with_time(value: str) -> str:
    return json.dumps({**BASE, "event_time": value})


EDGE_CASES = [
    TEXT, "\ufeff" + TEXT, "\ufeff\ufeff" + TEXT, " \t" + TEXT + "\r\n", TEXT + "\x0c", "\x0c" + TEXT,
    # what a lenient parser lets through: trailing content, repeated keys (top level, nested, in a contract field)
    TEXT + " trailing", TEXT + TEXT, TEXT + "]", TEXT[:-1] + ', "amount": "13"}', TEXT[:-1] + ', "extra": {"a": 1, "a": 2}}',
    TEXT[:-1] + ', "risk_flags": [{"a": 1, "a": 2}]}', TEXT[:-1] + ', "extra": {"a": 1}} {',
    # unpaired surrogates: in a contract field, elsewhere, escaped pairs
    TEXT[:-1] + ', "description": "\\ud800"}', TEXT[:-1] + ', "note": "\\udc00"}', TEXT[:-1] + ', "description": "\\ud83d\\ude00"}',
    # not one JSON object
    "", "   ", "null", "1 2", "[1] x", json.dumps([BASE]), '"text"', "[" * 3000 + "]" * 3000, '[{"a": 1, "a": 2}]', "nul",
    TEXT[:-1], TEXT.replace("12.5", "NaN"), TEXT.replace("12.5", "Infinity"), TEXT.replace("12.5", "012.5"), TEXT[:-1] + ",}",
    json.dumps({**BASE, "extra": {"nested": [1, {"deep": True}]}}), json.dumps({**BASE, "description": "{curly} }"}),
    # numbers as written
    with_amount("10.005"), with_amount("1.50"), with_amount("12.500"), with_amount("1e309"), with_amount("-1e309"), with_amount("1.25e1"),
    with_amount("1.255e1"), with_amount("1e-5"), with_amount("0"), with_amount("-0.0"), with_amount("0.001"), with_amount("100000000"),
    with_amount("100000000.01"), with_amount("1E+2"), with_amount("1" * 40), with_amount("1." + "0" * 40), with_amount('"12.50"'),
    with_amount("true"), with_amount("null"), with_amount("[12.5]"), with_amount("9223372036854775808"), with_amount("0.1" + "0" * 37),
    TEXT.replace("48.137", "1e400"), TEXT.replace("48.137", "-0"), TEXT.replace("48.137", "90.000"), TEXT.replace("48.137", "-90.0000001"),
    TEXT.replace("48.137", "4.8137e1"), TEXT.replace("48.137", "1" * 1001), TEXT.replace("48.137", "0." + "1" * 1000),
    TEXT.replace("48.137", "0." + "1" * 999 + "e1"), TEXT.replace("48.137", "1" * 999 + "e5"), TEXT[:-1] + ', "x": ' + "[" * 500 + "]" * 500 + "}",
    # date-times: precision, offsets, separators, calendar, line terminators
    with_time("2026-03-10T10:00:00.123456Z"), with_time("2026-03-10T10:00:00.1234567Z"), with_time("2026-03-10T10:00:00.123456789Z"),
    with_time("2026-03-10T01:30:00+02:00"), with_time("2026-03-10T23:30:00-05:30"), with_time("2026-03-10T10:00:00+18:00"),
    with_time("2026-03-10T10:00:00+18:01"), with_time("2026-03-10T10:00:00+02:60"), with_time("2026-03-10T10:00:00-00:00"),
    with_time("2026-03-10 10:00:00Z"), with_time("2026-03-10t10:00:00Z"), with_time("2026-03-10T10:00:00z"), with_time("2026-03-10"),
    with_time("2026-02-29T10:00:00Z"), with_time("2024-02-29T10:00:00Z"), with_time("2026-03-10T24:00:00Z"), with_time("2026-03-10T23:59:60Z"),
    with_time("2026-03-10T10:00:00Z\n"), with_time("2026-03-10T10:00:00Z\r\n"), with_time("2026-03-10T10:00:00Z\u2028"),
    with_time("2026-03-10T10:00:00Z\u0085"), with_time("2026-03-10T10:00:00Z\n\n"), with_time(" 2026-03-10T10:00:00Z"),
    with_time("x\r.1234567Z"), json.dumps({**BASE, "event_time": 1772445600}),
    # identifiers and codes: Java's `$` matches before a final line terminator, Python's only before a final \n
    json.dumps({**BASE, "account_id": "ACC00000001\n"}), json.dumps({**BASE, "account_id": "ACC00000001\r"}),
    json.dumps({**BASE, "account_id": "ACC00000001\r\n"}), json.dumps({**BASE, "account_id": "ACC00000001\u2029"}),
    json.dumps({**BASE, "account_id": "ACC00000001\n\n"}), json.dumps({**BASE, "account_id": "ACC０0000001"}),
    json.dumps({**BASE, "currency": "eur"}), json.dumps({**BASE, "currency": None}), json.dumps({**BASE, "mcc_code": 5411}),
    json.dumps({**BASE, "transaction_id": ""}), json.dumps({**BASE, "transaction_id": "x" * 65}), json.dumps({**BASE, "transaction_id": "😀" * 64}),
    json.dumps({**BASE, "description": "é" * 501}, ensure_ascii=False),
    # nulls: optional nullable fields, channel (not nullable), required fields
    json.dumps({**BASE, "merchant_id": None, "country": None, "mcc_code": None, "latitude": None, "risk_flags": None}),
    json.dumps({**BASE, "channel": None}), json.dumps({**BASE, "channel": "ONLINE"}), json.dumps({**BASE, "amount": None}),
    json.dumps({k: v for k, v in BASE.items() if k not in ("channel", "country", "amount")}),
    # arrays: item types
    json.dumps({**BASE, "risk_flags": ["A", 1]}), json.dumps({**BASE, "risk_flags": ["A", None]}), json.dumps({**BASE, "risk_flags": []}),
    json.dumps({**BASE, "risk_flags": [None]}), json.dumps({**BASE, "risk_flags": [["A"]]}), json.dumps({**BASE, "risk_flags": "A"}),
    json.dumps({**BASE, "risk_flags": {"a": "b"}}), json.dumps({**BASE, "AMOUNT": 5}),
]


def generated_payloads(n: int) -> list[str]:
    """n payloads drawn from the hypothesis strategy `payloads` (collected, for Spark to judge in one job)."""
    out: list[str] = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(payloads())
    def collect(payload: str) -> None:
        out.append(payload)

    collect()
    return out


@pytest.fixture(scope="module")
def parity(spark, tmp_path_factory):
    """{group: [(payload, Spark's outcome, Python's outcome)]}: an outcome is ((typed values, contract codes),
    (reason codes, dq_warnings, event_date, fx_rate_to_base, fx_rate_date)); Spark's from one check_batch."""
    root = tmp_path_factory.mktemp("landing")
    config = SynthConfig(seed=7, events_per_day=300, n_accounts=50, n_merchants=20, malformed_json=0.02, missing_required=0.04,
                         wrong_type=0.04, negative_amount=0.03, absurd_amount=0.02, unknown_currency=0.03, duplicate=0.01)
    summary = generate_day(config, root, DAY)
    assert all(summary.defects[kind] > 0 for kind in INLINE_DEFECTS), summary.defects
    groups = {
        "generator": [(line, False) for path in sorted((root / "transactions").rglob("*.jsonl")) for line in path.read_text().splitlines()],
        "edge": [(p, False) for p in EDGE_CASES] + [(None, False), (TEXT, True), ("not json", True)],  # True: not valid UTF-8
        "hypothesis": [(p, False) for p in generated_payloads(150)],
        "batch": [(p, False) for p in BATCH] + [(BATCH[0], True)],
    }
    cases = [case for group in groups.values() for case in group]

    frame = spark.createDataFrame
    fx = fx_lookup(frame([(dt.date.fromisoformat(d), c, r) for d, c, r in FX], struct_type("fx_rates")), DAY - dt.timedelta(days=LATENESS), DAY)
    refs = ReferenceFrames(
        kyc=frame([(a,) for a in ACCOUNTS], "account_id string"), limits=frame([], struct_type("account_limits")), fx=fx,
        merchants=frame([(m,) for m in MERCHANTS], "merchant_id string"), watchlists=frame([], struct_type("watchlists")),
    )
    bronze = frame(
        [(f"landing:f:{i}", DAY, "landing", "f", i, p, bytearray(b"\xff") if bad else None) for i, (p, bad) in enumerate(cases)],
        "ingest_id string, event_date date, source string, source_file string, source_line long, payload string, payload_bytes binary",
    )
    batch = check_batch(bronze, refs, DAY.isoformat(), LATENESS)
    [contract] = [masks for masks, action in batch.groups if masks.failed == "_contract_failed" and action == REJECT]
    rows = {r.source_line: r for r in batch.rows.collect()}
    batch.unpersist()
    rates = {(r.currency, r.event_date): (r.fx_rate_to_base, r.fx_rate_date) for r in fx.collect()}

    def spark_outcome(r) -> tuple:
        codes = [rule.reason_code for i, rule in enumerate(contract.rules) if r[contract.failed] >> i & 1]
        return ({f: r[f] for f in FIELDS}, codes), (list(r.reason_codes), list(r.dq_warnings), r.event_date, r.fx_rate_to_base, r.fx_rate_date)

    def python_outcome(payload: str | None, bad: bool) -> tuple:
        rec = check_record(payload, DAY, LATENESS, ACCOUNTS.__contains__, lambda c, d: rates.get((c, d)), MERCHANTS.__contains__, invalid_bytes=bad)
        assert rec.rejected == bool(rec.reason_codes)
        return validate_payload(payload, invalid_bytes=bad), (rec.reason_codes, rec.dq_warnings, rec.event_date, rec.fx_rate_to_base, rec.fx_rate_date)

    out, i = {}, 0
    for name, group in groups.items():
        out[name] = [(p, spark_outcome(rows[i + j]), python_outcome(p, bad)) for j, (p, bad) in enumerate(group)]
        i += len(group)
    return out


def assert_same(results, part: int) -> None:
    """Part 0 (the contract step) or 1 (after the reference and timeliness rules) agrees for every payload."""
    differ = [(p, want[part], got[part]) for p, want, got in results if want[part] != got[part]]
    assert not differ, f"{len(differ)} differ, e.g.:\n" + "\n".join(f"{p!r}\n  spark:  {w}\n  python: {g}" for p, w, g in differ[:5])


def contract_codes(results) -> list[list[str]]:
    return [want[0][1] for _, want, _ in results]


def test_generated_bad_records_and_edge_cases_get_the_contract_codes_and_values_of_the_batch_path(parity):
    results = parity["generator"] + parity["edge"]
    assert_same(results, 0)
    # the sample exercises what it claims to
    seen = {c.split(":")[0] for codes in contract_codes(results) for c in codes}
    assert {"MALFORMED_JSON", "MISSING_REQUIRED_FIELD", "WRONG_TYPE", "NON_POSITIVE_AMOUNT", "ABSURD_AMOUNT", "UNKNOWN_CURRENCY", "INVALID_UTF8",
            "TRAILING_CONTENT", "DUPLICATE_KEY", "NOT_A_JSON_OBJECT", "AMOUNT_TOO_PRECISE", "EVENT_TIME_TOO_PRECISE", "INVALID_FORMAT",
            "PATTERN_MISMATCH", "WRONG_ITEM_TYPE", "TOO_LONG", "TOO_SHORT", "UNKNOWN_CHANNEL", "ABOVE_MAXIMUM", "BELOW_MINIMUM"} <= seen
    assert sum(not codes for codes in contract_codes(parity["generator"])) > len(parity["generator"]) // 2


def test_hypothesis_payloads_get_the_contract_codes_and_values_of_the_batch_path(parity):
    assert_same(parity["hypothesis"], 0)
    valid = sum(not codes for codes in contract_codes(parity["hypothesis"]))
    assert 0 < valid < len(parity["hypothesis"]), "the payloads must mix valid and invalid records"


def test_check_record_matches_check_batch(parity):
    for group in parity.values():
        assert_same(group, 1)
    # every reference, timeliness and flagging rule fired in the batch
    codes = {c for _, (_, (reasons, warnings, *_)), _ in parity["batch"] for c in (*reasons, *warnings)}
    assert {"UNKNOWN_ACCOUNT", "NO_FX_RATE", "EVENT_TIME_IN_FUTURE", "ARRIVED_TOO_LATE", "MISSING_LOCATION", "UNKNOWN_MERCHANT", "INVALID_UTF8"} <= codes
    assert any(date != fx_date for _, (_, (_, _, date, _, fx_date)), _ in parity["batch"] if fx_date), "a rate of another day must be used"


# ---- hypothesis: payloads mixing valid and invalid values per field -------------------------------------

def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


numbers = st.one_of(
    st.integers(-10**6, 10**9).map(str),
    st.decimals(-10**9, 10**9, places=2, allow_nan=False, allow_infinity=False).map(str),
    st.tuples(st.integers(-999_999, 99_999_999), st.integers(0, 5), st.integers(0, 99999)).map(lambda t: f"{t[0]}.{str(t[2]).zfill(t[1])[:t[1]] or '0'}"),
    st.tuples(st.integers(-9999, 9999), st.integers(-9, 12)).map(lambda t: f"{t[0] / 100}e{t[1]}"),
    st.sampled_from(["0", "-0", "0.0", "-0.00", "1e309", "100000000", "100000000.00", "100000000.001", "90", "-180.0", "0.005", "1E2", "12.50"]),
)
scalars = st.one_of(st.just("null"), st.booleans().map(_dumps), numbers, st.text(max_size=8).map(_dumps))
valid_timestamps = st.builds(
    lambda day, sep, time, frac, zone: _dumps(f"{day}{sep}{time}{frac}{zone}"),
    st.dates(dt.date(1970, 1, 1), dt.date(2100, 12, 31)).map(str), st.sampled_from(["T", " "]),
    st.times().map(lambda t: t.strftime("%H:%M:%S")), st.sampled_from(["", ".5", ".123456"]), st.sampled_from(["Z", "+02:00", "-05:30", "+00:00"]),
)
timestamps = st.builds(
    lambda day, sep, time, frac, zone, tail: _dumps(f"{day}{sep}{time}{frac}{zone}{tail}"),
    st.sampled_from(["2026-03-10", "2026-02-29", "2024-02-29", "2026-12-31", "1999-01-01", "2026-13-01"]),
    st.sampled_from(["T", "T", " ", "t"]),
    st.sampled_from(["10:00:00", "00:00:00", "23:59:59", "24:00:00", "12:60:00"]),
    st.sampled_from(["", "", ".1", ".123456", ".1234567", ".123456789", ".1234567890"]),
    st.sampled_from(["Z", "Z", "z", "+02:00", "-05:30", "+18:00", "-18:01", "+00:60", ""]),
    st.sampled_from(["", "", "", "\n", "\r", "\u2028"]),
)


def ids(prefix: str, digits: int, valid: bool) -> st.SearchStrategy[str]:
    if valid:
        return st.integers(0, 10**digits - 1).map(lambda n: _dumps(f"{prefix}{str(n).zfill(digits)}"))
    return st.builds(lambda n, d, tail: _dumps(f"{prefix}{str(n).zfill(d)}{tail}"), st.integers(0, 10**digits - 1),
                     st.sampled_from([digits, digits - 1, digits + 1]), st.sampled_from(["", "\n", "\r\n", "\r", "\u2028", "x"]))


def codes(values: list[str], valid: bool) -> st.SearchStrategy[str]:
    return st.sampled_from(values).map(_dumps) if valid else st.sampled_from([v.lower() for v in values] + [""]).map(_dumps)


nullable = lambda values: st.one_of(st.just("null"), values)  # noqa: E731
valid_amounts = st.one_of(st.integers(1, 10**8).map(str), st.decimals("0.01", "99999999.99", places=2).map(str),
                          st.sampled_from(["12.50", "1.0", "100000000", "1.25e1", "1E2", "0.01"]))
# per field: (valid values, values that are often not)
FIELD_VALUES = {
    "transaction_id": (st.text(min_size=1, max_size=64).map(_dumps), st.one_of(st.text(max_size=70).map(_dumps), scalars)),
    "event_time": (valid_timestamps, st.one_of(timestamps, scalars)),
    "account_id": (ids("ACC", 8, True), st.one_of(ids("ACC", 8, False), scalars)),
    "merchant_id": (nullable(ids("MER", 6, True)), st.one_of(ids("MER", 6, False), scalars)),
    "counterparty_id": (nullable(st.text(max_size=64).map(_dumps)), st.one_of(st.text(min_size=60, max_size=66).map(_dumps), scalars)),
    "amount": (valid_amounts, st.one_of(numbers, scalars)),
    "currency": (codes(["EUR", "USD", "JPY"], True), st.one_of(codes(["EUR", "USD", "JPY"], False), scalars)),
    "channel": (codes(["CARD_PRESENT", "ATM", "TRANSFER"], True), st.one_of(codes(["CARD_PRESENT", "ATM", "TRANSFER"], False), scalars)),
    "country": (nullable(st.sampled_from(["DE", "FR"]).map(_dumps)), st.one_of(st.sampled_from(["de", "DEU", "D1"]).map(_dumps), scalars)),
    "mcc_code": (nullable(st.from_regex(r"\A[0-9]{4}\Z").map(_dumps)), st.one_of(st.from_regex(r"\A[0-9]{3,5}\n?\Z").map(_dumps), scalars)),
    "risk_flags": (nullable(st.lists(st.one_of(st.text(max_size=4), st.none()), max_size=3).map(_dumps)),
                   st.one_of(st.lists(st.one_of(st.text(max_size=4), st.integers(0, 3), st.booleans()), min_size=1, max_size=3).map(_dumps), scalars)),
    **{name: (nullable(st.decimals(-limit, limit, places=5).map(str)), st.one_of(numbers, scalars))
       for name, limit in (("latitude", 90), ("longitude", 180), ("delivery_latitude", 90), ("delivery_longitude", 180))},
    "description": (nullable(st.text(max_size=20).map(_dumps)), st.one_of(st.just(_dumps("d" * 501)), scalars)),
    "counterparty_name": (nullable(st.text(max_size=20).map(_dumps)), st.one_of(st.just(_dumps("n" * 201)), scalars)),
}


@st.composite
def payloads(draw) -> str:
    """A JSON object with each contract field present or absent, its value mostly valid, sometimes spoiled."""
    parts = []
    for name, (valid, messy) in FIELD_VALUES.items():
        if name in ("transaction_id", "event_time", "account_id", "amount", "currency") or draw(st.booleans()):
            parts.append(f'"{name}": {draw(messy if draw(st.integers(0, 9)) == 0 else valid)}')
    text = "{" + ", ".join(draw(st.permutations(parts))) + "}"
    spoil = draw(st.sampled_from(["bom", "trailing", "duplicate", "array", "cut", *[""] * 10]))
    return {"": text, "bom": "\ufeff" + text, "trailing": text + ' {"x": 1}', "duplicate": text[:-1] + ', "amount": 1}',
            "array": f"[{text}]", "cut": text[: len(text) // 2]}[spoil]


# ---- events for the reference, timeliness and flagging rules ---------------------------------------------

def event(tid: str, when: str, **fields) -> str:
    record = {"transaction_id": tid, "event_time": when, "account_id": "ACC00000001", "amount": 10.0, "currency": "EUR",
              "channel": "CARD_PRESENT", "merchant_id": "MER000001", "latitude": 1.0, "longitude": 2.0, **fields}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


BATCH = [
    event("valid", "2026-03-10T12:00:00Z"),
    event("unknown_account", "2026-03-10T12:00:00Z", account_id="ACC99999999"),
    event("no_fx_currency", "2026-03-10T12:00:00Z", currency="SEK"),
    event("future", "2026-03-11T00:00:00Z"),
    event("future_by_offset", "2026-03-10T23:30:00-01:00"),
    event("midnight_by_offset", "2026-03-11T01:00:00+02:00"),
    event("too_late", "2026-03-02T23:59:59Z"),
    event("last_late_day", "2026-03-03T00:00:00Z"),
    event("earlier_rate", "2026-03-08T09:00:00Z", currency="USD"),
    event("later_rate", "2026-03-04T09:00:00Z", currency="GBP"),
    event("no_location", "2026-03-10T12:00:00Z", latitude=..., longitude=...),
    event("atm_half_location", "2026-03-10T12:00:00Z", channel="ATM", longitude=None),
    event("transfer_no_location", "2026-03-10T12:00:00Z", channel="TRANSFER", latitude=..., longitude=..., merchant_id=...),
    event("no_channel", "2026-03-10T12:00:00Z", channel=..., latitude=...),
    event("unknown_merchant", "2026-03-10T12:00:00Z", merchant_id="MER999999"),
    event("both_warnings", "2026-03-10T12:00:00Z", merchant_id="MER999999", latitude=None),
    event("contract_and_account", "2026-03-10T12:00:00Z", account_id="ACC99999999", amount=-5, latitude=..., merchant_id="MER999999"),
    event("contract_and_late", "2026-02-01T12:00:00Z", currency="XXX"),
    event("rejected_no_warning", "2026-03-10T12:00:00Z", account_id="ACC99999999", latitude=..., merchant_id="MER999999"),
    "not json",
]
FX = [("2026-03-10", "EUR", 1.0), ("2026-03-03", "EUR", 1.0), ("2026-03-05", "USD", 0.91), ("2026-03-10", "USD", 0.93), ("2026-03-06", "GBP", 1.17)]
ACCOUNTS = {"ACC00000001", "ACC00000002"}
MERCHANTS = {"MER000001"}


# ---- the compiled fast paths are the per-property checks -----------------------------------------------

def _checked_by_property(obj) -> tuple:
    """Each property's own check (the definition), in contract order: (typed values, reason codes) as text, or the error."""
    contract, codes = compiled("transactions"), []
    try:
        values = {name: check(obj, codes) for name, check in zip(contract.fields, contract.checks)}
    except _Unbuildable:
        return "unbuildable"
    return [(k, type(v).__name__, repr(v)) for k, v in values.items()], codes


def _checked_at_once(obj) -> tuple:
    codes = []
    try:
        values = compiled("transactions").check_all(obj, codes)
    except _Unbuildable:
        return "unbuildable"
    return [(k, type(v).__name__, repr(v)) for k, v in values.items()], codes


def test_all_properties_checked_at_once_give_each_propertys_own_check():
    """`check_all` (fast paths for common values, passing values remembered) against the per-property checks, on the
    edge cases, the hypothesis payloads and the rule batch, each checked twice (the second time remembered)."""
    objects = []
    for payload in [*EDGE_CASES, *generated_payloads(400), *BATCH]:
        try:
            value, _ = _first_value(payload.lstrip("\ufeff"))
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    assert len(objects) > 300
    fast = 0
    for obj in objects + objects:
        want = _checked_by_property(obj)
        assert _checked_at_once(obj) == want, obj
        fast += want != "unbuildable" and not want[1]
    assert fast > 100  # valid objects: every property on a fast path


NUMBER_TEXTS = st.one_of(
    numbers, valid_amounts, st.from_regex(r"\A-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.sampled_from(["-0", "0", "-0.5", "0.10", "1" * 18, "1" * 19, "-" + "9" * 17, "0." + "0" * 15 + "1", "12345678901234567.5"]),
)


@settings(max_examples=3000, deadline=None, database=None)
@given(NUMBER_TEXTS)
def test_a_plainly_written_number_gets_the_variant_type_text_and_double_of_the_general_path(text):
    value, end = _first_value(text)  # as the reader reads a number (JSON's grammar)
    assert type(value) is _Number and end == len(text), text
    plain = _plain_number(value)
    if plain is not None:
        vtype = _variant_type(value)
        number_text, number = _decoded(value, vtype)
        assert (plain[0], plain[1], repr(plain[2])) == (vtype, number_text, repr(number)), text
        assert type(plain[1]) is type(number_text) is str
