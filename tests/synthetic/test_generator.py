"""Tests of the synthetic landing-data generator (pure Python, no Spark)."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from decimal import Decimal
from collections import Counter
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from compliance_assets.synthetic import DEFECT_KINDS, SCENARIOS, SynthConfig, generate_day, generate_days
from compliance_assets.synthetic.synth_cli import main as cli_main
from contracts import REFERENCE_TABLES, json_validator, load_contract

DAY = dt.date(2026, 3, 2)
CONFIG = SynthConfig(seed=7, events_per_day=3_000, rows_per_file=1_000, anomaly_rate=0.03)
FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER
TX_VALIDATOR = json_validator("transactions")  # exact decimals: validate records parsed with parse_float=Decimal


def haversine_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def typed(row: dict[str, str], contract: dict) -> dict:
    """A CSV row typed by its contract: '' -> null (omitted if not required), numbers, booleans."""
    out = {}
    for name, prop in contract["properties"].items():
        value = row[name]
        if value == "":
            if name in contract.get("required", []):
                out[name] = value
            continue
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        if "integer" in types:
            out[name] = int(value)
        elif "number" in types:
            out[name] = float(value)
        elif "boolean" in types:
            assert value in ("true", "false"), value
            out[name] = value == "true"
        else:
            out[name] = value
    return out


class Day:
    """One generated day read back: stream lines joined with their truth rows."""

    def __init__(self, root: Path, day: dt.date = DAY):
        self.root, self.day = root, day
        self.folder = root / "transactions" / f"event_date={day.isoformat()}"
        self.manifest = json.loads((self.folder / "_manifest.json").read_text())
        truth = read_csv(root / "truth" / f"{day.isoformat()}.csv")
        self.missing = [t for t in truth if t["file"] == ""]
        self.truth = [t for t in truth if t["file"] != ""]
        self.lines: list[str] = []
        for f in self.manifest["files"]:
            self.lines += (self.folder / f["file"]).read_text().split("\n")[:-1]
        assert len(self.lines) == len(self.truth)
        self.records = [json.loads(line) if t["defect"] in ("", "duplicate", "late_arrival") else None for line, t in zip(self.lines, self.truth)]
        self.clean = [(r, t) for r, t in zip(self.records, self.truth) if r is not None]
        self.kyc = {r["account_id"]: r for r in read_csv(root / "reference" / "kyc_profiles" / f"{day.isoformat()}.csv")}
        self.fx = {r["currency"]: float(r["rate_to_base"]) for r in read_csv(root / "reference" / "fx_rates" / f"{day.isoformat()}.csv")}
        self.sor = {r["transaction_id"]: r for r in read_csv(root / "system_of_record" / f"{day.isoformat()}.csv")}

    def scenario(self, name: str) -> list[dict]:
        return [r for r, t in self.clean if t["scenario"] == name]

    def base_amount(self, rec: dict) -> float:
        return round(rec["amount"] * self.fx[rec["currency"]], 2)


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    generate_day(CONFIG, root, DAY)
    return root


@pytest.fixture(scope="module")
def day(landing) -> Day:
    return Day(landing)


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_bytes_and_seed_sensitive(tmp_path, landing):
    generate_day(CONFIG, tmp_path / "again", DAY)
    assert all_files(tmp_path / "again") == all_files(landing)
    generate_day(SynthConfig(seed=8, events_per_day=3_000, rows_per_file=1_000, anomaly_rate=0.03), tmp_path / "other", DAY)
    part = f"transactions/event_date={DAY}/part-00000.jsonl"
    assert (tmp_path / "other" / part).read_bytes() != (landing / part).read_bytes()


def test_days_are_independent_and_entities_stable(tmp_path, landing):
    nxt = DAY + dt.timedelta(days=1)
    summaries = generate_days(CONFIG, tmp_path / "two", [DAY, nxt])
    assert [s.day for s in summaries] == [DAY.isoformat(), nxt.isoformat()]
    generate_day(CONFIG, tmp_path / "alone", nxt)
    two, alone = all_files(tmp_path / "two"), all_files(tmp_path / "alone")
    assert {k: v for k, v in two.items() if nxt.isoformat() in k} == alone
    kyc1 = read_csv(tmp_path / "two" / "reference" / "kyc_profiles" / f"{DAY}.csv")
    kyc2 = read_csv(tmp_path / "two" / "reference" / "kyc_profiles" / f"{nxt}.csv")
    assert [(r["account_id"], r["customer_name"], r["typical_amount"]) for r in kyc1] == [(r["account_id"], r["customer_name"], r["typical_amount"]) for r in kyc2]
    fx1 = read_csv(tmp_path / "two" / "reference" / "fx_rates" / f"{DAY}.csv")
    fx2 = read_csv(tmp_path / "two" / "reference" / "fx_rates" / f"{nxt}.csv")
    for a, b in zip(fx1, fx2):
        assert a["currency"] == b["currency"]
        assert abs(float(a["rate_to_base"]) / float(b["rate_to_base"]) - 1) < 0.01  # slow drift


def test_exact_defect_counts(day):
    got = Counter(t["defect"].split(":")[0] for t in day.truth if t["defect"])
    got["missing_from_stream"] = len(day.missing)
    expected = {k: CONFIG.defect_count(k) for k in DEFECT_KINDS}
    assert dict(got) == {k: v for k, v in expected.items() if v}
    assert day.manifest["defects"] == expected
    assert len(day.lines) == CONFIG.events_per_day == day.manifest["total_lines"]


def test_defects_only_on_normal_transactions(day):
    for t in day.truth:
        if t["defect"]:
            assert t["scenario"] == ""
    assert {t["scenario"] for t in day.truth} - {""} == set(SCENARIOS)


def test_clean_lines_validate(day):
    for rec, t in day.clean:
        errors = list(TX_VALIDATOR.iter_errors(json.loads(json.dumps(rec), parse_float=Decimal)))
        assert not errors, (t, [e.message for e in errors])
        assert rec["event_time"].endswith("Z")
        assert rec["event_time"][:10] == t["event_date"]
        assert rec["amount"] == round(rec["amount"], 2)


def test_defective_lines_fail_as_expected(day):
    for line, t in zip(day.lines, day.truth):
        kind, _, field = t["defect"].partition(":")
        if kind in ("", "duplicate", "late_arrival"):
            continue
        if kind == "malformed_json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
            continue
        errors = list(TX_VALIDATOR.iter_errors(json.loads(line, parse_float=Decimal)))
        assert len(errors) == 1, (t, [e.message for e in errors])
        e = errors[0]
        if kind == "missing_required":
            assert e.validator == "required" and repr(field) in e.message
        elif kind == "wrong_type":
            assert e.validator == "type" and list(e.path) == [field]
        else:
            expected = {"negative_amount": ("exclusiveMinimum", "amount"), "absurd_amount": ("maximum", "amount"), "unknown_currency": ("enum", "currency")}[kind]
            assert (e.validator, list(e.path)) == (expected[0], [expected[1]])


def test_duplicates_and_late_arrivals(day):
    first_seen: dict[str, int] = {}
    for i, (line, t) in enumerate(zip(day.lines, day.truth)):
        if t["defect"] == "duplicate":
            src = first_seen[t["transaction_id"]]
            assert day.lines[src] == line and day.truth[src]["defect"] == ""
        else:
            first_seen.setdefault(t["transaction_id"], i)
        if t["defect"] == "late_arrival":
            lag = (DAY - dt.date.fromisoformat(t["event_date"])).days
            assert 1 <= lag <= 3
    ids = [t["transaction_id"] for t in day.truth if t["defect"] != "duplicate"]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("table", [*REFERENCE_TABLES, "system_of_record", "transaction_outcomes"])
def test_csvs_validate_against_contracts(landing, table):
    folder = {"system_of_record": "system_of_record", "transaction_outcomes": "outcomes"}.get(table, f"reference/{table}")
    path = landing / folder / f"{DAY}.csv"
    contract = load_contract(table)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == list(contract["properties"])
    validator = Draft202012Validator(contract, format_checker=FORMAT_CHECKER)
    rows = read_csv(path)
    assert rows
    for row in rows:
        errors = list(validator.iter_errors(typed(row, contract)))
        assert not errors, (row, [e.message for e in errors])
    key = contract["x-natural-key"]
    assert len({tuple(r[k] for k in key) for r in rows}) == len(rows)


def test_fx_rates_file(day):
    currencies = load_contract("transactions")["properties"]["currency"]["enum"]
    rows = read_csv(day.root / "reference" / "fx_rates" / f"{DAY}.csv")
    assert [r["currency"] for r in rows] == currencies
    assert {r["rate_date"] for r in rows} == {DAY.isoformat()}
    assert day.fx["EUR"] == 1.0


def test_referenced_entities_exist(day):
    merchants = {r["merchant_id"] for r in read_csv(day.root / "reference" / "merchant_profiles" / f"{DAY}.csv")}
    for rec, _ in day.clean:
        assert rec["account_id"] in day.kyc
        if rec["channel"] in ("CARD_PRESENT", "CARD_NOT_PRESENT", "ATM"):
            assert rec["merchant_id"] in merchants and rec["mcc_code"]
            assert rec["counterparty_id"] is None
        else:
            assert rec["merchant_id"] is None and rec["counterparty_id"].startswith("CP") and rec["counterparty_name"]


def test_impossible_travel(day):
    by_account: dict[str, list[tuple[dt.datetime, dict, dict]]] = {}
    for rec, t in day.clean:
        if t["defect"] != "late_arrival" and rec["latitude"] is not None:
            ts = dt.datetime.fromisoformat(rec["event_time"].replace("Z", "+00:00"))
            by_account.setdefault(rec["account_id"], []).append((ts, rec, t))
    labelled = 0
    for rows in by_account.values():
        rows.sort(key=lambda x: (x[0], x[1]["transaction_id"]))
        for (t0, prev, _), (t1, cur, truth) in zip(rows, rows[1:]):
            if truth["scenario"] == "impossible_travel":
                km = haversine_km(prev["latitude"], prev["longitude"], cur["latitude"], cur["longitude"])
                speed = km / (max((t1 - t0).total_seconds(), 60) / 3600)
                assert speed > 1000, (prev, cur)
                assert (t1 - t0).total_seconds() < 90 * 60
                labelled += 1
    assert labelled == len(day.scenario("impossible_travel")) > 0


def test_structuring(day):
    threshold = {r["account_id"]: float(r["reporting_threshold"]) for r in read_csv(day.root / "reference" / "account_limits" / f"{DAY}.csv")}
    rows = day.scenario("structuring")
    assert rows
    per_account = Counter(r["account_id"] for r in rows)
    assert all(3 <= n <= 6 for n in per_account.values())
    for r in rows:
        assert r["currency"] == "EUR" and r["channel"] == "TRANSFER"
        assert 0.9 * threshold[r["account_id"]] <= day.base_amount(r) < threshold[r["account_id"]]


def test_watchlisted_counterparty(day):
    listed = {r["entity_id"] for r in read_csv(day.root / "reference" / "watchlists" / f"{DAY}.csv") if r["entity_type"] == "COUNTERPARTY"}
    rows = day.scenario("watchlisted_counterparty")
    assert rows and all(r["counterparty_id"] in listed and r["channel"] == "TRANSFER" for r in rows)
    normal = [r for r, t in day.clean if t["scenario"] == "" and r["counterparty_id"]]
    assert not any(r["counterparty_id"] in listed for r in normal)


def test_amount_spike_and_dormant_reactivation(day):
    spikes = day.scenario("amount_spike")
    assert spikes
    for r in spikes:
        assert day.base_amount(r) >= 10 * float(day.kyc[r["account_id"]]["typical_amount"])
    dormant = day.scenario("dormant_reactivation")
    assert dormant
    for r in dormant:
        last = dt.date.fromisoformat(day.kyc[r["account_id"]]["last_activity_date"])
        assert (DAY - last).days >= 200
        assert day.base_amount(r) >= 5 * float(day.kyc[r["account_id"]]["typical_amount"])
    dormant_accounts = {a for a, k in day.kyc.items() if (DAY - dt.date.fromisoformat(k["last_activity_date"])).days >= 200}
    assert not any(r["account_id"] in dormant_accounts for r, t in day.clean if t["scenario"] == "" and t["defect"] != "late_arrival")


def test_velocity_burst_and_compromised_merchant(day):
    bursts: dict[str, list[dict]] = {}
    for r in day.scenario("velocity_burst"):
        bursts.setdefault(r["account_id"], []).append(r)
    assert bursts
    for rows in bursts.values():
        times = sorted(dt.datetime.fromisoformat(r["event_time"].replace("Z", "+00:00")) for r in rows)
        assert 8 <= len(rows) <= 15 and (times[-1] - times[0]).total_seconds() <= 600
        assert all(r["channel"] == "CARD_NOT_PRESENT" for r in rows)
    rows = day.scenario("compromised_merchant")
    assert rows and len({r["merchant_id"] for r in rows}) == 1
    assert len({r["account_id"] for r in rows}) == len(rows)
    for r in rows:
        k = day.kyc[r["account_id"]]
        assert haversine_km(float(k["home_latitude"]), float(k["home_longitude"]), r["delivery_latitude"], r["delivery_longitude"]) > 1000


def test_system_of_record_is_every_genuine_transaction(day):
    stream_ids = {t["transaction_id"] for t in day.truth}
    clean = {r["transaction_id"]: r for r, _ in day.clean}
    assert set(clean) <= set(day.sor)
    assert stream_ids <= set(day.sor)
    assert len(day.sor) == day.manifest["transactions"] == len(stream_ids) + len(day.missing)
    for m in day.missing:
        assert m["transaction_id"] in day.sor and m["transaction_id"] not in stream_ids
    for tid, r in clean.items():
        s = day.sor[tid]
        assert (s["event_time"], s["account_id"], float(s["amount"]), s["currency"]) == (r["event_time"], r["account_id"], r["amount"], r["currency"])


def test_outcomes_reference_real_transactions(day):
    scenario = {t["transaction_id"] for t in day.truth if t["scenario"]}
    rows = read_csv(day.root / "outcomes" / f"{DAY}.csv")
    labels = Counter(r["label"] for r in rows)
    assert labels["1"] > 0 and labels["0"] > 0
    for r in rows:
        assert r["transaction_id"] in day.sor
        assert (r["label"] == "1") == (r["transaction_id"] in scenario)
        decided = dt.datetime.fromisoformat(r["decision_time"].replace("Z", "+00:00"))
        happened = dt.datetime.fromisoformat(day.sor[r["transaction_id"]]["event_time"].replace("Z", "+00:00"))
        assert dt.timedelta(days=1) <= decided - happened <= dt.timedelta(days=10)


def test_files_split_and_success_marker(day):
    parts = sorted(day.folder.glob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert [f["lines"] for f in day.manifest["files"]] == [1_000, 1_000, 1_000]
    for p in parts:
        text = p.read_text()
        assert text.endswith("\n") and text.count("\n") == 1_000
    assert (day.folder / "_SUCCESS").read_bytes() == b""
    assert day.manifest["scenarios"] == {s: len(day.scenario(s)) for s in SCENARIOS}


def test_uneven_split_and_rerun_replaces_delivery(tmp_path):
    cfg = SynthConfig(seed=1, events_per_day=1_200, rows_per_file=500)
    generate_day(cfg, tmp_path, DAY)
    folder = tmp_path / "transactions" / f"event_date={DAY}"
    summary = generate_day(SynthConfig(seed=1, events_per_day=1_200, rows_per_file=1_000), tmp_path, DAY)
    parts = sorted(folder.glob("part-*.jsonl"))
    assert [p.read_text().count("\n") for p in parts] == [1_000, 200]
    assert summary.lines == 1_200 and sum(summary.defects.values()) > 0
    assert json.loads(json.dumps(summary.__dict__))["day"] == DAY.isoformat()


def test_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANDING_ROOT", str(tmp_path / "env"))
    assert cli_main(["--start", "2026-01-10", "--days", "2", "--events-per-day", "600", "--seed", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("2026-01-10") and out[1].startswith("2026-01-11")
    assert (tmp_path / "env" / "transactions" / "event_date=2026-01-11" / "_SUCCESS").exists()
