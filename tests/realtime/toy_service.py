"""A toy decision service for the runtime's tests: per-account running count and sum, one output per input.

Input: key = account id, value = JSON {"id", "account", "amount": int}. Output (to --output), key = the
input's id, value = JSON {"id", "account", "n", "sum", "partition", "offset"}: n and sum after this event.
Deterministic, so a replay from a snapshot re-emits byte-identical values.

`python -m tests.realtime.toy_service --bootstrap ... --input ... --output ... --group ... --store DIR
[--snapshot-every S]` runs until SIGTERM/SIGINT (a clean stop with final snapshots); exit 1 on a runtime failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from compliance_assets.realtime.runtime import Output, run
from compliance_assets.realtime.snapshots import SnapshotStore


class ToyProcessor:
    """State per partition: account -> [count, sum]."""

    def __init__(self, output_topic: str) -> None:
        self.output_topic = output_topic
        self.state: dict[int, dict[str, list[int]]] = {}

    def assign(self, partition: int, snapshot: bytes | None) -> None:
        """Restore a partition's accounts from its snapshot, or start empty."""
        self.state[partition] = json.loads(snapshot) if snapshot else {}

    def revoke(self, partition: int) -> None:
        """Forget a partition's accounts."""
        self.state.pop(partition, None)

    def process(self, message) -> list[Output]:
        """Count the event into its account and emit the account's running totals."""
        event = json.loads(message.value())
        partition = message.partition()
        totals = self.state[partition].setdefault(event["account"], [0, 0])
        totals[0] += 1
        totals[1] += event["amount"]
        value = {"id": event["id"], "account": event["account"], "n": totals[0], "sum": totals[1], "partition": partition, "offset": message.offset()}
        return [Output(self.output_topic, event["id"].encode(), json.dumps(value, separators=(",", ":")).encode())]

    def snapshot(self, partition: int) -> bytes:
        """A partition's accounts as JSON (sorted, so equal states give equal bytes)."""
        return json.dumps(self.state[partition], sort_keys=True, separators=(",", ":")).encode()

    def tick(self) -> None:
        """Nothing to refresh."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.realtime.toy_service", description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--snapshot-every", type=float, default=1.0)
    p.add_argument("--session-timeout-ms", type=int, default=6000, help="Group session timeout (the broker's minimum by default: fast failover in tests).")
    p.add_argument("--stats-every", type=float, default=5.0)
    p.add_argument("--assignment-strategy", default="cooperative-sticky", help="partition.assignment.strategy (e.g. range: eager rebalancing).")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    consumer = {"bootstrap.servers": args.bootstrap, "session.timeout.ms": args.session_timeout_ms, "heartbeat.interval.ms": 1000,
                "partition.assignment.strategy": args.assignment_strategy}
    try:
        run(consumer, {"bootstrap.servers": args.bootstrap}, args.input, args.group, ToyProcessor(args.output), SnapshotStore(args.store),
            snapshot_every_s=args.snapshot_every, stop=stop, stats_every_s=args.stats_every,
            on_stats=lambda s: logging.info("stats %s", json.dumps(s.summary())))
    except Exception as e:  # the runtime already logged the failure
        print(f"toy_service failed: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
