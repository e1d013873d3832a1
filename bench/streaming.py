"""Benchmark: the streaming job's sustained rate and event-to-score latency through a real Kafka broker.

Needs a lake with a champion model: the demo's (run `bash scripts/demo.sh` first). Its tables are
copied to a scratch lake, so the demo lake stays as it is; the MLflow registry is only read.

1. Starts a single-node KRaft broker (scripts/kafka.sh) on free ports and creates a 2-partition topic.
2. Generates today's synthetic transactions for the demo's population (same seed, accounts and
   merchants, so reference lookups succeed); defects included, so DLQ routing is part of the cost.
3. Starts the stream (`python -m compliance_assets.streaming --source kafka`) as its own process with
   its own JVM, as the Dagster run would be, and waits until a warm-up burst has been scored.
4. Sustained: publishes at --rate events/s for --duration seconds, waits until every record has
   been processed, then reads the scored rows of that window back with delta-rs: event-to-score
   latency (gold.latency_ms: broker timestamp -> score) p50/p95/max, the p95 of each micro-batch
   (stream_batches) and the rate actually scored.
5. Ramp (--ramp): the same for --step-seconds at each rate; the highest rate whose p95 stays under
   --target-p95 is reported.

    .venv/bin/python bench/streaming.py                                  # 1,200 ev/s for 5 minutes, then the ramp
    .venv/bin/python bench/streaming.py --duration 60 --ramp ""          # a short sustained run only

Writes bench/results/streaming_<rate>_<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compliance_assets.streaming.loadgen import create_topic, delivery_lines, publish  # noqa: E402
from compliance_assets.synthetic.config import SynthConfig  # noqa: E402
from compliance_assets.synthetic.writer import generate_day  # noqa: E402


def free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def table(lake: Path, name: str, day: str):
    """The day's rows of a table, read with delta-rs, timestamps as naive UTC."""
    path = lake / "tables" / name
    if not (path / "_delta_log").exists():
        return None
    column = "event_date" if name == "transactions_bronze" else "ingest_date"
    try:
        dataset = DeltaTable(str(path)).to_pyarrow_dataset()
    except Exception:  # the first commit is being written
        return None
    df = dataset.to_table(filter=pads.field(column) == pa.scalar(dt.date.fromisoformat(day))).to_pandas()
    for column in df.columns:
        if getattr(df[column].dtype, "tz", None) is not None:
            df[column] = df[column].dt.tz_convert(None)
    return df


def wait_processed(lake: Path, day: str, since: dt.datetime, expected: int, timeout: float) -> float:
    """Wait until `expected` records that arrived since `since` are in bronze and the micro-batch
    that wrote the last of them has finished; returns the seconds waited."""
    started = time.monotonic()
    reached = None
    while time.monotonic() - started < timeout:
        bronze = table(lake, "transactions_bronze", day)
        if bronze is not None and reached is None and (bronze["ingested_at"] >= since).sum() >= expected:
            reached = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        if reached is not None:
            progress = table(lake, "stream_batches", day)
            if progress is not None and (progress["processed_at"] >= reached).any():
                return time.monotonic() - started
        time.sleep(1.0)
    raise TimeoutError(f"the stream did not process {expected} records within {timeout:.0f} s")


def window_figures(lake: Path, day: str, since: dt.datetime, until: dt.datetime) -> dict:
    """Latency and throughput of the rows that arrived in [since, until)."""
    gold = table(lake, "risk_scores_gold", day)
    arrived = gold["scored_at"] - pd_timedelta_ms(gold["latency_ms"])
    rows = gold[(arrived >= since) & (arrived < until)]
    latency = rows["latency_ms"].to_numpy(dtype=float) / 1000.0
    progress = table(lake, "stream_batches", day)
    batches = progress[(progress["processed_at"] >= since)].drop_duplicates(["batch_id"])
    busy = (rows["scored_at"].max() - (arrived[rows.index]).min()).total_seconds() if len(rows) else 0.0
    return {
        "scored_rows": int(len(rows)),
        "scored_per_second": round(len(rows) / busy, 1) if busy else 0.0,
        "latency_p50_s": round(float(np.percentile(latency, 50)), 2) if len(rows) else None,
        "latency_p95_s": round(float(np.percentile(latency, 95)), 2) if len(rows) else None,
        "latency_max_s": round(float(latency.max()), 2) if len(rows) else None,
        "micro_batches": int(len(batches)),
        "batch_seconds_median": round(float(batches["batch_seconds"].median()), 2) if len(batches) else None,
        "batch_records_median": int(batches["batch_records"].median()) if len(batches) else None,
        "batch_p95_ms_max": round(float(progress[(progress["processed_at"] >= since)]["latency_p95_ms"].max()), 1) if len(batches) else None,
    }


def pd_timedelta_ms(ms):
    import pandas as pd

    return pd.to_timedelta(ms, unit="ms")


def phase(lake: Path, day: str, lines: list[str], bootstrap: str, topic: str, rate: float, seconds: float, offset: int) -> tuple[dict, int]:
    """Publish at `rate` for `seconds` (lines from `offset` on), wait for the stream, measure."""
    since = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    chunk = lines[offset: offset + int(rate * seconds)]
    stats = publish(chunk, bootstrap, topic, rate=rate)
    until = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    drained = wait_processed(lake, day, since, stats.delivered, timeout=max(600.0, seconds * 4))
    figures = {"target_rate": rate, "published": stats.delivered, "publish_rate": round(stats.rate, 1), "drain_seconds_after_publish": round(drained, 1)}
    figures.update(window_figures(lake, day, since, until))
    print(json.dumps(figures), flush=True)
    return figures, offset + len(chunk)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", type=Path, default=REPO / "lake", help="A lake with a champion (the demo's ./lake).")
    p.add_argument("--rate", type=float, default=1200.0)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--ramp", default="100,300,600", help="Rates for the ramp (comma-separated; empty = skip).")
    p.add_argument("--step-seconds", type=float, default=60.0)
    p.add_argument("--target-p95", type=float, default=15.0)
    p.add_argument("--seed", type=int, default=int(os.getenv("SEED", "42")), help="The demo's seed (its population).")
    p.add_argument("--population-events", type=int, default=int(os.getenv("EVENTS", "20000")), help="The demo's events per day (sets its population size).")
    p.add_argument("--trigger", type=float, default=1.0)
    args = p.parse_args(argv)

    if not (args.lake / "tables" / "transactions_silver" / "_delta_log").exists():
        sys.exit(f"no lake with silver at {args.lake}: run `bash scripts/demo.sh` first")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}")
    today = dt.datetime.now(dt.timezone.utc).date()
    ramp = [float(r) for r in args.ramp.split(",") if r.strip()]
    needed = int(args.rate * args.duration + sum(r * args.step_seconds for r in ramp) + 5_000)

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    lake = work / "lake"
    shutil.copytree(args.lake / "tables", lake / "tables")
    population = SynthConfig(seed=args.seed, events_per_day=args.population_events)
    config = SynthConfig(seed=args.seed, events_per_day=needed, n_accounts=population.accounts, n_merchants=population.merchants)
    print(f"generating {needed} events for {today} ({population.accounts} accounts, {population.merchants} merchants)", flush=True)
    generate_day(config, work / "landing", today)
    lines = delivery_lines(work / "landing" / "transactions" / f"event_date={today}")

    port, controller = free_ports(2)
    kafka_env = {**os.environ, "KAFKA_DATA": str(work / "kafka"), "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller)}
    subprocess.run(["bash", "scripts/kafka.sh", "start"], cwd=REPO, env=kafka_env, check=True)
    bootstrap, topic = f"127.0.0.1:{port}", "transactions"
    stream = None
    try:
        create_topic(bootstrap, topic, partitions=2)
        env = {**os.environ, "LAKE_ROOT": str(lake), "SPARK_MASTER": os.getenv("SPARK_MASTER", "local[2]")}
        log = open(work / "stream.log", "w")
        stream = subprocess.Popen(
            [sys.executable, "-m", "compliance_assets.streaming", "--source", "kafka", "--bootstrap", bootstrap, "--topic", topic, "--trigger", str(args.trigger)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        day = today.isoformat()
        warm, offset = phase(lake, day, lines, bootstrap, topic, rate=500, seconds=4, offset=0)
        print("warm-up done", flush=True)
        sustained, offset = phase(lake, day, lines, bootstrap, topic, args.rate, args.duration, offset)
        steps = []
        for rate in ramp:
            step, offset = phase(lake, day, lines, bootstrap, topic, rate, args.step_seconds, offset)
            steps.append(step)
        meeting = [s["target_rate"] for s in steps if s["latency_p95_s"] is not None and s["latency_p95_s"] < args.target_p95 and s["scored_rows"] >= 0.99 * s["published"] * (1 - 0.02)]
        result = {
            "benchmark": "streaming",
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cores": os.cpu_count(), "spark_master": env["SPARK_MASTER"]},
            "population": {"accounts": population.accounts, "merchants": population.merchants},
            "sustained": sustained,
            "ramp": steps,
            "target_p95_s": args.target_p95,
            "highest_rate_meeting_target": max(meeting) if meeting else None,
        }
        print(json.dumps(result, indent=2))
        out = REPO / "bench" / "results" / f"streaming_{int(args.rate)}_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        if stream is not None:
            stream.terminate()
            try:
                stream.wait(60)
            except subprocess.TimeoutExpired:
                stream.kill()
        subprocess.run(["bash", "scripts/kafka.sh", "stop"], cwd=REPO, env=kafka_env)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
