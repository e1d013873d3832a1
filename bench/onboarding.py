"""Benchmark: onboarding a history. --days days of the platform's generator (about --transactions in total
for --accounts accounts) go from landing files to scored gold, one Dagster run per range.

1. A scratch lake in a temporary folder (--work-dir; removed afterwards unless --keep). The days ending --end
   are generated into its landing area (timed apart; not part of the total).
2. One Spark session for everything (started and timed first), an ephemeral Dagster instance, the in-process
   executor (`materialize`), the lake and MLflow of the scratch folder.
3. Runs, each over its whole range:
   - ingest: the reference tables, transactions_bronze, transactions_silver / _dlq / dq_results,
     transaction_outcomes and ml_features_training for every day, with their asset checks;
   - risk_model for the partition --train-day (default: the 7th day from the end), then the promote_challenger job;
   - risk_scores_gold for the days after it (default: the last 7), with its checks.
   Measured: every Dagster step's seconds (STEP_START -> STEP_SUCCESS / FAILURE in the event log) and how many
   Spark jobs it started (job submission times from Spark's status store), each run's wall time and the total.

    .venv/bin/python bench/onboarding.py                          # 60 days, 200,000 transactions, 2,000 accounts
    .venv/bin/python bench/onboarding.py --days 12                # a shorter history, the same size of day

Writes bench/results/onboarding_<days>x<events per day>_<timestamp>.json.
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

from bench.memory import jvm_pids, peak_rss_mb  # noqa: E402

RANGE_START, RANGE_END, BACKFILL_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end", "dagster/backfill"
SCORED_DAYS = 7
# Spark's status store keeps this many finished jobs (default 1,000): enough to attribute every job to its step
RETAINED_JOBS = "200000"


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def spark_job_times(spark, first: int, last: int) -> list[float]:
    """Submission times (epoch seconds) of Spark jobs first..last (ids from the live status store)."""
    store = spark.sparkContext._jsc.sc().statusStore()
    times = []
    for job_id in range(first, last + 1):
        try:
            submitted = store.job(job_id).submissionTime()
        except Exception:  # noqa: BLE001 - a job the store no longer holds
            continue
        if submitted.isDefined():
            times.append(submitted.get().getTime() / 1000.0)
    return times


def last_job_id(spark) -> int:
    ids = spark.sparkContext.statusTracker().getJobIdsForGroup(None)
    return max(ids, default=-1)


def steps_of(instance, run_id: str, job_times: list[float]) -> dict[str, dict]:
    """{step_key: {seconds, status, spark_jobs}} from the run's event log, in execution order; Spark jobs
    are attributed to the step whose window holds their submission time."""
    from dagster import DagsterEventType

    ends = {DagsterEventType.STEP_SUCCESS: "success", DagsterEventType.STEP_FAILURE: "failure"}
    started, steps = {}, {}
    for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, *ends}):
        event = record.dagster_event
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.step_key in started:
            begin, end = started[event.step_key], record.timestamp
            jobs = sum(1 for t in job_times if begin <= t <= end)
            steps[event.step_key] = {"seconds": round(end - begin, 1), "status": ends[event.event_type], "spark_jobs": jobs}
    return steps


class Runner:
    """Runs Dagster jobs in this process against the scratch lake and records their steps."""

    def __init__(self, spark, resources: dict, quiet: bool):
        from dagster import DagsterInstance

        self.spark, self.resources = spark, resources
        self.instance = DagsterInstance.ephemeral()
        self.run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}} if quiet else {}
        self.runs: list[dict] = []

    def _record(self, name: str, run) -> dict:
        first = self._jobs_before + 1
        last = last_job_id(self.spark)
        wall = time.perf_counter() - self._t0
        steps = steps_of(self.instance, run.run_id, spark_job_times(self.spark, first, last))
        check_steps = {key for key in steps if key not in self._asset_steps}
        entry = {
            "run": name, "success": run.success, "seconds": round(wall, 1), "spark_jobs": last - first + 1,
            "asset_step_seconds": round(sum(s["seconds"] for k, s in steps.items() if k not in check_steps), 1),
            "check_step_seconds": round(sum(s["seconds"] for k, s in steps.items() if k in check_steps), 1),
            "steps": steps,
        }
        if hasattr(run, "get_asset_check_evaluations"):
            evaluations = {f"{e.asset_check_key.asset_key.to_user_string()}:{e.asset_check_key.name}": e.passed for e in run.get_asset_check_evaluations()}
            entry["checks_failed"] = sorted(k for k, ok in evaluations.items() if not ok)
            entry["checks_passed"] = sum(evaluations.values())
        self.runs.append(entry)
        log(f"{name}: {'success' if run.success else 'FAILED'} in {wall:.1f}s, {entry['spark_jobs']} Spark jobs")
        for key, step in steps.items():
            log(f"    {key:<45} {step['seconds']:>7.1f}s {step['spark_jobs']:>5} jobs {'' if step['status'] == 'success' else step['status'].upper()}")
        return entry

    def _start(self, assets: list = ()) -> None:
        from dagster import AssetChecksDefinition, AssetsDefinition

        # asset checks are AssetsDefinitions too: count only the assets' own steps as asset steps
        self._asset_steps = {a.op.name for a in assets if isinstance(a, AssetsDefinition) and not isinstance(a, AssetChecksDefinition)} or {"promote_challenger_op"}
        self._jobs_before = last_job_id(self.spark)
        self._t0 = time.perf_counter()

    def materialize(self, name: str, assets: list, first: str, last: str | None = None):
        from dagster import materialize

        self._start(assets)
        tags = {RANGE_START: first, RANGE_END: last, BACKFILL_TAG: "bench-onboarding"} if last else {}
        result = materialize(
            assets, resources=self.resources, instance=self.instance, raise_on_error=False, run_config=self.run_config,
            tags=tags, partition_key=None if last else first,
        )
        return self._record(name, result)

    def job(self, name: str, job, run_config: dict):
        self._start()
        resources = {k: self.resources[k] for k in ("spark", "lake", "model_registry")}
        result = job.execute_in_process(run_config={**run_config, **self.run_config}, resources=resources, instance=self.instance, raise_on_error=False)
        return self._record(name, result)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=60, help="Days of history.")
    p.add_argument("--transactions", type=int, default=200_000, help="Stream lines over the whole history (spread evenly over the days).")
    p.add_argument("--events-per-day", type=int, default=0, help="Stream lines per day (overrides --transactions).")
    p.add_argument("--accounts", type=int, default=2_000)
    p.add_argument("--end", default="2026-09-30", help="The history's last day (YYYY-MM-DD).")
    p.add_argument("--train-day", type=int, default=0, help="1-based day of the history the model is trained at the end of (default: --days minus 7).")
    p.add_argument("--seed", type=int, default=int(os.getenv("SEED", "42")))
    p.add_argument("--work-dir", default=None, help="Where the scratch folder goes (default: the system temp dir).")
    p.add_argument("--keep", action="store_true", help="Keep the scratch folder (its path is printed).")
    p.add_argument("--verbose", action="store_true", help="Dagster logs at INFO (default WARNING).")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    per_day = args.events_per_day or max(1, round(args.transactions / args.days))
    train_day = args.train_day or args.days - SCORED_DAYS
    if args.days < 2 or not 1 <= train_day < args.days:
        p.error("--days must be at least 2 and --train-day between 1 and --days - 1")

    end = dt.date.fromisoformat(args.end)
    days = [str(end - dt.timedelta(days=args.days - 1 - i)) for i in range(args.days)]
    work = Path(tempfile.mkdtemp(prefix="bench-onboarding-", dir=args.work_dir))
    lake = work / "lake"
    os.environ["LAKE_ROOT"] = str(lake)  # definitions read their defaults from the environment at import
    started, load_at_start = time.perf_counter(), os.getloadavg()
    try:
        from compliance_assets.synthetic import SynthConfig, generate_day

        config = SynthConfig(seed=args.seed, events_per_day=per_day, n_accounts=args.accounts)
        log(f"{days[0]}..{days[-1]}: {args.days} days x {per_day} lines, {config.accounts} accounts, {config.merchants} merchants into {lake}")
        t0 = time.perf_counter()
        lines = transactions = 0
        for day in days:
            summary = generate_day(config, lake / "landing", dt.date.fromisoformat(day))
            lines += summary.lines
            transactions += summary.transactions
        generation = time.perf_counter() - t0
        log(f"generated {lines} lines ({transactions} transactions) in {generation:.1f}s")

        from compliance_assets.ingest import bronze, checks, silver
        from compliance_assets.ingest.bronze import transactions_bronze
        from compliance_assets.ingest.silver import validate_transactions
        from compliance_assets.ml import features_training, gold
        from compliance_assets.ml.features_training import ml_features_training
        from compliance_assets.ml.gold import risk_scores_gold
        from compliance_assets.ml.outcomes import outcome_checks, transaction_outcomes
        from compliance_assets.ml.registry import promote_challenger
        from compliance_assets.ml.training import risk_model
        from compliance_assets.ingest.reference_data import reference_assets, reference_checks
        from dagster import load_asset_checks_from_modules
        from resources import resources_for_lake
        from resources.spark import spark_conf, start_session

        t0 = time.perf_counter()
        spark = start_session(spark_conf(extra_conf={"spark.ui.retainedJobs": RETAINED_JOBS, "spark.ui.retainedStages": RETAINED_JOBS}))
        jvm_start = time.perf_counter() - t0
        log(f"Spark {spark.conf.get('spark.master')} ({spark.conf.get('spark.sql.shuffle.partitions')} shuffle partitions) started in {jvm_start:.1f}s")

        runner = Runner(spark, resources_for_lake(lake, salt="bench-salt"), quiet=not args.verbose)
        ingest_checks = [*reference_checks, *outcome_checks, *load_asset_checks_from_modules([bronze, checks, silver, features_training])]
        ingest = [*reference_assets, transactions_bronze, validate_transactions, transaction_outcomes, ml_features_training]
        log(f"ingest + training features over {days[0]}...{days[-1]} (one run)")
        runner.materialize("ingest", [*ingest, *ingest_checks], days[0], days[-1])

        trained_at = days[train_day - 1]
        runner.materialize("risk_model", [risk_model], trained_at)
        promotion = {"ops": {"promote_challenger_op": {"config": {"approver": "bench-onboarding", "reason": "onboarding benchmark", "min_improvement": 0.0}}}}
        runner.job("promote_challenger", promote_challenger, promotion)

        scored = days[train_day:]
        gold_checks = load_asset_checks_from_modules([gold])
        log(f"risk_scores_gold over {scored[0]}...{scored[-1]} (one run)")
        runner.materialize("risk_scores_gold", [risk_scores_gold, *gold_checks], scored[0], scored[-1])

        total = sum(r["seconds"] for r in runner.runs)
        figures = {
            "benchmark": "onboarding",
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "success": all(r["success"] for r in runner.runs),
            "range": [days[0], days[-1]],
            "days": args.days,
            "lines_per_day": per_day,
            "lines_total": lines,
            "transactions_total": transactions,
            "accounts": config.accounts,
            "merchants": config.merchants,
            "trained_at": trained_at,
            "scored_days": [scored[0], scored[-1]],
            "machine": {"cores": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_at_start],
                        "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "spark_master": spark.conf.get("spark.master"),
                        "shuffle_partitions": spark.conf.get("spark.sql.shuffle.partitions"), "driver_memory": spark.conf.get("spark.driver.memory")},
            "generation_seconds": round(generation, 1),
            "jvm_start_seconds": round(jvm_start, 1),
            "runs": runner.runs,
            "run_seconds": {r["run"]: r["seconds"] for r in runner.runs},
            "spark_jobs": {r["run"]: r["spark_jobs"] for r in runner.runs},
            "total_seconds": round(total, 1),
            "asset_step_seconds": round(sum(r["asset_step_seconds"] for r in runner.runs), 1),
            "check_step_seconds": round(sum(r["check_step_seconds"] for r in runner.runs), 1),
            "total_with_jvm_start_seconds": round(total + jvm_start, 1),
            "peak_rss_python_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "peak_rss_spark_jvm_mb": round(max((peak_rss_mb(pid) for pid in jvm_pids()), default=0.0)),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        log(f"onboarding {args.days} days x {per_day} lines: {figures['total_seconds']}s in Dagster runs, of which asset steps "
            f"{figures['asset_step_seconds']}s and asset checks {figures['check_step_seconds']}s "
            f"({', '.join(f'{k} {v}s' for k, v in figures['run_seconds'].items())}); JVM start {figures['jvm_start_seconds']}s; "
            f"generation {figures['generation_seconds']}s")
        out = Path(args.results_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"onboarding_{args.days}x{per_day}_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
        return 0 if figures["success"] else 1
    finally:
        if args.keep:
            log(f"scratch folder kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
