"""Broken and hostile delivery files: every line lands exactly once (silver, DLQ or a counted duplicate),
every DLQ row says why, and no silver value differs from what was delivered.

A property-based test (hypothesis) corrupts valid records at random: byte flips, truncation, a BOM,
CR/LF mixes, duplicate keys, huge and over-precise numbers, deep nesting, very long lines, invalid
UTF-8, content after the object. Each example is one delivery file run through the real bronze and
silver assets and their checks. FUZZ_EXAMPLES sets the example count (CI keeps it small; e.g.
FUZZ_EXAMPLES=200 for a longer local run; FUZZ_RANDOM=1 for new random examples instead of the fixed ones).
"""

import datetime as dt
import hashlib
import json
import os
import shutil
from collections import Counter
from decimal import Decimal

import pytest
from dagster import DagsterInstance, materialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.checks import dlq_rows_have_reason_codes, silver_rows_conserved
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.ingest.reference_data import reference_assets
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.json_payload import PayloadProblem, strict_loads
from tests.conftest import make_resources
from tests.helpers import check_results, read_delta

DAY = "2026-03-09"
SALT = "test-salt"  # make_resources' masking salt
LINES = 24
EXAMPLES = int(os.getenv("FUZZ_EXAMPLES", "3"))
CLEAN = SynthConfig(
    seed=31, events_per_day=LINES + 10, malformed_json=0, missing_required=0, wrong_type=0, negative_amount=0, absurd_amount=0,
    unknown_currency=0, duplicate=0, late_arrival=0, missing_from_stream=0, anomaly_rate=0,
)


@pytest.fixture(scope="module")
def fuzz_lake(spark, tmp_path_factory):
    """A lake with the day's reference data loaded and a pool of valid records of that day."""
    root = tmp_path_factory.mktemp("fuzz")
    generate_day(CLEAN, root / "landing", dt.date.fromisoformat(DAY))
    folder = root / "landing" / "transactions" / f"event_date={DAY}"
    records = [line for path in sorted(folder.glob("*.jsonl")) for line in path.read_bytes().splitlines()]
    shutil.rmtree(folder)
    result = materialize(reference_assets, partition_key=DAY, resources=make_resources(root), instance=DagsterInstance.ephemeral())
    assert result.success
    return root, records[:LINES]


def _flip(line: bytes, n: int) -> bytes:
    pos = n % len(line)
    return line[:pos] + bytes([line[pos] ^ (1 << (n // len(line)) % 8)]) + line[pos + 1:]


def _with(line: bytes, field: str, raw_value: str) -> bytes:
    """The record with `field` set to the JSON text `raw_value`, written as is (no re-encoding)."""
    record = json.loads(line)
    record[field] = "@@"
    return json.dumps(record).replace('"@@"', raw_value).encode()


CORRUPTIONS = {
    "none": lambda line, n, nxt: line,
    "byte_flip": lambda line, n, nxt: _flip(line, n),
    "truncate": lambda line, n, nxt: line[: n % len(line)],
    "bom": lambda line, n, nxt: b"\xef\xbb\xbf" + line,
    "crlf": lambda line, n, nxt: line + b"\r",
    "cr_cr": lambda line, n, nxt: line + b"\r\r",
    "bare_cr_join": lambda line, n, nxt: line + b"\r" + nxt,
    "trailing_text": lambda line, n, nxt: line + b" x",
    "duplicate_key": lambda line, n, nxt: line[:-1] + b', "amount": 1.00}',
    "huge_number": lambda line, n, nxt: _with(line, "amount", ["1e309", "123456789012345678901234567890", "-1e400"][n % 3]),
    "over_precise": lambda line, n, nxt: _with(line, "amount", ["0.004", "0.005", "12.345", "1.000000000000000000000000000001"][n % 4]),
    "exact_decimals": lambda line, n, nxt: _with(line, "amount", ["12.50", "1.25e1", "0.01", "99999999.99"][n % 4]),
    "deep_nesting": lambda line, n, nxt: line[:-1] + b', "extra": ' + b"[" * (600 + n % 3000) + b"]" * (600 + n % 3000) + b"}",
    "long_line": lambda line, n, nxt: line[:-1] + b', "extra": "' + b"a" * (100_000 + n % 200_000) + b'"}',
    "invalid_utf8": lambda line, n, nxt: line[: n % len(line)] + b"\xff\xfe" + line[n % len(line):],
    "blank": lambda line, n, nxt: b"",
    "nested_object": lambda line, n, nxt: line[:-1] + b', "extra": {"k": {"a": 1}}}',
}


def _delivery(records: list[bytes], plan: list[tuple[str, int]], endings: list[bytes]) -> bytes:
    out = []
    for i, ((kind, n), line) in enumerate(zip(plan, records)):
        out.append(CORRUPTIONS[kind](line, n, records[(i + 1) % len(records)]) + endings[i])
    return b"".join(out)


def _input_lines(data: bytes) -> list[bytes]:
    """The delivery's lines as a reader must see them: split on LF, a final LF ends the last line, one CR before a LF belongs to the break."""
    lines = data.split(b"\n")
    if len(lines) > 1 and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _token(value):
    return None if value is None else "pii_" + hashlib.sha256((SALT + value).encode()).hexdigest()[:16]


def _assert_silver_equals_input(row, record: dict) -> None:
    """Every contract value in silver is the delivered value, exactly."""
    for field in ("transaction_id", "account_id", "merchant_id", "counterparty_id", "currency", "channel", "country", "mcc_code"):
        assert row[field] == record.get(field), field
    assert Decimal(str(row["amount"])) == record["amount"]
    for field in ("latitude", "longitude", "delivery_latitude", "delivery_longitude"):
        expected = record.get(field)
        assert (row[field] is None or row[field] != row[field]) if expected is None else float(row[field]) == float(expected), field
    assert list(row["risk_flags"] if row["risk_flags"] is not None else []) == list(record.get("risk_flags") or []), "risk_flags"
    assert row["description"] == _token(record.get("description")) and row["counterparty_name"] == _token(record.get("counterparty_name"))
    event_time = dt.datetime.fromisoformat(record["event_time"]).astimezone(dt.timezone.utc)
    assert row["event_time"].to_pydatetime().replace(tzinfo=dt.timezone.utc) == event_time


ENDINGS = st.sampled_from([b"\n", b"\n", b"\r\n"])


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.getenv("FUZZ_RANDOM"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    plan=st.lists(st.tuples(st.sampled_from(sorted(CORRUPTIONS)), st.integers(0, 10**6)), min_size=LINES, max_size=LINES),
    endings=st.lists(ENDINGS, min_size=LINES, max_size=LINES),
    final_newline=st.booleans(),
)
def test_every_delivered_line_lands_exactly_once_unchanged(fuzz_lake, plan, endings, final_newline):
    root, records = fuzz_lake
    data = _delivery(records, plan, endings)
    data = data if final_newline else data.rstrip(b"\n")
    folder = root / "landing" / "transactions" / f"event_date={DAY}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "part-00000.jsonl").write_bytes(data)

    result = materialize(
        [transactions_bronze, validate_transactions, silver_rows_conserved, dlq_rows_have_reason_codes],
        partition_key=DAY, resources=make_resources(root), instance=DagsterInstance.ephemeral(),
    )
    checks = check_results(result)
    assert checks[("transactions_silver", "silver_rows_conserved")] and checks[("transactions_dlq", "dlq_rows_have_reason_codes")]

    lines = _input_lines(data)
    bronze = read_delta(root, "transactions_bronze", event_date=DAY).set_index("source_line")
    silver = read_delta(root, "transactions_silver", ingest_date=DAY).set_index("source_line")
    dlq = read_delta(root, "transactions_dlq", event_date=DAY).set_index("source_line")
    dq = read_delta(root, "dq_results", event_date=DAY).set_index("rule_id")
    assert sorted(bronze.index) == list(range(1, len(lines) + 1)), "bronze holds every line the file's bytes hold"

    # exactly one place per line
    assert not set(silver.index) & set(dlq.index)
    assert not silver.index.duplicated().any() and not dlq.index.duplicated().any()
    elsewhere = [n for n in range(1, len(lines) + 1) if n not in silver.index and n not in dlq.index]
    assert len(elsewhere) == dq.loc["transaction_id.unique", "failed"], "lines in neither silver nor the DLQ are the counted duplicates"
    kept_ids = set(silver["transaction_id"])
    for n in elsewhere:
        assert strict_loads(lines[n - 1].decode())["transaction_id"] in kept_ids, "a duplicate's first copy is in silver"

    # every DLQ row has reasons, and a line that is not UTF-8 keeps its bytes in bronze
    assert all(len(codes) > 0 for codes in dlq["reason_codes"])
    for n, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            assert "INVALID_UTF8" in list(dlq.loc[n, "reason_codes"]) and bytes(bronze.loc[n, "payload_bytes"]) == raw
            continue
        assert bronze.loc[n, "payload"] == text and bronze.loc[n, "payload_bytes"] is None
        if n in silver.index:
            try:
                record = strict_loads(text)
            except PayloadProblem as problem:
                raise AssertionError(f"line {n} is in silver although {problem}") from None
            _assert_silver_equals_input(silver.loc[n], record)

    # the DLQ shows no name or free text in clear
    counts = Counter(code for codes in dlq["reason_codes"] for code in codes)
    assert sum(counts.values()) >= len(dlq)
    for n in dlq.index:
        try:
            record = json.loads(lines[n - 1])
        except (ValueError, RecursionError):
            continue
        for field in ("description", "counterparty_name"):
            if isinstance(record, dict) and isinstance(record.get(field), str) and len(record[field]) > 3:
                assert record[field] not in dlq.loc[n, "payload"], f"{field} of DLQ line {n} is in clear"


def _ingest(root, files: dict[str, bytes] | None):
    """Deliver `files` for DAY (None: no delivery folder at all) and run bronze and silver with their checks."""
    folder = root / "landing" / "transactions" / f"event_date={DAY}"
    shutil.rmtree(folder, ignore_errors=True)
    if files is not None:
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return materialize(
        [transactions_bronze, validate_transactions, silver_rows_conserved, dlq_rows_have_reason_codes],
        partition_key=DAY, resources=make_resources(root), instance=DagsterInstance.ephemeral(),
    )


def test_a_day_without_records_is_an_empty_partition(fuzz_lake):
    """No delivery folder, an empty file, or a folder without a delivery file: the day is emptied, not a crash."""
    root, records = fuzz_lake
    assert _ingest(root, {"part-00000.jsonl": b"\n".join(records[:3]) + b"\n"}).success  # the day held records before
    for files in (None, {"part-00000.jsonl": b""}, {"_SUCCESS": b""}):
        result = _ingest(root, files)
        assert result.success and all(check_results(result).values()), files
        for table, column in (("transactions_bronze", "event_date"), ("transactions_silver", "ingest_date"), ("transactions_dlq", "event_date")):
            assert len(read_delta(root, table, **{column: DAY})) == 0, (table, files)


def test_dlq_payloads_show_names_and_free_text_only_masked(fuzz_lake):
    """A rejected record's name and reference are the silver token where the value was read, else masked
    to the end of a line cut inside them; bronze keeps the record as delivered."""
    root, records = fuzz_lake
    base = json.loads(records[0])
    rejected = {**base, "currency": "XXX", "counterparty_name": 'Erika "E." Mustermann', "description": "rent for Erika"}
    cut = json.dumps({**base, "description": "Invoice for Max Mustermann, Hauptstrasse 1"})
    lines = [json.dumps(rejected).encode(), cut[: cut.index("Hauptstrasse")].encode()]
    assert _ingest(root, {"part-00000.jsonl": b"\n".join(lines) + b"\n"}).success
    dlq = read_delta(root, "transactions_dlq", event_date=DAY).set_index("source_line")
    assert list(dlq.loc[1, "reason_codes"]) == ["UNKNOWN_CURRENCY"]
    first, second = dlq.loc[1, "payload"], dlq.loc[2, "payload"]
    assert "Mustermann" not in first + second and "Erika" not in first and "Hauptstrasse" not in second
    masked = json.loads(first)
    assert masked["counterparty_name"] == _token(rejected["counterparty_name"]) and masked["description"] == _token(rejected["description"])
    assert masked["currency"] == "XXX" and second.endswith('"description": "pii_masked"')  # cut inside the value: masked to the end
    bronze = read_delta(root, "transactions_bronze", event_date=DAY).set_index("source_line")
    assert bronze.loc[1, "payload"] == lines[0].decode() and dlq["source_payload"].isna().all()
