"""Probe of the real-time runtime (compliance_assets/realtime/runtime.py) with the toy processor of
tests/realtime/toy_service.py, on a running broker: not a test, a measurement.

1. Overhead: N pre-published events decided in-process by the runtime with a no-op processor (one fixed
   output per event) and with the toy processor, against a bare consume-and-produce loop doing the same
   Kafka work; CPU µs per event (this process, librdkafka threads included) and events/s.
2. Latency: the toy service as its own process (as deployed), fed by the load generator's CLI (a third
   process) at each rate for a while; event-to-decision latency = the output's broker timestamp minus its
   input's (both CreateTime: the load generator's produce call, the runtime's hand-off to its producer),
   and event-to-arrival = when this process received the output minus the input's timestamp. Also the
   service's CPU per event.

    python bench/realtime_runtime_probe.py --bootstrap 127.0.0.1:9092 [--rates 1200,5000] [--duration 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compliance_assets.realtime.runtime import Output, run  # noqa: E402
from compliance_assets.realtime.snapshots import SnapshotStore  # noqa: E402
from compliance_assets.streaming.loadgen import create_topic  # noqa: E402
from tests.realtime.toy_service import ToyProcessor  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def lines(n: int, accounts: int, seed: int = 0) -> list[str]:
    """n toy events as JSON lines; `account_id` too, so the load generator keys them by account."""
    out = []
    for i in range(n):
        account = f"acct{(i * 7919 + seed) % accounts}"
        out.append(json.dumps({"id": f"e{seed}-{i}", "account": account, "account_id": account, "amount": (i * 13) % 97 + 1}))
    return out


def prepublish(bootstrap: str, topic: str, payload: list[str]) -> None:
    """Publish as fast as possible, keyed by account."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000})
    for line in payload:
        while True:
            try:
                producer.produce(topic, line.encode(), json.loads(line)["account"].encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))], 2)


def proc_cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, all its threads."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class NullProcessor:
    """One fixed output per event, no state: the runtime's own cost. Sets `done` after `n` events."""

    def __init__(self, topic: str, n: int) -> None:
        self.out, self.n, self.seen, self.done = [Output(topic, b"k", b"{}")], n, 0, threading.Event()

    def assign(self, partition, snapshot):
        pass

    def revoke(self, partition):
        pass

    def process(self, message):
        self.seen += 1
        if self.seen >= self.n:
            self.done.set()
        return self.out

    def snapshot(self, partition):
        return b""

    def tick(self):
        pass


class CountingToy(ToyProcessor):
    """The toy processor that sets `done` after `n` events."""

    def __init__(self, topic: str, n: int) -> None:
        super().__init__(topic)
        self.n, self.seen, self.done = n, 0, threading.Event()

    def process(self, message):
        self.seen += 1
        if self.seen >= self.n:
            self.done.set()
        return super().process(message)


def overhead(bootstrap: str, n: int, accounts: int, partitions: int) -> dict:
    """CPU per event and rate: bare loop vs the runtime with a no-op and with the toy processor."""
    tag = uuid.uuid4().hex[:8]
    source = f"probe-src-{tag}"
    create_topic(bootstrap, source, partitions)
    prepublish(bootstrap, source, lines(n, accounts))
    results = {}

    # bare: consume every event and produce one output per event, nothing else
    sink = f"probe-bare-{tag}"
    create_topic(bootstrap, sink, partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bare-{tag}", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True, "acks": "all"})
    consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in range(partitions)])
    cpu, wall, seen = proc_cpu(), time.monotonic(), 0
    while seen < n:
        batch = consumer.consume(500, 0.1)
        for m in batch:
            if m.error() is None:
                producer.produce(sink, b"{}", b"k")
                seen += 1
        producer.poll(0)
    producer.flush(60)
    results["bare_loop"] = {"us_cpu_per_event": round((proc_cpu() - cpu) / n * 1e6, 1), "rate": round(n / (time.monotonic() - wall))}
    consumer.close()
    producer.close()

    for name, make in (("runtime_noop", NullProcessor), ("runtime_toy", CountingToy)):
        sink = f"probe-{name}-{tag}"
        create_topic(bootstrap, sink, partitions)
        processor, stop = make(sink, n), threading.Event()
        with tempfile.TemporaryDirectory() as store:
            holder = {}
            thread = threading.Thread(target=lambda: holder.setdefault("stats", run(
                {"bootstrap.servers": bootstrap}, {"bootstrap.servers": bootstrap}, source, f"{name}-{tag}", processor,
                SnapshotStore(store), snapshot_every_s=5.0, stop=stop)))
            thread.start()
            # time from the first decided event, not from the group join
            while processor.seen == 0:
                time.sleep(0.001)
            cpu, wall, first = proc_cpu(), time.monotonic(), processor.seen
            processor.done.wait(120)
            seconds, used = time.monotonic() - wall, proc_cpu() - cpu
            stop.set()
            thread.join()
        results[name] = {"us_cpu_per_event": round(used / (n - first) * 1e6, 1), "rate": round((n - first) / seconds)}
    results["runtime_overhead_us_per_event"] = round(results["runtime_noop"]["us_cpu_per_event"] - results["bare_loop"]["us_cpu_per_event"], 1)
    return results


def latency(bootstrap: str, rate: float, duration: float, accounts: int, partitions: int, snapshot_every: float) -> dict:
    """The toy service (own process) fed at `rate` by the load generator (own process) for `duration` s."""
    tag = uuid.uuid4().hex[:8]
    names = {"input": f"probe-in-{tag}", "output": f"probe-out-{tag}", "group": f"probe-{tag}"}
    for topic in (names["input"], names["output"]):
        create_topic(bootstrap, topic, partitions)
    work = Path(tempfile.mkdtemp(prefix="rt-probe-"))
    delivery = work / "delivery"
    delivery.mkdir()
    (delivery / "part-00000.jsonl").write_text("\n".join(lines(int(rate * duration) + 1, accounts, seed=int(rate))) + "\n")
    log = work / "service.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    service = subprocess.Popen(
        [sys.executable, "-m", "tests.realtime.toy_service", "--bootstrap", bootstrap, "--input", names["input"], "--output", names["output"],
         "--group", names["group"], "--store", str(work / "snapshots"), "--snapshot-every", str(snapshot_every), "--stats-every", "5"],
        cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{tag}", "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    reader.assign([TopicPartition(names["output"], p, OFFSET_BEGINNING) for p in range(partitions)])
    try:
        deadline = time.monotonic() + 30
        while "assigned" not in log.read_text():
            if time.monotonic() > deadline or service.poll() is not None:
                raise RuntimeError(f"the service did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        cpu0 = proc_cpu(service.pid)
        publisher = subprocess.Popen(
            [sys.executable, "-m", "compliance_assets.streaming.loadgen", "--folder", str(delivery), "--topic", names["input"],
             "--rate", str(rate), "--duration", str(duration), "--no-create-topic", "--bootstrap", bootstrap],
            cwd=REPO, env={**env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        arrivals: dict[str, tuple[int, float, int, int]] = {}  # id -> output timestamp, arrival, input partition/offset
        published = None
        while True:
            # block for one, then drain what is there: consume(n, timeout) would wait for n or the timeout
            first = reader.poll(0.05)
            for m in ([first] + reader.consume(2000, 0)) if first is not None else []:
                if m.error() is None:
                    v = json.loads(m.value())
                    arrivals.setdefault(v["id"], (m.timestamp()[1], time.time() * 1000, v["partition"], v["offset"]))
            if published is None and publisher.poll() is not None:
                published = json.loads(publisher.stdout.read().decode().strip().splitlines()[-1])
                drain_until = time.monotonic() + 10
            if published is not None and (len(arrivals) >= published["delivered"] or time.monotonic() > drain_until):
                break
        cpu = proc_cpu(service.pid) - cpu0
    finally:
        service.terminate()
        service.wait(30)
        reader.close()
    # input timestamps, by partition and offset
    inputs: dict[tuple[int, int], int] = {}
    source = Consumer({"bootstrap.servers": bootstrap, "group.id": f"src-{tag}", "enable.auto.commit": False})
    source.assign([TopicPartition(names["input"], p, OFFSET_BEGINNING) for p in range(partitions)])
    deadline = time.monotonic() + 30
    while len(inputs) < published["delivered"] and time.monotonic() < deadline:
        for m in source.consume(5000, 0.2):
            if m.error() is None:
                inputs[(m.partition(), m.offset())] = m.timestamp()[1]
    source.close()
    decided = [out_ts - inputs[(p, o)] for out_ts, _, p, o in arrivals.values() if (p, o) in inputs]
    arrived = [arr - inputs[(p, o)] for _, arr, p, o in arrivals.values() if (p, o) in inputs]
    service_stats = [json.loads(s) for s in re.findall(r"stats (\{.*\})", log.read_text())]
    return {
        "target_rate": rate, "published_rate": published["rate"], "events": published["delivered"], "decided": len(arrivals),
        "event_to_decision_ms": {"p50": pct(decided, 0.5), "p95": pct(decided, 0.95), "p99": pct(decided, 0.99), "max": pct(decided, 1.0)},
        "event_to_arrival_ms": {"p50": pct(arrived, 0.5), "p95": pct(arrived, 0.95), "p99": pct(arrived, 0.99), "max": pct(arrived, 1.0)},
        "service_us_cpu_per_event": round(cpu / max(1, len(arrivals)) * 1e6, 1),
        "service_windows_p95_ms": [s["p95_ms"] for s in service_stats],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=os.getenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--rates", default="1200,5000", help="Comma-separated events/s for the latency runs.")
    p.add_argument("--duration", type=float, default=20.0, help="Seconds per rate.")
    p.add_argument("--overhead-events", type=int, default=100_000)
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--snapshot-every", type=float, default=5.0)
    p.add_argument("--skip-overhead", action="store_true")
    args = p.parse_args(argv)
    if not args.skip_overhead:
        print(json.dumps({"overhead": overhead(args.bootstrap, args.overhead_events, args.accounts, args.partitions)}), flush=True)
    for rate in (float(r) for r in args.rates.split(",")):
        print(json.dumps({"latency": latency(args.bootstrap, rate, args.duration, args.accounts, args.partitions, args.snapshot_every)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
