"""The streaming job end to end on real components: a KRaft Kafka broker, Spark Structured Streaming,
Delta, MLflow's registry and a Dagster instance.

The base lake holds five batch-ingested days, a trained and promoted champion and the stream day's
reference data; each test streams the sixth day into its own copy of it.
"""

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.ml.alerts import HIGH_RISK, anomaly_alerts
from compliance_assets.ml.gold import risk_scores_gold
from compliance_assets.streaming.job import transaction_stream_job
from compliance_assets.streaming.loadgen import create_topic, delivery_lines, publish
from compliance_assets.streaming.stream import StreamOptions, run_stream
from compliance_assets.synthetic.writer import generate_day
from resources.kafka import KafkaResource
from tests.conftest import make_resources
from tests.helpers import STREAM_CONFIG, STREAM_DAY, read_delta

REPO = Path(__file__).resolve().parents[2]
GOLD_CONTENT = ["transaction_id", "event_time", "event_date", "risk_score", "risk_band", "top_features", "model_version", "dq_status"]


def run(lake, assets, partition_key, **kwargs):
    return materialize(assets, partition_key=partition_key, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), **kwargs)


@pytest.fixture(scope="module")
def base_lake(champion_lake):
    """The shared lake with five ingested days and a champion (tests/conftest.py)."""
    return champion_lake


def copy_lake(base: Path, dst: Path, with_stream_day_files: bool = False) -> Path:
    shutil.copytree(base, dst, ignore=shutil.ignore_patterns("stream_day"))
    if with_stream_day_files:
        src = base / "stream_day" / "transactions" / f"event_date={STREAM_DAY}"
        shutil.copytree(src, dst / "landing" / "transactions" / f"event_date={STREAM_DAY}")
    return dst


def stream_lines(base: Path) -> list[str]:
    return delivery_lines(base / "stream_day" / "transactions" / f"event_date={STREAM_DAY}")


def manifest(base: Path) -> dict:
    return json.loads((base / "stream_day" / "transactions" / f"event_date={STREAM_DAY}" / "_manifest.json").read_text())


def delivered(lake: Path, table: str) -> pd.DataFrame:
    column = "event_date" if table in ("transactions_bronze", "transactions_dlq") else "ingest_date"
    return read_delta(lake, table, **{column: STREAM_DAY})


def stream_duplicates(lake: Path) -> int:
    progress = read_delta(lake, "stream_batches")
    return int(progress.drop_duplicates(["stream", "batch_id"])["batch_duplicates"].sum())


def assert_conserved(lake: Path, n_lines: int) -> dict[str, pd.DataFrame]:
    """Every published line is in bronze exactly once and ends in silver, the DLQ or the duplicate
    count; every silver row has exactly one score and every alert one transaction."""
    t = {name: delivered(lake, name) for name in ("transactions_bronze", "transactions_silver", "transactions_dlq", "risk_scores_gold", "anomaly_alerts")}
    bronze, silver, dlq, gold, alerts = t.values()
    assert len(bronze) == n_lines and bronze["ingest_id"].is_unique
    assert len(silver) + len(dlq) + stream_duplicates(lake) == len(bronze)
    assert silver["transaction_id"].is_unique and dlq["ingest_id"].is_unique
    assert dlq["reason_codes"].map(len).gt(0).all()
    assert len(gold) == len(silver) and set(gold["transaction_id"]) == set(silver["transaction_id"])
    assert gold["risk_score"].between(0, 1).all() and gold["latency_ms"].ge(0).all()
    assert alerts["alert_id"].is_unique and set(alerts["transaction_id"]) <= set(gold["transaction_id"])
    high = set(gold.loc[gold["risk_band"] == "HIGH", "transaction_id"])
    assert high and high <= set(alerts.loc[alerts["reasons"].map(lambda r: HIGH_RISK in list(r)), "transaction_id"])
    return t


def test_file_stream_through_dagster_gives_the_batch_paths_rows(base_lake, tmp_path):
    """The landing folder streamed file by file (one micro-batch each) by the Dagster job gives the
    silver, DLQ, gold and alert rows the daily assets give for the same delivery: the per-account
    windows see every earlier micro-batch."""
    batch_lake = copy_lake(base_lake, tmp_path / "batch", with_stream_day_files=True)
    stream_lake = copy_lake(base_lake, tmp_path / "stream", with_stream_day_files=True)
    assert run(batch_lake, [transactions_bronze, validate_transactions, risk_scores_gold, anomaly_alerts], STREAM_DAY, raise_on_error=True).success

    config = {"source": "files", "available_now": True, "max_files_per_trigger": 1, "days_glob": STREAM_DAY}
    result = transaction_stream_job.execute_in_process(
        run_config={"ops": {"run_transaction_stream": {"config": config}}}, resources=make_resources(stream_lake), instance=DagsterInstance.ephemeral()
    )
    assert result.success
    reported = [m for m in result.asset_materializations_for_node("run_transaction_stream")]
    gold_events = [m for m in reported if m.asset_key.to_user_string() == "risk_scores_gold"]
    assert {m.metadata["micro_batch"].value for m in gold_events} == set(range(len(manifest(base_lake)["files"])))  # one batch per file
    assert {m.partition for m in gold_events} == {STREAM_DAY}  # this day has no late arrivals
    assert all(m.metadata["latency_p95_ms"].value >= m.metadata["latency_p50_ms"].value >= 0 for m in gold_events)

    tables = assert_conserved(stream_lake, len(stream_lines(base_lake)))
    assert stream_duplicates(stream_lake) == manifest(base_lake)["defects"]["duplicate"]

    def rows(lake, table, key, drop=()):
        df = delivered(lake, table).drop(columns=[c for c in ("dagster_run_id", "processed_at", "rejected_at", "ingested_at", *drop) if c in delivered(lake, table)])
        for c in df.columns:
            if df[c].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
                df[c] = df[c].map(lambda v: None if v is None else json.dumps(v.tolist() if hasattr(v, "tolist") else list(v), default=str))
        return df.sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(stream_lake, "transactions_silver", "transaction_id"), rows(batch_lake, "transactions_silver", "transaction_id"))
    pd.testing.assert_frame_equal(rows(stream_lake, "transactions_dlq", "ingest_id"), rows(batch_lake, "transactions_dlq", "ingest_id"))
    gold_s, gold_b = rows(stream_lake, "risk_scores_gold", "transaction_id"), rows(batch_lake, "risk_scores_gold", "transaction_id")
    pd.testing.assert_frame_equal(gold_s[GOLD_CONTENT], gold_b[GOLD_CONTENT])
    assert gold_b["latency_ms"].isna().all() and gold_s["latency_ms"].notna().all()
    drop = ("raised_at", "pipeline_run_id")
    pd.testing.assert_frame_equal(rows(stream_lake, "anomaly_alerts", "alert_id", drop), rows(batch_lake, "anomaly_alerts", "alert_id", drop))
    assert len(tables["anomaly_alerts"]) > 0


@pytest.fixture(scope="module")
def kafka_day(base_lake, tmp_path_factory):
    """The stream day with the generator's usual defects (late arrivals, duplicates, bad records)."""
    folder = tmp_path_factory.mktemp("kafka_day")
    generate_day(dataclasses.replace(STREAM_CONFIG, late_arrival=0.02), folder, dt.date.fromisoformat(STREAM_DAY))
    day = folder / "transactions" / f"event_date={STREAM_DAY}"
    return delivery_lines(day), json.loads((day / "_manifest.json").read_text())


def test_kafka_stream_scores_alerts_and_routes_rejects_conserving_counts(base_lake, kafka_broker, kafka_day, spark, tmp_path):
    lines, truth = kafka_day
    lake = copy_lake(base_lake, tmp_path / "lake")
    topic = "transactions-e2e"
    create_topic(kafka_broker, topic, partitions=2)
    stats = publish(lines, kafka_broker, topic, rate=None)
    assert stats.delivered == len(lines)

    resources = make_resources(lake)
    kafka = KafkaResource(bootstrap_servers=kafka_broker, topic=topic)
    options = StreamOptions(source="kafka", available_now=True, max_offsets_per_trigger=600, delivery_date=STREAM_DAY)
    batches = run_stream(spark, resources["lake"], resources["model_registry"], kafka, "test-salt", None, options)
    assert batches >= 2

    t = assert_conserved(lake, len(lines))
    bronze, silver, dlq = t["transactions_bronze"], t["transactions_silver"], t["transactions_dlq"]
    assert set(bronze["source"]) == {"kafka"} and bronze["source_file"].str.startswith(f"{topic}/").all()
    assert stream_duplicates(lake) == truth["defects"]["duplicate"]
    reasons = {r for codes in dlq["reason_codes"] for r in codes}
    assert {"MALFORMED_JSON", "UNKNOWN_CURRENCY"} <= {r.split(":")[0] for r in reasons}

    # late arrivals sit in their own event-date partitions, counted per partition
    late = silver[silver["is_late_arrival"]]
    assert len(late) > 0 and (late["event_date"].astype(str) < STREAM_DAY).all()
    recorded = read_delta(lake, "stream_batches").groupby(read_delta(lake, "stream_batches")["event_date"].astype(str))["late_rows"].sum()
    expected = late.groupby(late["event_date"].astype(str)).size()
    assert recorded[recorded > 0].to_dict() == expected.to_dict()

    # a second run from the same checkpoint finds nothing new and writes nothing twice
    assert run_stream(spark, resources["lake"], resources["model_registry"], kafka, "test-salt", None, options) == 0
    assert_conserved(lake, len(lines))


def _bronze_txn_versions(lake: Path) -> set[int]:
    """Micro-batch ids whose bronze append has been committed (Delta's idempotent-write ids)."""
    versions = set()
    for log in (lake / "tables" / "transactions_bronze" / "_delta_log").glob("*.json"):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action and action["txn"]["appId"].startswith("transactions_landing:"):
                versions.add(action["txn"]["version"])
    return versions


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(base_lake, tmp_path):
    """The stream process is killed with SIGKILL after a micro-batch wrote bronze but before it was
    committed; the restarted stream replays that batch from the checkpoint exactly once."""
    lake = copy_lake(base_lake, tmp_path / "lake", with_stream_day_files=True)
    command = [sys.executable, "-m", "compliance_assets.streaming", "--lake", str(lake), "--source", "files", "--available-now", "--max-files", "1", "--days-glob", STREAM_DAY]
    env = {**os.environ, "SPARK_MASTER": "local[2]", "SPARK_DRIVER_MEMORY": "2g"}
    checkpoint = lake / "checkpoints" / "transactions_landing"
    victim = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed_in = None
    deadline = time.monotonic() + 600
    try:
        while victim.poll() is None and time.monotonic() < deadline:
            for batch in _bronze_txn_versions(lake) if (lake / "tables" / "transactions_bronze" / "_delta_log").exists() else ():
                if batch >= 1 and not (checkpoint / "commits" / str(batch)).exists():
                    victim.send_signal(signal.SIGKILL)
                    killed_in = batch
                    break
            if killed_in is not None:
                break
            time.sleep(0.05)
    finally:
        if victim.poll() is None and killed_in is None:
            victim.kill()
        victim.wait()
    assert killed_in is not None, f"the stream finished before it could be killed mid-batch:\n{victim.stdout.read()}"
    assert not (checkpoint / "commits" / str(killed_in)).exists()
    assert len(delivered(lake, "transactions_bronze")) > len(delivered(lake, "risk_scores_gold"))  # the batch was cut half-way

    restarted = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    assert_conserved(lake, len(stream_lines(base_lake)))
    assert stream_duplicates(lake) == manifest(base_lake)["defects"]["duplicate"]
