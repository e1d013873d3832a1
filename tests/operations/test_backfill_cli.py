"""A historical backfill from the command line: two days of foreign (legacy core-banking) files go
through the source mapping into bronze and on into silver, the DLQ and dq_results, as ONE
partition-range run of `dagster asset materialize` against the code location's Definitions."""

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.quality import DUPLICATE
from tests.helpers import read_delta

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "legacy_core_banking"
DAYS = [dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
N_VALID = 40  # valid records per day; one bad record per day keeps every critical rule above 95%
ASSETS = "kyc_profiles,account_limits,watchlists,fx_rates,merchant_profiles,transactions_bronze,transactions_silver,transactions_dlq,dq_results"


def _german_amount(cents: int) -> str:
    return f"{cents // 100:,}".replace(",", ".") + f",{cents % 100:02d}"


def legacy_export(day: dt.date, n_valid: int) -> list[list[str]]:
    """Rows of the legacy export (the example file's columns and conventions: Berlin local time,
    numeric account and merchant numbers, decimal comma, the core system's channel codes)."""
    rows = []
    for i in range(n_valid):
        local = dt.datetime.combine(day, dt.time(6)) + dt.timedelta(seconds=i * 15 * 3600 // n_valid + i)  # 06:00-21:00 CET
        row = {
            "BUCHUNGS_REF": f"LC-{day:%Y%m%d}-{i + 1:04d}", "BUCHUNGSZEIT": local.strftime("%d.%m.%Y %H:%M:%S"),
            "KONTO_NR": str(1 + (i * 7) % 50), "HAENDLER_NR": "", "GEGENKONTO": "", "BETRAG": _german_amount(199 + (i * 379_123) % 250_000),
            "WAEHRUNG": "EUR", "KANAL": "", "LAND": "DE", "MCC": "", "KENNZEICHEN": "", "VERWENDUNGSZWECK": f"Buchung {i + 1}",
        }
        if i % 3 == 0:
            row.update(KANAL="KP", HAENDLER_NR=str(1 + i % 30), MCC="5411")
        elif i % 3 == 1:
            row.update(KANAL="UEB", GEGENKONTO=f"CP{i:07d}", KENNZEICHEN="NEW_DEVICE|VPN" if i % 2 else "")
        else:
            row.update(KANAL="KNP", HAENDLER_NR=str(1 + i % 30), MCC="5999")
        rows.append(list(row.values()))
    return rows


def write_legacy_day(exports: Path, header: list[str], day: dt.date) -> dict:
    """Day 1: the valid rows + one unconvertible amount; day 2: + one unknown channel code and a
    second copy of its first record. Returns the expected tallies."""
    rows = legacy_export(day, N_VALID)
    bad = list(rows[1])
    bad[0] = f"LC-{day:%Y%m%d}-BAD"
    if day == DAYS[0]:
        bad[header.index("BETRAG")] = "abc"
        extra, duplicates = [bad], 0
    else:
        bad[header.index("KANAL")] = "XX"
        extra, duplicates = [bad, list(rows[0])], 1
    lines = [header, *rows, *extra]
    (exports / f"txn_export_{day:%Y%m%d}.csv").write_text("".join(";".join(r) + "\n" for r in lines), encoding="utf-8")
    return {"bronze": len(lines) - 1, "silver": N_VALID, "dlq": 1, "duplicates": duplicates}


def test_a_mapped_historical_backfill_runs_from_the_cli_as_one_partition_range_run(tmp_path):
    lake, home = tmp_path / "lake", tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")

    # the days' reference snapshots (KYC, limits, FX, ...) from the generator; its native
    # transaction deliveries are removed so only the mapped legacy files can feed bronze
    for day in DAYS:
        generate_day(SynthConfig(seed=3, events_per_day=200), lake / "landing", day)
    shutil.rmtree(lake / "landing" / "transactions")

    # the legacy exports where the example mapping's data path points (relative to the landing area), and the
    # mapping in a mappings folder of its own (SOURCE_MAPPINGS_DIR: mappings are read from nowhere else)
    source = lake / "landing" / "legacy_core"
    (source / "exports").mkdir(parents=True)
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    shutil.copy(EXAMPLE / "mapping.yaml", mappings / "legacy_core.yaml")
    header = (EXAMPLE / "exports" / "txn_export_20260302.csv").read_text(encoding="utf-8").splitlines()[0].split(";")
    expected = {str(day): write_legacy_day(source / "exports", header, day) for day in DAYS}

    first, last = str(DAYS[0]), str(DAYS[-1])
    env = {
        **os.environ,
        "LAKE_ROOT": str(lake), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "DAGSTER_HOME": str(home),
        "SPARK_MASTER": "local[2]", "SPARK_SHUFFLE_PARTITIONS": "2", "SPARK_DRIVER_MEMORY": "2g", "SPARK_UI_ENABLED": "false",
        "PII_HASH_SALT": "test-salt", "SOURCE_MAPPINGS_DIR": str(mappings),
    }
    config = {"ops": {"transactions_bronze": {"config": {"source_mapping": "legacy_core.yaml"}}}}  # relative to SOURCE_MAPPINGS_DIR
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "dagster"), "asset", "materialize", "-m", "compliance_assets.definitions",
         "--select", ASSETS, "--partition-range", f"{first}...{last}", "--config-json", json.dumps(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"

    bronze = read_delta(lake, "transactions_bronze")
    silver = read_delta(lake, "transactions_silver")
    dlq = read_delta(lake, "transactions_dlq")
    dq = read_delta(lake, "dq_results")
    assert set(bronze["source"]) == {"legacy_core"}, "every bronze record came through the mapping"
    assert sorted(bronze["event_date"].astype(str).unique()) == [first, last]
    for day, want in expected.items():
        b = bronze[bronze["event_date"].astype(str) == day]
        s = silver[silver["ingest_date"].astype(str) == day]
        d = dlq[dlq["event_date"].astype(str) == day]
        dup = int(dq[(dq["event_date"].astype(str) == day) & (dq["rule_id"] == DUPLICATE.rule_id)]["failed"].sum())
        got = {"bronze": len(b), "silver": len(s), "dlq": len(d), "duplicates": dup}
        assert got == want, day
        assert len(s) + len(d) + dup == len(b), f"{day}: silver + DLQ + duplicates must conserve bronze's records"
        assert b["source_payload"].str.contains("BUCHUNGS_REF").all(), "the original row is kept in bronze"
        assert set(s["transaction_id"]) == {f"LC-{day.replace('-', '')}-{i:04d}" for i in range(1, N_VALID + 1)}
        assert set(s["account_id"]) <= {f"ACC{i:08d}" for i in range(1, 51)}
    assert sorted(code for codes in dlq["reason_codes"] for code in codes) == ["UNKNOWN_CHANNEL", "WRONG_TYPE:amount"]

    # ONE run in the instance, tagged with the partition range, materialising both partitions
    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        assert len(runs) == 1, [r.run_id for r in runs]
        run = runs[0]
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags[ASSET_PARTITION_RANGE_START_TAG] == first and run.tags[ASSET_PARTITION_RANGE_END_TAG] == last
        for asset in ("transactions_bronze", "transactions_silver", "kyc_profiles"):
            assert instance.get_materialized_partitions(AssetKey(asset)) == {first, last}, asset
    finally:
        instance.dispose()
