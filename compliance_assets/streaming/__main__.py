"""Command line: run the transaction stream outside Dagster (replays, benchmarks, the crash test).

    python -m compliance_assets.streaming --source files --available-now
    python -m compliance_assets.streaming --source decisions --bootstrap 127.0.0.1:9092 --topic transactions

Configuration otherwise comes from the environment, as for the Dagster job (LAKE_ROOT, MLFLOW_*,
KAFKA_*, EVENTHUBS_CONNECTION_STRING, PII_HASH_SALT); `--lake` uses a lake folder with its own MLflow
store in <lake>/mlflow, as tests and benchmarks do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from compliance_assets.streaming.stream import StreamOptions, run_stream
from resources import build_resources, resources_for_lake
from resources.kafka import kafka_from_args
from resources.spark import start_session


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m compliance_assets.streaming", description="Run the transaction stream.")
    p.add_argument("--source", choices=("files", "kafka", "decisions"), default="files", help="files: the landing folder; kafka: the transactions topic; decisions: the Delta lane (the decision service's <topic>-decisions).")
    p.add_argument("--lake", help="A lake folder with its MLflow store in <lake>/mlflow (tests, benchmarks); default: the environment's resources.")
    p.add_argument("--salt", default="test-salt", help="PII salt with --lake.")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default KAFKA_BOOTSTRAP_SERVERS).")
    p.add_argument("--topic", help="Kafka topic (default KAFKA_TOPIC or 'transactions').")
    p.add_argument("--available-now", action="store_true", help="Process what is available, then stop.")
    p.add_argument("--stop-after", type=float, default=0.0, help="Stop after this many seconds (0 = until interrupted).")
    p.add_argument("--trigger", type=float, default=1.0, help="Micro-batch interval in seconds.")
    p.add_argument("--max-files", type=int, default=1, help="files: files per micro-batch.")
    p.add_argument("--max-offsets", type=int, default=0, help="kafka: records per micro-batch at most (0 = all).")
    p.add_argument("--delivery-date", default="", help="kafka: replay as this delivery day.")
    p.add_argument("--days-glob", default="*", help="files: landing days to watch (glob on YYYY-MM-DD).")
    p.add_argument("--nice", type=int, default=0, help="Lower the lane's CPU priority by this much (Unix nice; its JVM and Python workers inherit it): "
                   "on a host shared with the decision service, the millisecond lane is then served first.")
    args = p.parse_args(argv)

    kafka = kafka_from_args(args.bootstrap, args.topic)
    resources = resources_for_lake(args.lake, salt=args.salt, kafka=kafka) if args.lake else {**build_resources(), "kafka": kafka}
    options = StreamOptions(
        source=args.source, trigger_seconds=args.trigger, available_now=args.available_now, stop_after_seconds=args.stop_after,
        max_files_per_trigger=args.max_files, max_offsets_per_trigger=args.max_offsets, delivery_date=args.delivery_date, days_glob=args.days_glob,
    )
    if args.nice:
        os.nice(args.nice)  # before the JVM starts, so it and its Python workers inherit it
    spark = start_session()

    def stop(signum, frame):  # SIGTERM (a supervisor stopping us): stop the query between batches
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)

    def on_batch(report) -> None:
        print(json.dumps({"micro_batch": report.batch_id, "records": report.records, "dlq": report.dlq_rows, "duplicates": report.duplicates,
                          "seconds": report.seconds, "p50_ms": report.latency_p50_ms, "p95_ms": report.latency_p95_ms,
                          "partitions": [p.event_date for p in report.partitions]}), flush=True)

    try:
        batches = run_stream(spark, resources["lake"], resources["model_registry"], resources["kafka"], resources["masking"].salt_value(), None, options, on_batch)
    except KeyboardInterrupt:
        print(json.dumps({"stopped": "signal"}), flush=True)
        return 0
    print(json.dumps({"micro_batches": batches}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
