"""The daily pipeline on a real Spark standalone cluster gives local mode's tables.

scripts/spark_cluster.sh starts a master and two workers on 127.0.0.1 from the pinned pyspark package: separate
JVMs with one core each, whose executors start their own Python workers (model scoring, UDFs). The two-day
backfill of `daily_pipeline` (bench/backfill.py: its own driver process, the champion of the session's lake)
runs once against `spark://127.0.0.1:<port>` and once in local mode, and every table of the two lakes is
compared partition by partition (scripts/lake_fingerprint.py: rows hashed without run ids and wall-clock
times), with the regulatory snapshots' SHA-256s. The session's champion was trained on another lake:
model_drift reads its training rows where the model version recorded them, so every step succeeds in both modes.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import SPARK_ENV, free_port

REPO = Path(__file__).resolve().parents[2]
DAYS, EVENTS, END = 2, 1500, "2026-04-04"


def _fingerprints():
    spec = importlib.util.spec_from_file_location("lake_fingerprint", REPO / "scripts" / "lake_fingerprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _backfill(master: str, work: Path, champion_lake: Path) -> tuple[Path, dict]:
    """Run bench/backfill.py against `master`; returns the kept scratch lake and the run's figures."""
    work.mkdir()
    env = {**os.environ, **SPARK_ENV, "SPARK_MASTER": master, "SPARK_DRIVER_HOST": "127.0.0.1", "SPARK_DRIVER_MEMORY": "1g",
           "MLFLOW_TRACKING_URI": f"sqlite:///{champion_lake / 'mlflow' / 'mlflow.db'}"}
    done = subprocess.run(
        [sys.executable, "bench/backfill.py", "--days", str(DAYS), "--events", str(EVENTS), "--end", END, "--population-events", str(EVENTS),
         "--work-dir", str(work), "--keep", "--results-dir", str(work / "results")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200,
    )
    results = list((work / "results").glob("backfill_*.json"))
    assert results, f"backfill on {master} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    result = json.loads(results[0].read_text())
    # model_drift measures the days against the champion's training rows in the lake it was trained on (the
    # session's), not against this scratch lake's table at that version number: every step succeeds
    assert result["success"] and result["failed_steps"] == [] and "model_drift" in result["step_seconds"], (result["failed_steps"], done.stdout[-4000:])
    assert result["machine"]["spark_master"] == master and len(result["step_seconds"]) > 40, result["machine"]
    (lake,) = work.glob("bench-backfill-*/lake")
    return lake, result


def _slo_rows(fp, lake: Path) -> list[str]:
    from deltalake import DeltaTable

    rows = DeltaTable(str(lake / "tables" / "slo_status")).to_pyarrow_table().to_pylist()
    return sorted(
        json.dumps({k: (None if k == "measured" and r["slo"] == "RECONCILIATION_BY_DEADLINE" else v) for k, v in r.items() if not fp.VOLATILE.search(k)},
                   sort_keys=True, default=str)
        for r in rows
    )


def test_daily_pipeline_on_a_two_worker_standalone_cluster_equals_local_mode(champion_lake, tmp_path):
    port, ui_port = free_port(), free_port()
    cluster_env = {**os.environ, "SPARK_CLUSTER_PORT": str(port), "SPARK_CLUSTER_UI_PORT": str(ui_port), "SPARK_WORKERS": "2",
                   "SPARK_WORKER_CORES": "1", "SPARK_WORKER_MEMORY": "1536m", "SPARK_CLUSTER_DATA": str(tmp_path / "cluster")}
    script = ["bash", "scripts/spark_cluster.sh"]
    started = subprocess.run([*script, "start"], cwd=REPO, env=cluster_env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        cluster_lake, on_cluster_run = _backfill(f"spark://127.0.0.1:{port}", tmp_path / "on_cluster", champion_lake)
        executors = list((tmp_path / "cluster").glob("work-*/app-*/*/stderr"))
        assert {p.parts[-4] for p in executors} == {"work-1", "work-2"}, executors  # both workers ran executors
    finally:
        subprocess.run([*script, "stop"], cwd=REPO, env=cluster_env, capture_output=True, text=True, timeout=120)
    local_lake, local_run = _backfill("local[2]", tmp_path / "local", champion_lake)

    fp = _fingerprints()
    on_cluster, local = fp.fingerprint(cluster_lake, None), fp.fingerprint(local_lake, None)
    assert len(local["tables"]) > 15 and local["snapshot_sha256"], sorted(local["tables"])
    differences = fp.compare(on_cluster, local)
    # slo_status's reconciliation-deadline row measures the minutes between the deadline and the moment the run
    # reconciled (wall clock): that value aside, its rows are compared too
    assert all(d.startswith("slo_status ") for d in differences), differences
    assert _slo_rows(fp, cluster_lake) == _slo_rows(fp, local_lake)
    # the same asset checks were evaluated, with the same outcomes
    assert (on_cluster_run["checks_passed"], on_cluster_run["checks_failed"]) == (local_run["checks_passed"], local_run["checks_failed"])
