"""The landing-folder stream end to end on real components: Spark Structured Streaming, Delta, MLflow's
registry and a Dagster instance. (The Kafka lanes, the decision service and the Delta lane, are tested in
tests/realtime/test_service.py.)

The base lake holds five batch-ingested days, a trained and promoted champion and the stream day's
reference data; the test streams the sixth day into its own copy of it.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance

from compliance_assets.transforms.alert_rules import HIGH_RISK
from compliance_assets.streaming.job import transaction_stream_job
from compliance_assets.streaming.loadgen import delivery_lines
from tests.conftest import make_resources
from tests.helpers import STREAM_DAY, read_delta

GOLD_CONTENT = ["transaction_id", "event_time", "event_date", "risk_score", "risk_band", "top_features", "model_version", "dq_status"]


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


def test_file_stream_through_dagster_gives_the_batch_paths_rows(base_lake, stream_day_batch_lake, tmp_path):
    """The landing folder streamed file by file (one micro-batch each) by the Dagster job gives the
    silver, DLQ, gold and alert rows the daily assets give for the same delivery: the per-account
    windows see every earlier micro-batch."""
    batch_lake = stream_day_batch_lake
    stream_lake = copy_lake(base_lake, tmp_path / "stream", with_stream_day_files=True)

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
