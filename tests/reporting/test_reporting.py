"""Reconciliation, regulatory snapshots, replay and the operations audit on the session's champion lake
(five batch-ingested days and a promoted champion), with three of its days scored, reconciled and snapshotted."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from compliance_assets.definitions import defs
from compliance_assets.ml.alerts import anomaly_alerts
from compliance_assets.ml.gold import risk_scores_gold
from compliance_assets.reporting.reconciliation import reconcile_with_ledger, reconciliation_before_deadline, reconciliation_differences_explained
from compliance_assets.reporting.snapshots import daily_snapshot_matches_manifest, monthly_snapshot_matches_manifest, regulatory_snapshots, regulatory_snapshots_monthly, verify
from tests.conftest import make_resources
from tests.helpers import CHAMPION_DAYS, check_results, read_delta

REPO = Path(__file__).resolve().parents[2]
REPORTED = CHAMPION_DAYS[1:4]  # scored, reconciled and snapshotted; the last day stays outside
RECONCILE = [reconcile_with_ledger, reconciliation_differences_explained, reconciliation_before_deadline]
SNAPSHOT = [regulatory_snapshots, daily_snapshot_matches_manifest]


def run(lake, assets, partition_key=None, first=None, last=None, **kwargs):
    tags = dict(kwargs.pop("tags", {}))
    if first is not None:
        tags.update({"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
    return materialize(assets, partition_key=partition_key, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), tags=tags, **kwargs)


@pytest.fixture(scope="module")
def base_lake(champion_lake, tmp_path_factory):
    root = tmp_path_factory.mktemp("reporting") / "lake"
    shutil.copytree(champion_lake, root, ignore=shutil.ignore_patterns("stream_day"))
    assert run(root, [risk_scores_gold, anomaly_alerts], first=REPORTED[0], last=REPORTED[-1], raise_on_error=True).success
    assert run(root, [*RECONCILE, *SNAPSHOT], first=REPORTED[0], last=REPORTED[-1], raise_on_error=True).success
    return root


def copy_lake(base: Path, dst: Path) -> Path:
    shutil.copytree(base, dst)
    return dst


def truth(lake: Path, day: str) -> pd.DataFrame:
    return pd.read_csv(lake / "landing" / "truth" / f"{day}.csv", dtype=str, keep_default_na=False)


def breaks(lake: Path, day: str) -> pd.DataFrame:
    return read_delta(lake, "reconciliation_breaks", event_date=day)


def test_reconciliation_explains_the_generators_defects_and_only_flags_missing(base_lake):
    day = REPORTED[0]
    t = truth(base_lake, day)
    b = breaks(base_lake, day)
    unexplained = b[~b["explained"]]
    # the only unexplained differences of an untouched day: transactions booked but never delivered
    assert set(unexplained["category"]) == {"MISSING"}
    assert set(unexplained["transaction_id"]) == set(t.loc[t["defect"] == "missing_from_stream", "transaction_id"])
    # rejected records are explained by their DLQ reason; duplicate copies by deduplication
    rejected = set(b.loc[b["category"] == "REJECTED", "transaction_id"])
    defect_ids = set(t.loc[~t["defect"].isin(["", "late_arrival", "duplicate", "missing_from_stream"]), "transaction_id"])
    assert rejected and rejected <= defect_ids
    assert set(b.loc[b["category"] == "DUPLICATE_DROPPED", "transaction_id"]) == set(t.loc[t["defect"] == "duplicate", "transaction_id"])
    report = read_delta(base_lake, "reconciliation_report", event_date=day)
    ledger = pd.read_csv(base_lake / "landing" / "system_of_record" / f"{day}.csv", dtype={"amount": str})
    assert report.loc[report["category"] == "LEDGER", "transactions"].sum() == len(ledger)
    per_currency = report[report["category"] == "LEDGER"].set_index("currency")["amount"].astype(float).round(2).to_dict()
    expected = ledger.assign(amount=ledger["amount"].astype(float)).groupby("currency")["amount"].sum().round(2).to_dict()
    assert per_currency == pytest.approx(expected)
    late = report.loc[report["category"] == "LATE_ARRIVAL", "transactions"].sum()
    assert late == len(t[(t["defect"] == "late_arrival")])


def test_reconciliation_finds_each_planted_difference(base_lake, spark, tmp_path):
    lake = copy_lake(base_lake, tmp_path / "lake")
    day = REPORTED[1]
    silver_path, gold_path = str(lake / "tables" / "transactions_silver"), str(lake / "tables" / "risk_scores_gold")
    rows = spark.read.format("delta").load(silver_path).where(F.col("ingest_date") == day).orderBy("transaction_id").limit(4).collect()
    removed, changed, unscored, template = rows[0].transaction_id, rows[1].transaction_id, rows[2].transaction_id, rows[3]
    silver = DeltaTable.forPath(spark, silver_path)
    silver.delete(F.col("transaction_id") == removed)
    silver.update(F.col("transaction_id") == changed, {"amount": F.col("amount") + F.lit(1)})
    DeltaTable.forPath(spark, gold_path).delete(F.col("transaction_id") == unscored)
    extra = spark.read.format("delta").load(silver_path).where(F.col("transaction_id") == template.transaction_id).withColumn("transaction_id", F.lit("TX-NOT-IN-LEDGER"))
    extra.localCheckpoint(eager=True).write.format("delta").mode("append").save(silver_path)

    result = run(lake, RECONCILE, day)
    assert result.success
    assert check_results(result)[("reconciliation_report", "reconciliation_differences_explained")] is False
    b = breaks(lake, day)
    unexplained = b[~b["explained"]].groupby("category")["transaction_id"].apply(set).to_dict()
    t = truth(lake, day)
    assert unexplained == {
        "MISSING": {removed, *t.loc[t["defect"] == "missing_from_stream", "transaction_id"]},
        "EXTRA": {"TX-NOT-IN-LEDGER"},
        "AMOUNT_MISMATCH": {changed},
        "NOT_SCORED": {unscored, "TX-NOT-IN-LEDGER"},
        "SCORED_NOT_IN_SILVER": {removed},  # its gold row is still there
    }
    mismatch = b[b["category"] == "AMOUNT_MISMATCH"].iloc[0]
    assert float(mismatch["silver_amount"]) - float(mismatch["ledger_amount"]) == pytest.approx(1.0)
    # the UI's row counts are the rows written (the report has a row per category, explained flag and currency)
    counts = {m.asset_key.path[-1]: m.metadata["dagster/row_count"].value for m in result.asset_materializations_for_node("reconcile_with_ledger")}
    assert counts == {"reconciliation_report": len(read_delta(lake, "reconciliation_report", event_date=day)), "reconciliation_breaks": len(b)}, counts


def test_reconciliation_deadline_check_reports_first_completion(base_lake, spark, tmp_path):
    report = read_delta(base_lake, "reconciliation_report", event_date=REPORTED[0])
    deadline = pd.Timestamp(REPORTED[0], tz="UTC") + pd.Timedelta(days=1, hours=6)
    utc = lambda c: pd.to_datetime(report[c], utc=True)  # noqa: E731 (delta-rs reads Spark timestamps as UTC)
    assert (utc("deadline") == deadline).all()
    # reconciled today, long after that April deadline: the check says so (a warning in a backfill, an error otherwise)
    assert (utc("first_reconciled_at") > deadline).all()
    lake = copy_lake(base_lake, tmp_path / "lake")
    late = run(lake, RECONCILE, REPORTED[0])
    assert check_results(late)[("reconciliation_report", "reconciliation_before_deadline")] is False
    # a day first reconciled on time stays on time when it is re-run later (the first completion counts)
    path = str(lake / "tables" / "reconciliation_report")
    DeltaTable.forPath(spark, path).update(F.col("event_date") == REPORTED[0], {"first_reconciled_at": F.col("deadline") - F.expr("INTERVAL 1 HOUR")})
    on_time = run(lake, RECONCILE, REPORTED[0])
    assert check_results(on_time)[("reconciliation_report", "reconciliation_before_deadline")] is True
    assert check_results(on_time)[("reconciliation_report", "reconciliation_differences_explained")] is False  # the generator's missing transactions


def test_snapshot_is_write_once_superseded_versions_stay_readable_and_tampering_fails(base_lake, spark, tmp_path):
    lake = copy_lake(base_lake, tmp_path / "lake")
    day = REPORTED[0]
    refused = run(lake, SNAPSHOT, day, raise_on_error=False)
    assert not refused.success
    message = str([e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error.message)
    assert "write-once" in message and "supersede_reason" in message
    manifest = read_delta(lake, "regulatory_snapshot_manifest")
    assert len(manifest[manifest["period"] == day]) == 1  # nothing written by the refused run

    superseded = run(lake, SNAPSHOT, day, run_config={"ops": {"regulatory_snapshots": {"config": {"supersede_reason": "test: re-issue"}}}})
    assert superseded.success and all(check_results(superseded).values())
    manifest = read_delta(lake, "regulatory_snapshot_manifest")
    entries = manifest[manifest["period"] == day].sort_values("snapshot_version")
    assert list(entries["snapshot_version"]) == [1, 2]
    assert entries["sha256"].nunique() == 1 and bool(entries.iloc[1]["same_content_as_superseded"])
    assert entries.iloc[1]["supersede_reason"] == "test: re-issue"
    rows = read_delta(lake, "regulatory_snapshots", period=day)
    counts = rows.groupby("snapshot_version").size().to_dict()
    assert counts[1] == counts[2] == int(entries.iloc[0]["row_count"]) > 0
    gold = read_delta(lake, "risk_scores_gold", ingest_date=day)
    assert counts[1] == len(gold)
    alerts = read_delta(lake, "anomaly_alerts", ingest_date=day)
    assert rows[rows["snapshot_version"] == 1]["alerted"].sum() == len(alerts)

    # the independent verifier (delta-rs + Python, no Spark) recomputes the manifest's hashes
    independent = verify_independently(lake, day)
    assert [(r["version"], r["ok"], r["sha256"]) for r in independent] == [(1, True, entries.iloc[0]["sha256"]), (2, True, entries.iloc[1]["sha256"])]

    # tampering with a stored snapshot (one score changed by the smallest step a double has) fails verification
    # of that version only, in Spark and in the independent verifier
    path = str(lake / "tables" / "regulatory_snapshots")
    victim = rows[rows["snapshot_version"] == 1].iloc[0]
    nudged = float(np.nextafter(victim["risk_score"], 2.0))
    DeltaTable.forPath(spark, path).update((F.col("period") == day) & (F.col("snapshot_version") == 1) & (F.col("transaction_id") == victim["transaction_id"]), {"risk_score": F.lit(nudged)})
    results = verify(spark, make_resources(lake)["lake"], "regulatory_snapshots", [day])
    assert [(r["version"], r["ok"]) for r in results] == [(1, False), (2, True)]
    assert "sha256" in results[0]["problem"] and "row_count" not in results[0]["problem"]
    assert [(r["version"], r["ok"], r["problem"]) for r in verify_independently(lake, day)] == [(1, False, "sha256"), (2, True, "-")]


def verify_independently(lake: Path, day: str) -> list[dict]:
    """scripts/verify_snapshot.py run as an auditor would: its own process, no platform imports."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "verify_snapshot.py"), "--lake", str(lake), "--period", day], capture_output=True, text=True)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == (0 if all(r["ok"] for r in results) else 1), done.stderr
    return results


def test_monthly_snapshot_covers_the_month_and_verifies(base_lake, tmp_path):
    lake = copy_lake(base_lake, tmp_path / "lake")
    result = run(lake, [regulatory_snapshots_monthly, monthly_snapshot_matches_manifest], "2026-04-01")
    assert result.success and all(check_results(result).values())
    rows = read_delta(lake, "regulatory_snapshots_monthly")
    daily = read_delta(lake, "regulatory_snapshots")
    assert len(rows) == len(daily[daily["snapshot_version"] == 1]) > 0
    assert set(rows["ingest_date"].astype(str)) == set(REPORTED)


def test_replay_reproduces_the_snapshot_hashes_leaves_other_days_untouched_and_is_audited(base_lake, tmp_path):
    lake = copy_lake(base_lake, tmp_path / "lake")
    replay = defs.get_job_def("replay")
    resources = make_resources(lake)
    first, last, outside = REPORTED[0], REPORTED[1], REPORTED[2]
    gold_outside = read_delta(lake, "risk_scores_gold", ingest_date=outside).sort_values("transaction_id").reset_index(drop=True)
    silver_outside = read_delta(lake, "transactions_silver", ingest_date=outside).sort_values("transaction_id").reset_index(drop=True)
    range_tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}

    untagged = replay.execute_in_process(resources=resources, instance=DagsterInstance.ephemeral(), tags=range_tags, raise_on_error=False)
    assert not untagged.success
    assert "requested_by" in str([e for e in untagged.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error.message)

    tags = {**range_tags, "requested_by": "analyst@bank.example", "incident_id": "INC-DATA01-42", "reason": "bug fix in enrichment"}
    assert replay.execute_in_process(resources=resources, instance=DagsterInstance.ephemeral(), tags=tags).success

    manifest = read_delta(lake, "regulatory_snapshot_manifest")
    for day in (first, last):
        entries = manifest[manifest["period"] == day].sort_values("snapshot_version")
        assert list(entries["snapshot_version"]) == [1, 2]
        assert entries["sha256"].nunique() == 1, "a replay of an unchanged range must reproduce the snapshot hash"
        assert entries.iloc[-1]["supersede_reason"].startswith("replay for incident INC-DATA01-42")
    assert list(manifest.loc[manifest["period"] == outside, "snapshot_version"]) == [1]
    pd.testing.assert_frame_equal(read_delta(lake, "risk_scores_gold", ingest_date=outside).sort_values("transaction_id").reset_index(drop=True), gold_outside)
    pd.testing.assert_frame_equal(read_delta(lake, "transactions_silver", ingest_date=outside).sort_values("transaction_id").reset_index(drop=True), silver_outside)

    audit = read_delta(lake, "operations_audit")
    replays = audit[audit["operation"] == "REPLAY"]
    assert set(replays["asset"]) >= {"transactions_silver", "risk_scores_gold", "anomaly_alerts", "regulatory_snapshots", "reconciliation_report"}
    assert (replays["incident_id"] == "INC-DATA01-42").all() and (replays["requested_by"] == "analyst@bank.example").all()
    assert set(zip(replays["partition_start"], replays["partition_end"])) == {(first, last)}
    assert replays["dagster_run_id"].nunique() == 1
    # the replay re-published the range's BI serving tables (the embedded database beside the lake), and only the range
    with sqlite3.connect(lake / "serving" / "compliance.db") as db:
        served = dict(db.execute("SELECT partition_day, COUNT(*) FROM risk_scores_gold GROUP BY partition_day").fetchall())
    assert served == {day: len(read_delta(lake, "risk_scores_gold", ingest_date=day)) for day in (first, last)}
