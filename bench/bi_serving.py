"""Benchmark: publishing a day of risk_scores_gold to the BI serving database (the bi_serving asset's gold table).

A gold Delta partition of --rows rows (the real gold schema: contracts/risk_scores.schema.json with the scorer's
top_features type, five top features per row) is generated with Spark directly, not by the pipeline, once, and
kept in --lake (reused while --rows and --seed match). Then, for each target, the day is published twice with the
asset's own code (compliance_assets.serving.publish, delta-rs record batches -> the dialect's fast path):
- first publish (empty table) and re-publish (DELETE the day's rows + insert: the daily idempotent path);
- targets: the embedded SQLite file (executemany in batches, WAL) and PostgreSQL from scripts/postgres.sh
  (COPY FROM STDIN; fsync off, TLS over loopback, as the script configures it).
Printed per target and pass: rows, elapsed, rows/s and the peak RSS of this Python process (VmHWM, reset
before each pass where the kernel allows). The serving table's row count and risk_score sum are checked
against the Delta partition after each pass (the asset check's comparison).

    .venv/bin/python bench/bi_serving.py                       # 5M rows, SQLite and PostgreSQL
    .venv/bin/python bench/bi_serving.py --rows 200000 --targets sqlite   # smoke scale

Results: bench/results/bi_serving_<rows>_<timestamp>.json.
"""

import argparse
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import peak_rss_mb, reset_peak_rss  # noqa: E402

TOP_K = 5
FEATURES = ("amount_base", "amount_vs_avg_30d", "txn_count_1h", "distance_from_home_km", "travel_speed_kmh", "is_new_merchant", "mcc_risk", "hour_of_day")


def rss_mb() -> float:
    """Current resident set of this process (VmRSS), in MB: the baseline a pass's peak is measured from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def build_gold(lake: Path, rows: int, day: str, seed: int) -> dict:
    """Write the gold partition with Spark (once per rows/seed); returns its marker."""
    marker_path = lake / "bench_gold.json"
    marker = {"rows": rows, "seed": seed, "day": day, "top_k": TOP_K}
    if marker_path.exists() and json.loads(marker_path.read_text()) == marker:
        log(f"gold: reusing {rows} rows in {lake}")
        return marker
    from pyspark.sql import functions as F

    from compliance_assets.ml.gold import GOLD_COLUMNS
    from compliance_assets.ml.scoring import TOP_FEATURE_TYPE
    from resources.spark import start_session

    shutil.rmtree(lake / "tables", ignore_errors=True)
    t0 = time.perf_counter()
    spark = start_session()
    d = dt.date.fromisoformat(day)
    r = F.rand(seed)
    names = F.array(*[F.lit(n) for n in FEATURES])
    top = F.array(*[
        F.struct(
            F.element_at(names, (F.abs(F.hash("id", F.lit(i))) % len(FEATURES) + 1).cast("int")).alias("feature"),
            F.when(F.rand(seed + 10 + i) < 0.05, F.lit(None)).otherwise(F.round(F.rand(seed + 20 + i) * 1000, 3)).alias("value"),
            F.round((F.rand(seed + 30 + i) - 0.5) / (i + 1), 6).alias("contribution"),
        ) for i in range(TOP_K)
    ]).cast(TOP_FEATURE_TYPE)
    midnight = int(dt.datetime.combine(d, dt.time(), dt.timezone.utc).timestamp())
    late = F.rand(seed + 1) < 0.02  # a few late arrivals: event_date the day before
    score = F.round(F.pow(r, F.lit(6)), 6)
    gold = spark.range(rows).select(
        F.format_string("TX%012d", "id").alias("transaction_id"),
        F.timestamp_seconds(F.lit(midnight) - F.when(late, 86400).otherwise(0) + F.col("id") % 86400).alias("event_time"),
        F.format_string("ACC%08d", (F.col("id") % 200000).cast("int")).alias("account_id"),
        score.alias("risk_score"),
        F.when(score >= 0.8, "HIGH").when(score >= 0.4, "MEDIUM").otherwise("LOW").alias("risk_band"),
        top.alias("top_features"),
        F.lit("compliance-risk-model").alias("model_name"), F.lit("7").alias("model_version"),
        F.lit("0123456789abcdef0123456789abcdef").alias("model_run_id"), F.lit("bench-run-" + "0" * 26).alias("pipeline_run_id"),
        F.when(F.rand(seed + 2) < 0.01, "WARN").otherwise("PASS").alias("dq_status"),
        F.lit(f"{d + dt.timedelta(days=1)} 01:00:00").cast("timestamp").alias("scored_at"),
        F.lit(None).cast("double").alias("latency_ms"),
        F.when(late, F.date_sub(F.lit(day).cast("date"), 1)).otherwise(F.lit(day).cast("date")).alias("event_date"),
        F.lit(day).cast("date").alias("ingest_date"),
    ).select(*GOLD_COLUMNS)
    gold.write.format("delta").partitionBy("event_date").save(str(lake / "tables" / "risk_scores_gold"))
    spark.stop()
    marker["build_seconds"] = round(time.perf_counter() - t0, 1)
    marker_path.write_text(json.dumps({k: marker[k] for k in ("rows", "seed", "day", "top_k")}))
    log(f"gold: {rows} rows written in {marker['build_seconds']}s")
    return marker


def start_postgres(home: Path, port: int) -> str:
    env = {**os.environ, "PG_HOME": str(home), "PG_PORT": str(port), "PG_DB": "serving_bench", "PG_USER": "serving_bench", "PG_PASSWORD": secrets.token_urlsafe(12)}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start"], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"scripts/postgres.sh start failed:\n{out.stderr}")
    exports = dict(w.split("=", 1) for line in out.stdout.splitlines() for w in shlex.split(line)[1:2])
    return (
        f"postgresql+psycopg2://{exports['DAGSTER_PG_USERNAME']}:{exports['DAGSTER_PG_PASSWORD']}@{exports['DAGSTER_PG_HOST']}:"
        f"{exports['DAGSTER_PG_PORT']}/{exports['DAGSTER_PG_DB']}?sslmode=require"
    )


def stop_postgres(home: Path, port: int) -> None:
    env = {**os.environ, "PG_HOME": str(home), "PG_PORT": str(port)}
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop"], env=env, capture_output=True, text=True, timeout=120)


def publish_passes(name: str, url: str, lake: Path, day: str) -> dict:
    from compliance_assets.serving.publish import compare_day, publish
    from compliance_assets.serving.delta_sources import SOURCES, DeltaReader
    from resources.lake import LakeResource
    from resources.serving import ServingDatabaseResource

    gold_only = SOURCES[:1]
    db = ServingDatabaseResource(url=url)
    engine = db.create_engine()
    reader = DeltaReader(LakeResource(root=str(lake)))
    passes = {}
    try:
        for label in ("first_publish", "republish"):
            reset_ok = reset_peak_rss([os.getpid()])
            baseline = rss_mb()
            t0 = time.perf_counter()
            published = publish(engine, reader, [day], f"bench-{label}", sources=gold_only)[0]
            seconds = time.perf_counter() - t0
            rows = published.rows["risk_scores_gold"]
            t1 = time.perf_counter()
            compared = compare_day(engine, reader, day, sources=gold_only)[0]
            check_seconds = time.perf_counter() - t1
            if not compared["ok"]:
                raise SystemExit(f"{name} {label}: serving table does not match Delta: {compared}")
            passes[label] = {
                "rows": rows, "seconds": round(seconds, 1), "rows_per_second": round(rows / seconds),
                "peak_rss_python_mb": round(peak_rss_mb(os.getpid())), "rss_before_mb": round(baseline), "peak_rss_reset": reset_ok,
                "check_seconds": round(check_seconds, 1), "check": {k: compared[k] for k in ("delta_rows", "served_rows", "delta_totals", "served_totals")},
            }
            log(f"{name} {label}: {rows} rows in {seconds:.1f}s = {rows / seconds:,.0f} rows/s, peak RSS {passes[label]['peak_rss_python_mb']} MB (from {baseline:.0f} MB before the pass); check {check_seconds:.1f}s")
    finally:
        engine.dispose()
    return {"target": db.safe_target(), **passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="gold rows of the published day")
    parser.add_argument("--day", default="2026-05-01", help="the delivery day (ingest_date / partition_day)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lake", default=str(Path(tempfile.gettempdir()) / "compliance-bi-serving-bench"), help="bench folder: the generated gold table (reused), the SQLite file")
    parser.add_argument("--targets", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--results-dir", default=str(ROOT / "bench" / "results"), help="where the JSON result goes")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(targets) <= {"sqlite", "postgres"} or not targets:
        parser.error("--targets takes sqlite and/or postgres")

    lake = Path(args.lake)
    lake.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    figures: dict = {"args": vars(args), "gold": build_gold(lake, args.rows, args.day, args.seed), "cores": os.cpu_count()}
    from resources.serving import sqlite_url

    if "sqlite" in targets:
        db_file = lake / "serving" / "compliance.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        figures["sqlite"] = publish_passes("sqlite", sqlite_url(str(lake)), lake, args.day)
        figures["sqlite"]["file_mb"] = round(db_file.stat().st_size / 1e6)
    if "postgres" in targets:
        from tests.helpers import free_port

        home, port = Path(tempfile.mkdtemp(prefix="bi-bench-pg-")), free_port()
        try:
            t0 = time.perf_counter()
            url = start_postgres(home, port)
            log(f"postgres: started in {time.perf_counter() - t0:.1f}s")
            figures["postgres"] = publish_passes("postgres", url, lake, args.day)
        finally:
            stop_postgres(home, port)
            shutil.rmtree(home, ignore_errors=True)
    figures["total_seconds"] = round(time.perf_counter() - started, 1)

    print("\ntarget      pass            rows        seconds   rows/s     peak RSS (MB)  RSS before (MB)")
    for t in targets:
        for label in ("first_publish", "republish"):
            p = figures[t][label]
            print(f"{t:<11} {label:<15} {p['rows']:<11} {p['seconds']:<9} {p['rows_per_second']:<10} {p['peak_rss_python_mb']:<14} {p['rss_before_mb']}")
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bi_serving_{args.rows}_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(f"\ntotal {figures['total_seconds']}s; results: {path}")


if __name__ == "__main__":
    main()
