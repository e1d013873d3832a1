"""Load generator: publishes a synthetic day's transaction lines to a Kafka topic at a chosen rate.

Every line of the delivery files goes out unchanged (defective ones too, so they reach the DLQ),
keyed by account id so each account's events stay in order within one partition. Used by the demo,
the streaming tests and the benchmarks; `python -m compliance_assets.streaming.loadgen --help`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from confluent_kafka import Producer

from resources.kafka import create_topic

ACCOUNT_ID = re.compile(r'"account_id"\s*:\s*"([^"\\]+)"')
SLICE = 0.005  # pacing granularity: sleep in 5 ms steps, not per message
POLL_EVERY = 256  # serve delivery callbacks every this many messages
FLUSH_TIMEOUT = 60.0


@dataclass
class PublishStats:
    """What one publish did; rate is delivered messages per second of wall time (flush included)."""

    sent: int
    delivered: int
    failed: int
    seconds: float
    rate: float


class PublishError(RuntimeError):
    """Some messages were not delivered; `stats` says how many."""

    def __init__(self, message: str, stats: PublishStats) -> None:
        super().__init__(message)
        self.stats = stats


def delivery_lines(folder: Path | str) -> list[str]:
    """The lines of a delivery folder's part-*.jsonl files in file then line order, every one kept
    (blank and malformed too), split exactly as the batch reader (ingestion.split_lines) does: on
    "\\n", a final newline ends the last line, a "\\r" before the newline belongs to the line break.
    Bytes that are not UTF-8 survive the round trip (surrogateescape) into the message value."""
    lines: list[str] = []
    for path in sorted(Path(folder).glob("part-*.jsonl")):
        parts = path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
        if len(parts) > 1 and parts[-1] == "":
            parts.pop()
        lines += [p[:-1] if p.endswith("\r") else p for p in parts]
    return lines


def account_key(line: str) -> bytes | None:
    """The record's account id as the message key (a regex, not a JSON parse); None if absent."""
    m = ACCOUNT_ID.search(line)
    return m.group(1).encode("utf-8", "surrogateescape") if m else None


def kafka_client_config_from_env() -> dict[str, str]:
    """confluent_kafka settings of the stream's Kafka resource (resources.kafka.kafka_from_env):
    KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CA_LOCATION; with
    EVENTHUBS_CONNECTION_STRING, Event Hubs' SASL_SSL/PLAIN with user `$ConnectionString` and the
    connection string as password. Contains the secret: never print the result."""
    from resources.kafka import kafka_from_env  # imports Dagster: only when publishing from the command line

    return kafka_from_env().confluent_config()


def publish(
    lines: Sequence[str],
    bootstrap: str,
    topic: str,
    rate: float | None,
    producer_config: dict | None = None,
    duration: float | None = None,
    loop: bool = False,
    message: Callable[[Any], tuple[bytes, bytes | None, int | None]] | None = None,
) -> PublishStats:
    """Send the lines (value = the line, key = its account id) at `rate` events/s (None: as fast as
    possible) until they are all sent, or `duration` seconds have passed; `loop` cycles the lines
    until then. `message` turns an item into (value, key, partition or None) at the moment it is sent,
    for items that are not transaction lines (the streaming benchmark's replayed decision records).
    Waits for every delivery; raises PublishError if any message failed."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for as fast as possible)")
    if loop and (duration is None or not lines):
        raise ValueError("loop needs lines and a duration")
    outcome = {"delivered": 0, "failed": 0, "error": None}

    def on_delivery(err, _msg) -> None:
        if err is None:
            outcome["delivered"] += 1
        else:
            outcome["failed"] += 1
            outcome["error"] = outcome["error"] or err

    config = {"linger.ms": 5, "acks": "all", "enable.idempotence": True, **(producer_config or {})}
    producer = Producer({**config, "bootstrap.servers": bootstrap, "on_delivery": on_delivery})
    # token bucket: refilled at `rate`, holding at most 20 ms of events so a stall is not followed by a burst
    burst = max(1.0, (rate or 0) * 4 * SLICE)
    tokens, sent = 0.0, 0
    start = last = time.monotonic()
    end = start + duration if duration is not None else None
    for line in itertools.cycle(lines) if loop else lines:
        if end is not None and time.monotonic() >= end:
            break
        if rate is not None:
            while tokens < 1 and (end is None or last < end):
                now = time.monotonic()
                tokens, last = min(burst, tokens + (now - last) * rate), now
                if tokens < 1:
                    producer.poll(0)
                    time.sleep(min(max((1 - tokens) / rate, SLICE), 0.1))
            if tokens < 1:
                break  # the duration ended while waiting
            tokens -= 1
        if message is None:
            value, key, partition = line.encode("utf-8", "surrogateescape"), account_key(line), None
        else:
            value, key, partition = message(line)
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value=value, key=key)
                else:
                    producer.produce(topic, value=value, key=key, partition=partition)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
        sent += 1
        if sent % POLL_EVERY == 0:
            producer.poll(0)
    undelivered = producer.flush(FLUSH_TIMEOUT)
    seconds = time.monotonic() - start
    failed = outcome["failed"] + undelivered
    stats = PublishStats(sent, outcome["delivered"], failed, round(seconds, 3), round(outcome["delivered"] / seconds, 1) if seconds else 0.0)
    if failed:
        reason = outcome["error"] or f"{undelivered} still queued after {FLUSH_TIMEOUT:.0f}s"
        raise PublishError(f"{failed} of {sent} messages to {topic} were not delivered: {reason}", stats)
    return stats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from compliance_assets.synthetic.synth_cli import default_landing_root
    from compliance_assets.synthetic.config import SynthConfig

    p = argparse.ArgumentParser(prog="python -m compliance_assets.streaming.loadgen", description="Publish synthetic transactions to a Kafka topic at a chosen rate.")
    p.add_argument("--topic", default=os.getenv("KAFKA_TOPIC", "transactions"), help="Topic (default: $KAFKA_TOPIC, else transactions).")
    p.add_argument("--rate", type=float, default=None, help="Events per second (default: as fast as possible).")
    p.add_argument("--duration", type=float, default=None, help="Stop after this many seconds.")
    p.add_argument("--loop", action="store_true", help="Cycle the lines until --duration ends.")
    p.add_argument("--bootstrap", default=None, help="host:port list (default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).")
    p.add_argument("--partitions", type=int, default=2, help="Partitions if the topic is created (default 2).")
    p.add_argument("--no-create-topic", action="store_true", help="Do not create the topic (e.g. an event hub managed elsewhere).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="A delivery folder with part-*.jsonl files.")
    src.add_argument("--day", type=dt.date.fromisoformat, help="Generate this synthetic day (YYYY-MM-DD) first, then publish it.")
    p.add_argument("--events", type=int, default=SynthConfig.events_per_day, help="With --day: stream lines of the day.")
    p.add_argument("--seed", type=int, default=SynthConfig.seed, help="With --day: random seed.")
    p.add_argument("--population-events", type=int, default=SynthConfig.events_per_day, help="With --day: events per day of the lake's synthetic days (their population size; default: the demo's).")
    p.add_argument("--landing-root", type=Path, default=None, help="With --day: where to generate it (default as compliance-synth; use a scratch folder to keep it out of the landing area).")
    args = p.parse_args(argv)
    if args.loop and args.duration is None:
        p.error("--loop needs --duration")
    if args.day is not None:
        args.landing_root = args.landing_root or default_landing_root()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.day is not None:
        from compliance_assets.synthetic.config import SynthConfig
        from compliance_assets.synthetic.writer import generate_day

        # the population (accounts, merchants) of the lake's days, so reference lookups succeed
        population = SynthConfig(seed=args.seed, events_per_day=args.population_events)
        config = SynthConfig(seed=args.seed, events_per_day=args.events, n_accounts=population.accounts, n_merchants=population.merchants)
        generate_day(config, args.landing_root, args.day)
        folder = args.landing_root / "transactions" / f"event_date={args.day.isoformat()}"
    else:
        folder = args.folder
    lines = delivery_lines(folder)
    client = kafka_client_config_from_env()
    bootstrap = args.bootstrap or client["bootstrap.servers"]
    del client["bootstrap.servers"]
    if not args.no_create_topic:
        create_topic(bootstrap, args.topic, args.partitions, client)
    summary = {"topic": args.topic, "bootstrap": bootstrap, "folder": str(folder), "lines": len(lines), "target_rate": args.rate}
    try:
        stats = publish(lines, bootstrap, args.topic, args.rate, client, args.duration, args.loop)
    except PublishError as e:
        print(json.dumps({**summary, **asdict(e.stats), "error": str(e)}), flush=True)
        return 1
    print(json.dumps({**summary, **asdict(stats)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
