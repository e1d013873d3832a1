"""Command line: run the decision service outside Dagster (benchmarks, the crash tests, a container).

    python -m compliance_assets.realtime --bootstrap 127.0.0.1:9092 --topic transactions

Configuration otherwise comes from the environment, as for the Dagster job (LAKE_ROOT, MLFLOW_*, KAFKA_*,
EVENTHUBS_CONNECTION_STRING, PII_HASH_SALT); `--lake` uses a lake folder with its own MLflow store in
<lake>/mlflow, as tests and benchmarks do. SIGTERM stops it cleanly (final state snapshots); one JSON line
of statistics is printed every few seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from compliance_assets.realtime.service import ServiceOptions, run_service
from resources import build_resources, resources_for_lake
from resources.kafka import kafka_from_args
from resources.spark import start_session


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m compliance_assets.realtime", description="Run the real-time decision service.")
    p.add_argument("--lake", help="A lake folder with its MLflow store in <lake>/mlflow (tests, benchmarks); default: the environment's resources.")
    p.add_argument("--salt", default="test-salt", help="PII salt with --lake.")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default KAFKA_BOOTSTRAP_SERVERS).")
    p.add_argument("--topic", help="Transactions topic (default KAFKA_TOPIC or 'transactions').")
    p.add_argument("--group", default=ServiceOptions.group_id, help="Consumer group of the service's instances.")
    p.add_argument("--delivery-date", default="", help="Replay as this delivery day (YYYY-MM-DD); default each event's arrival date.")
    p.add_argument("--snapshot-every", type=float, default=ServiceOptions.snapshot_seconds, help="Seconds between state snapshots.")
    p.add_argument("--refresh-every", type=float, default=ServiceOptions.refresh_seconds, help="Seconds between champion / reference checks.")
    p.add_argument("--hot-accounts", type=int, default=ServiceOptions.hot_accounts,
                   help="Per partition: the most recently used accounts kept unpacked; the others are packed (about 1 KB each at 30 events).")
    p.add_argument("--stop-after", type=float, default=0.0, help="Stop after this many seconds (0 = until SIGTERM).")
    p.add_argument("--stats-every", type=float, default=5.0, help="Seconds between statistics lines.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    kafka = kafka_from_args(args.bootstrap, args.topic)
    resources = resources_for_lake(args.lake, salt=args.salt, kafka=kafka) if args.lake else {**build_resources(), "kafka": kafka}
    options = ServiceOptions(group_id=args.group, delivery_date=args.delivery_date, snapshot_seconds=args.snapshot_every, refresh_seconds=args.refresh_every, hot_accounts=args.hot_accounts)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    spark = start_session()

    def report(stats) -> None:
        print(json.dumps(stats.summary()), flush=True)

    try:
        run_service(spark, resources["lake"], resources["model_registry"], resources["kafka"], resources["masking"].salt_value(), options,
                    stop=stop, on_stats=report, max_runtime_s=args.stop_after, stats_every_s=args.stats_every)
    except KeyboardInterrupt:
        pass
    print(json.dumps({"stopped": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
