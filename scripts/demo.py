"""Command 1's runner: the demo's Dagster runs in one process, so one JVM and one Spark session serve them all.

Called by scripts/demo.sh after the synthetic deliveries are generated. Each step is a run in the local
Dagster instance (DAGSTER_HOME, so the UI shows them), launched as `dagster asset materialize` would
(the implicit asset job, a single run over the partition range) but without a new process, JVM and
code load per step. The terminal gets one line per step with its seconds, rows and checks (a
ticker with the running step while it works); Dagster's, Spark's and MLflow's own logs go to the log
file named at the start.

    .venv/bin/python scripts/demo.py 2026-11-26 2026-12-05 --log .dagster_home/demo.log
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

# checks that the synthetic data or the demo's timing fail on purpose, and why (printed beside them)
PLANTED = {
    "reconciliation_differences_explained": "planted: the generator books transactions in the ledger that it never delivers (MISSING)",
    "reconciliation_before_deadline": "expected: past days are reconciled now, after their T+1 06:00 UTC deadline",
    "reconciliation_within_slo": "expected: the same deadline, as an SLO",
    "feature_psi_within_thresholds": "expected: the history starts on the first demo day, so 7/30-day window features ramp up over training",
}


class Progress:
    """One line per step on the terminal; while a step runs, a ticker with its seconds and the running Dagster step."""

    def __init__(self, out, instance, total: int):
        self.out, self.instance, self.total, self.n = out, instance, total, 0
        self.tty = out.isatty()

    def run(self, title: str, launch):
        self.n += 1
        label = f"[{self.n}/{self.total}] {title}"
        started, done = time.monotonic(), threading.Event()

        def tick():
            while not done.wait(1.0):
                step = self._running_step(started) if self.tty else ""
                self.out.write(f"\r\x1b[K{label} ... {time.monotonic() - started:5.0f} s {step}")
                self.out.flush()

        ticker = threading.Thread(target=tick, daemon=True)
        if self.tty:
            ticker.start()
        try:
            result = launch()
        finally:
            done.set()
            if self.tty:
                ticker.join()
                self.out.write("\r\x1b[K")
        self.out.write(f"{label} ... {time.monotonic() - started:.1f} s\n" + (f"{result}\n" if result.startswith("      ") else f"      {result}\n"))
        self.out.flush()

    def _running_step(self, since: float) -> str:
        from dagster import DagsterEventType, RunsFilter

        runs = self.instance.get_runs(filters=RunsFilter(created_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=time.monotonic() - since + 5)), limit=1)
        if not runs:
            return ""
        records = self.instance.get_records_for_run(runs[0].run_id, of_type=DagsterEventType.STEP_START, ascending=False, limit=1).records
        return f"({records[0].event_log_entry.step_key})" if records else ""


def outcome(result) -> str:
    """Rows written per asset and the checks' results of a finished run."""
    if not result.success:
        raise SystemExit(f"the run {result.run_id} failed: see the log and the Dagster UI")
    rows, checks = [], {"passed": 0, "failed": []}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            n = mat.metadata.get("dagster/row_count")
            rows.append(f"{mat.asset_key.to_user_string()}" + (f" {n.value:,}" if n is not None else ""))
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data.passed:
                checks["passed"] += 1
            else:
                checks["failed"].append(data.check_name)
    text = "\n".join(textwrap.wrap("rows: " + ", ".join(dict.fromkeys(rows)), 110, initial_indent="      ", subsequent_indent="        "))
    n_checks = checks["passed"] + len(checks["failed"])
    if n_checks:
        text += f"\n      checks: {checks['passed']}/{n_checks} passed"
        for name in checks["failed"]:
            text += f"\n      failed: {name}" + (f"  ({PLANTED[name]})" if name in PLANTED else "  (NOT planted: look at it in the UI)")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first")
    p.add_argument("last")
    p.add_argument("--log", required=True, help="Where the engines' own logs go.")
    args = p.parse_args()

    # the terminal keeps a copy of stdout; stdout and stderr (Dagster, the JVM's Ivy report, MLflow) go to the log
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    terminal.write(f"    (Dagster, Spark and MLflow logs: {args.log})\n")

    from dagster import AssetSelection, DagsterInstance

    from compliance_assets.definitions import defs
    from compliance_assets.investigations import dispositions_cli
    from resources.mlflow import CHAMPION, registry_from_env

    instance = DagsterInstance.get()
    first, last = args.first, args.last
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    progress = Progress(terminal, instance, 9)

    def assets(select: list[str], partition: str | None = None, run_config: dict | None = None):
        keys = AssetSelection.from_coercible(select).resolve(defs.resolve_asset_graph())
        job = defs.resolve_implicit_job_def_def_for_assets(keys)
        tags = {} if partition else {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        return lambda: outcome(job.execute_in_process(
            instance=instance, asset_selection=list(keys), partition_key=partition, tags=tags,
            run_config={**quiet, **(run_config or {})}, raise_on_error=False,
        ))

    spark_started = time.monotonic()
    from resources.spark import start_session

    start_session()  # every run below reuses it
    terminal.write(f"    Spark session with Delta started in {time.monotonic() - spark_started:.0f} s\n")

    progress.run(f"daily ingest, confirmed outcomes and training features, {first}..{last}",
                 assets(["group:reference_data", "group:ingest", "transaction_outcomes", "ml_features_training"]))
    progress.run(f"training the risk model as of {last}, logged to MLflow", assets(["risk_model"], partition=last))

    def promote():
        job = defs.resolve_job_def("promote_challenger")
        result = job.execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={**quiet, "ops": {"promote_challenger_op": {"config": {"approver": "demo (scripts/demo.sh)", "reason": "demo run"}}}},
        )
        if result.success:
            return f"champion: version {registry_from_env().version_by_alias(CHAMPION).version}"
        if registry_from_env().version_by_alias(CHAMPION) is None:
            raise SystemExit("promotion failed and there is no champion to score with: see the log")
        return "challenger not better than the champion (a re-run): scoring with the current champion"

    progress.run("promoting the challenger to champion (approver: demo)", promote)
    progress.run(f"scoring every transaction with the champion and raising alerts, {first}..{last}", assets(["risk_scores_gold", "anomaly_alerts"]))
    # snapshots are write-once: a re-run of the demo supersedes the earlier versions, saying why (kept in the manifest)
    progress.run(f"reconciling with the ledger and writing the regulatory snapshots, {first}..{last}", assets(
        ["reconciliation_report", "reconciliation_breaks", "regulatory_snapshots"],
        run_config={"ops": {"regulatory_snapshots": {"config": {"supersede_reason": "demo re-run (scripts/demo.sh)"}}}},
    ))
    progress.run(f"monitoring {last}: drift, the challenger's shadow scores, SLOs", assets(["group:monitoring"], partition=last))

    def decide():
        from deltalake import DeltaTable

        alerts = DeltaTable(f"{os.environ['LAKE_ROOT']}/tables/anomaly_alerts").to_pandas(columns=["alert_id", "ingest_date"])
        a1, a2 = sorted(alerts.loc[alerts.ingest_date.astype(str) == last, "alert_id"])[:2]
        now = dt.datetime.now(dt.timezone.utc)
        base = ["decide", "--day", last, "--investigator", "demo-analyst"]
        for argv in (
            [*base, a1, "--decision", "dismiss", "--decided-at", f"{now - dt.timedelta(minutes=10):%Y-%m-%dT%H:%M:%SZ}", "--note", "first look: regular payee"],
            [*base, a1, "--decision", "confirm", "--decided-at", f"{now - dt.timedelta(minutes=5):%Y-%m-%dT%H:%M:%SZ}", "--note", "second review: mule pattern"],
            [*base, a2, "--decision", "escalate", "--note", "needs a senior investigator"],
        ):
            if dispositions_cli.main(argv) != 0:
                raise SystemExit(f"compliance-dispositions {' '.join(argv)} failed: see the log")
        return f"{a1} dismissed then confirmed, {a2} escalated (compliance-dispositions)"

    progress.run(f"investigators' decisions on two of {last}'s alerts through the CLI", decide)
    progress.run(f"recording the decisions and alert precision, {last}", assets(["alert_dispositions", "alert_dispositions_dlq", "alert_precision"], partition=last))
    progress.run(f"serving {last}: BI tables and the compliance dashboard", assets(["bi_serving", "compliance_dashboard"], partition=last))

    import demo_summary

    sys.stdout.flush()
    os.dup2(terminal.fileno(), 1)  # the summary goes to the terminal
    demo_summary.main(first, last, planted=PLANTED)


if __name__ == "__main__":
    main()
