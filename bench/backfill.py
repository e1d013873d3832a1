"""Benchmark: a multi-day backfill of the whole daily graph, end to end (bronze -> regulatory snapshots), in ONE run.

The question: how long does a backfill of --days days of --events events per day take through the
`daily_pipeline` job (reference data, bronze, silver / DLQ / dq_results, outcomes, training features,
risk scores, alerts, reconciliation with the ledger, daily regulatory snapshots, with every asset
check), and how many events per second is that?

1. A scratch lake in a temporary folder (--work-dir; removed afterwards unless --keep). --days
   consecutive synthetic days ending --end are generated into its landing area for the demo's
   population (the demo's seed; accounts and merchants sized by --population-events, default
   --events), defects, late arrivals and duplicates included. Generation is timed on its
   own and is not part of the backfill figure.
2. Scoring uses the demo's champion model: its MLflow registry (mlruns/mlflow.db, or
   MLFLOW_TRACKING_URI) is only read, the lake is the scratch lake.
3. The Spark session is started first (timed apart), then `daily_pipeline` runs once over the whole
   range (run tags dagster/asset_partition_range_start/_end, like a single-run backfill, and
   dagster/backfill, so the operations audit records it) with an ephemeral Dagster instance.
   Measured: the run's wall time, events/s (generated events / wall time), each step's duration
   (STEP_START -> STEP_SUCCESS/FAILURE in the run's event log), the rows of every table per day
   afterwards (read back with delta-rs), and peak RSS (VmHWM) of this process, the Spark driver JVM and
   the largest Python worker.

    .venv/bin/python bench/backfill.py                                   # 7 days x 1,000,000 events ending 2026-10-07
    .venv/bin/python bench/backfill.py --days 2 --events 3000            # a smoke run (a few minutes)

The population is sized for --events (accounts = events/10, ~10 events per account per day as in the
demo); --population-events 20000 would reuse the demo's 2,000 accounts (~500 events each per day).

Writes bench/results/backfill_<days>x<events>_<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.memory import jvm_pids, peak_rss_mb, python_worker_pids  # noqa: E402

JOB = "daily_pipeline"
RANGE_START, RANGE_END, BACKFILL_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end", "dagster/backfill"
# the column that holds a table's delivery day (first one present wins); tables with none are counted in total
DAY_COLUMNS = ("ingest_date", "period", "event_date")
NOT_BY_DAY = {"operations_audit"}  # its event_date is the day the operation was recorded


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def champion_or_exit(tracking_uri: str):
    from resources.mlflow import CHAMPION, registry_from_env

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        sys.exit(f"no MLflow registry at {tracking_uri}: run `bash scripts/demo.sh` first")
    registry = registry_from_env(tracking_uri)
    version = registry.version_by_alias(CHAMPION)
    if version is None:
        sys.exit(f"no champion model ({registry.model_name}@{CHAMPION}) in {tracking_uri}: run `bash scripts/demo.sh` first")
    return registry, version


def step_durations(instance, run_id: str) -> dict[str, dict]:
    """{step_key: {seconds, status}} from the run's STEP_START and STEP_SUCCESS / STEP_FAILURE events."""
    from dagster import DagsterEventType

    ends = {DagsterEventType.STEP_SUCCESS: "success", DagsterEventType.STEP_FAILURE: "failure"}
    started, steps = {}, {}
    for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, *ends}):
        event = record.dagster_event
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.step_key in started:
            steps[event.step_key] = {"seconds": round(record.timestamp - started[event.step_key], 1), "status": ends[event.event_type]}
    return dict(sorted(steps.items(), key=lambda kv: -kv[1]["seconds"]))


def rows_per_day(lake: Path, days: list[str]) -> dict[str, dict]:
    """Every Delta table's rows per delivery day of the range (delta-rs), or its total."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    out = {}
    for path in sorted(p for p in (lake / "tables").iterdir() if (p / "_delta_log").exists()):
        table = DeltaTable(str(path))
        names = [f.name for f in table.schema().fields]
        column = next((c for c in DAY_COLUMNS if c in names), None)
        dataset = table.to_pyarrow_dataset()
        if column is None or path.name in NOT_BY_DAY:
            out[path.name] = {"total": dataset.count_rows()}
            continue
        counts = pc.value_counts(dataset.to_table(columns=[column]).column(column).combine_chunks().cast("string"))
        by_day = {str(c["values"]): int(c["counts"]) for c in counts.to_pylist()}
        out[path.name] = {"by": column, **{d: by_day.get(d, 0) for d in days}, "total": sum(by_day.values())}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=7, help="Days in the backfill range.")
    p.add_argument("--events", type=int, default=1_000_000, help="Events (landing lines) per day.")
    p.add_argument("--end", default="2026-10-07", help="The range's last day (YYYY-MM-DD).")
    p.add_argument("--seed", type=int, default=int(os.getenv("SEED", "42")), help="The demo's seed (its population).")
    p.add_argument("--population-events", type=int, default=0, help="Events per day that size the population (accounts = events/10); default --events, so a day keeps the demo's ~10 events per account.")
    p.add_argument("--work-dir", default=None, help="Where the scratch lake's temporary folder goes (default: the system temp dir).")
    p.add_argument("--keep", action="store_true", help="Keep the scratch lake (its path is printed).")
    p.add_argument("--verbose", action="store_true", help="Dagster logs at INFO (default WARNING).")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    if args.days < 1 or args.events < 1:
        p.error("--days and --events must be at least 1")

    end = dt.date.fromisoformat(args.end)
    days = [end - dt.timedelta(days=args.days - 1 - i) for i in range(args.days)]
    first, last = str(days[0]), str(days[-1])
    tracking_uri = os.getenv("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}"
    registry, champion = champion_or_exit(tracking_uri)  # before anything big happens

    work = Path(tempfile.mkdtemp(prefix="bench-backfill-", dir=args.work_dir))
    lake = work / "lake"
    # definitions.py builds its default resources from the environment at import: point them here too
    os.environ["LAKE_ROOT"] = str(lake)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    started, load_at_start = time.perf_counter(), os.getloadavg()  # other processes on the machine skew the figures
    try:
        from compliance_assets.synthetic import SynthConfig, generate_day

        population = SynthConfig(seed=args.seed, events_per_day=args.population_events or args.events)
        config = SynthConfig(seed=args.seed, events_per_day=args.events, n_accounts=population.accounts, n_merchants=population.merchants)
        log(f"{first}..{last}: {args.days} x {args.events} events ({population.accounts} accounts, {population.merchants} merchants) "
            f"into {lake}; champion {registry.model_name} v{champion.version} from {tracking_uri}")
        gen_seconds, lines, transactions = {}, {}, {}
        for day in days:
            t0 = time.perf_counter()
            summary = generate_day(config, lake / "landing", day)
            gen_seconds[str(day)] = round(time.perf_counter() - t0, 1)
            lines[str(day)], transactions[str(day)] = summary.lines, summary.transactions
            log(f"generated {summary.one_line()}")
        total_lines = sum(lines.values())

        from dagster import DagsterInstance

        from compliance_assets.definitions import defs
        from resources import resources_for_lake
        from resources.spark import start_session

        t0 = time.perf_counter()
        spark = start_session()
        jvm_start = time.perf_counter() - t0
        log(f"Spark {spark.conf.get('spark.master')} (driver {spark.conf.get('spark.driver.memory')}, "
            f"{spark.conf.get('spark.sql.shuffle.partitions')} shuffle partitions) started in {jvm_start:.1f}s")

        # the lake is the scratch lake; the model registry is the demo's (read: the champion is loaded, never changed)
        resources = {**resources_for_lake(lake, salt="bench-salt"), "model_registry": registry}
        instance = DagsterInstance.ephemeral()
        loggers = {} if args.verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        log(f"{JOB} over {first}...{last} (one run)")
        t0 = time.perf_counter()
        result = defs.resolve_job_def(JOB).execute_in_process(
            run_config=loggers, resources=resources, instance=instance, raise_on_error=False,
            tags={RANGE_START: first, RANGE_END: last, BACKFILL_TAG: "bench"},
        )
        wall = time.perf_counter() - t0
        steps = step_durations(instance, result.run_id)
        failed = [k for k, s in steps.items() if s["status"] == "failure"]
        checks = {f"{e.asset_check_key.asset_key.to_user_string()}:{e.asset_check_key.name}": e.passed for e in result.get_asset_check_evaluations()}
        log(f"run {result.run_id}: {'success' if result.success else 'FAILED'} in {wall:.1f}s")

        t0 = time.perf_counter()
        rows = rows_per_day(lake, [str(d) for d in days])
        rows_seconds = time.perf_counter() - t0
        gold = rows.get("risk_scores_gold", {})
        silver = rows.get("transactions_silver", {})
        jvm = [peak_rss_mb(pid) for pid in jvm_pids()]
        workers = [peak_rss_mb(pid) for pid in python_worker_pids()]
        cores = spark.sparkContext.defaultParallelism
        figures = {
            "benchmark": "backfill",
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "success": result.success,
            "failed_steps": failed,
            "checks_passed": sum(checks.values()),
            "checks_failed": sorted(k for k, ok in checks.items() if not ok),
            "range": [first, last],
            "days": args.days,
            "events_per_day": args.events,
            "events_total": total_lines,
            "transactions_total": sum(transactions.values()),
            "population": {"seed": args.seed, "accounts": population.accounts, "merchants": population.merchants,
                           "events_per_account_per_day": round(args.events / population.accounts, 1)},
            "champion": {"model": registry.model_name, "version": str(champion.version), "run_id": champion.run_id, "tracking_uri": tracking_uri},
            "machine": {"cores": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_at_start], "spark_master": spark.conf.get("spark.master"), "default_parallelism": cores,
                        "driver_memory": spark.conf.get("spark.driver.memory"), "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions")},
            "generation_seconds": round(sum(gen_seconds.values()), 1),
            "generation_seconds_per_day": gen_seconds,
            "jvm_start_seconds": round(jvm_start, 1),
            "backfill_wall_seconds": round(wall, 1),
            "events_per_second": round(total_lines / wall, 1),
            "events_per_second_per_core": round(total_lines / wall / cores, 1),
            "silver_rows_per_second": round(silver.get("total", 0) / wall, 1),
            "scored_rows": gold.get("total", 0),
            "step_seconds": {k: s["seconds"] for k, s in steps.items()},
            "step_seconds_sum": round(sum(s["seconds"] for s in steps.values()), 1),
            "rows_per_table": rows,
            "rows_readback_seconds": round(rows_seconds, 1),
            "peak_rss_python_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "peak_rss_spark_jvm_mb": round(max(jvm, default=0.0)),
            "peak_rss_python_worker_max_mb": round(max(workers, default=0.0)),
            "python_worker_processes": len(workers),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(figures, indent=2))
        log(f"backfill {args.days} x {args.events}: {figures['backfill_wall_seconds']}s wall, {figures['events_per_second']} events/s "
            f"({figures['events_per_second_per_core']}/core); generation {figures['generation_seconds']}s, JVM start {figures['jvm_start_seconds']}s; "
            f"peak RSS python {figures['peak_rss_python_mb']} MB, JVM {figures['peak_rss_spark_jvm_mb']} MB; "
            f"checks {figures['checks_passed']} passed, failed: {figures['checks_failed'] or 'none'}")
        out = Path(args.results_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"backfill_{args.days}x{args.events}_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
        return 0 if result.success else 1
    finally:
        if args.keep:
            log(f"scratch lake kept at {lake}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
