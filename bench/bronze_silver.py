"""Benchmark: one synthetic day of N events through transactions_bronze -> transactions_silver.

Generates the day, materialises the reference-data, bronze and silver assets for that partition in one Dagster run on
real Spark + Delta, then prints events/s for the whole run and per core, and peak memory (RSS high
-water mark of the Python process and of the Spark driver JVM). Asset checks run separately and are
timed on their own.

    .venv/bin/python bench/bronze_silver.py --events 5000000
"""

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import jvm_pids, peak_rss_mb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--day", default="2026-03-02")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake", default=str(Path(tempfile.gettempdir()) / "compliance-bench-lake"))
    parser.add_argument("--keep-landing", action="store_true", help="reuse an existing generated landing folder")
    parser.add_argument("--with-checks", action="store_true", help="also run and time the asset checks")
    args = parser.parse_args()

    lake = Path(args.lake)
    os.environ["LAKE_ROOT"] = str(lake)
    day = dt.date.fromisoformat(args.day)
    cores = os.cpu_count() or 1

    from compliance_assets.synthetic import SynthConfig, generate_day

    shutil.rmtree(lake / "tables", ignore_errors=True)
    manifest = lake / "landing" / "transactions" / f"event_date={day}" / "_manifest.json"
    t0 = time.perf_counter()
    reusable = args.keep_landing and manifest.exists() and json.loads(manifest.read_text()).get("events_per_day") == args.events
    if not reusable:
        shutil.rmtree(lake / "landing", ignore_errors=True)
        generate_day(SynthConfig(seed=args.seed, events_per_day=args.events), lake / "landing", day)
    gen_seconds = time.perf_counter() - t0
    lines = json.loads(manifest.read_text())["total_lines"]

    from dagster import AssetSelection, DagsterInstance, materialize

    from compliance_assets.definitions import defs
    from compliance_assets.ingest.bronze import transactions_bronze
    from compliance_assets.ingest.silver import validate_transactions
    from compliance_assets.ingest.reference_data import reference_assets
    from resources.spark import start_session

    t0 = time.perf_counter()
    spark = start_session()
    jvm_start = time.perf_counter() - t0

    instance = DagsterInstance.ephemeral()
    # The day's reference data (KYC, limits, FX, merchants, watchlists) is loaded first and timed
    # apart: its size follows the account base, not the day's transaction volume.
    t0 = time.perf_counter()
    refs = materialize(reference_assets, partition_key=str(day), resources=defs.resources, instance=instance)
    ref_seconds = time.perf_counter() - t0
    assert refs.success

    t0 = time.perf_counter()
    result = materialize(
        [*reference_assets, transactions_bronze, validate_transactions], partition_key=str(day), resources=defs.resources,
        instance=instance, selection=AssetSelection.assets(transactions_bronze, validate_transactions),
    )
    run_seconds = time.perf_counter() - t0
    assert result.success
    step_seconds = {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 1)
        for r in (refs, result) for e in r.all_events if e.event_type_value == "STEP_SUCCESS"
    }

    silver = spark.read.format("delta").load(f"{lake}/tables/transactions_silver").count()
    dlq = spark.read.format("delta").load(f"{lake}/tables/transactions_dlq").count()

    check_seconds = None
    if args.with_checks:
        t0 = time.perf_counter()
        materialize([*reference_assets, transactions_bronze, validate_transactions, *defs.asset_checks], partition_key=str(day),
                    resources=defs.resources, instance=instance, selection=AssetSelection.all_asset_checks())
        check_seconds = time.perf_counter() - t0

    py_peak = peak_rss_mb(os.getpid())
    jvm_peak = max((peak_rss_mb(p) for p in jvm_pids()), default=0.0)
    figures = {
        "events_generated_lines": lines,
        "generation_seconds": round(gen_seconds, 1),
        "jvm_start_seconds": round(jvm_start, 1),
        "reference_data_seconds": round(ref_seconds, 1),
        "bronze_to_silver_seconds": round(run_seconds, 1),
        "events_per_second": round(lines / run_seconds),
        "events_per_second_per_core": round(lines / run_seconds / cores),
        "events_per_second_including_reference_data": round(lines / (run_seconds + ref_seconds)),
        "cores": cores,
        "step_seconds": step_seconds,
        "silver_rows": silver,
        "dlq_rows": dlq,
        "checks_seconds": round(check_seconds, 1) if check_seconds else None,
        "peak_rss_python_mb": round(py_peak),
        "peak_rss_spark_jvm_mb": round(jvm_peak),
        "spark_master": spark.conf.get("spark.master"),
        "driver_memory": spark.conf.get("spark.driver.memory"),
    }
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"bronze_silver_{args.events}_{dt.datetime.now():%Y%m%dT%H%M%S}.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
