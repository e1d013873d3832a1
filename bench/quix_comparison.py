"""Quix Streams vs the project's runtime (toy processor), same workload, same harness (issue 22).

Runs with an ISOLATED venv that has quixstreams (it pins confluent-kafka<2.13 and pydantic<2.14, which
conflict with the project's venv), e.g.

    /tmp/quixvenv/bin/python bench/quix_comparison.py --bootstrap 127.0.0.1:39092 \
        [--modes toy,quix-alos,quix-eos,quix-eos-100ms] [--rates 1200,5000] [--duration 30] [--backlog 200000]

Imports nothing from the project: the toy service (tests/realtime/toy_service.py, our runtime) is started
as a subprocess with the project's own venv (--toy-python, cwd = the repository). The Quix Streams service
is this script with --serve-quix, also a subprocess, with the equivalent stateful logic: per account (the
message key) a running count and sum in Quix's RocksDB `State`, output JSON {"id","account","n","sum"}
keyed by id.

Workload (as bench/realtime_runtime_probe.py): 4 partitions, events JSON {"id","account","amount"} keyed
by account, 100k accounts, published at a fixed rate by a separate process (this script with --publish,
linger.ms 1, idempotent). Both topics are created with message.timestamp.type=LogAppendTime, because
Quix Streams copies the input's timestamp onto its output (CreateTime would show 0 ms latency):

- broker latency = output's broker append time - input's broker append time (for exactly-once this is
  when the record was written inside the open transaction, NOT when it became readable);
- visible latency = when this harness's read_committed reader received the output - input's append time
  (what a downstream consumer sees; includes the reader's own fetch, a few ms);
- e2e = reader receipt - the publisher's produce() call.

Per rate, a warm-up (50 events on separate accounts, waited for) comes first so group join, topic and
store creation are not measured. Max rate: a backlog of N events is published first, then the service is
started; rate = outputs / (last - first output append time), CPU over the same window (sampled from
/proc every 20 ms). CPU µs/event = the service process's user+sys CPU (all threads) / events.
Writes bench/results/quix_comparison_<UTC timestamp>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLK = os.sysconf("SC_CLK_TCK")
SEED = 7
WARMUP = 50

MODES = {
    # name: (kind, options)
    "toy": ("toy", {"snapshot_every": 5.0}),
    "quix-alos": ("quix", {"guarantee": "at-least-once", "commit_interval": 5.0}),
    "quix-alos-100ms": ("quix", {"guarantee": "at-least-once", "commit_interval": 0.1}),
    "quix-eos": ("quix", {"guarantee": "exactly-once", "commit_interval": 5.0}),
    "quix-eos-100ms": ("quix", {"guarantee": "exactly-once", "commit_interval": 0.1}),
    # the runtime's latency settings (fetch.wait.max.ms 10, linger.ms 1, Nagle off) given to Quix
    "quix-alos-tuned": ("quix", {"guarantee": "at-least-once", "commit_interval": 5.0, "tuned": True}),
}


def account_of(i: int, accounts: int) -> str:
    return f"acct{(i * 7919 + SEED) % accounts}"


# ---------------------------------------------------------------------------------------------------
# subprocess roles


def serve_quix(args) -> int:
    """The Quix Streams service: stateful per-account count and sum."""
    from quixstreams import Application

    consumer_extra, producer_extra = {}, {}
    if args.tuned:
        consumer_extra = {"fetch.wait.max.ms": 10, "socket.nagle.disable": True}
        producer_extra = {"linger.ms": 1, "socket.nagle.disable": True}
    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        commit_interval=args.commit_interval, processing_guarantee=args.guarantee, state_dir=args.state_dir,
        loglevel="INFO", consumer_extra_config=consumer_extra, producer_extra_config=producer_extra,
    )
    source = app.topic(args.input, key_deserializer="str", value_deserializer="json")
    sink = app.topic(args.output, key_serializer="str", value_serializer="json")

    def count(value, state):
        totals = state.get("t", None) or [0, 0]
        totals[0] += 1
        totals[1] += value["amount"]
        state.set("t", totals)
        return {"id": value["id"], "account": value["account"], "n": totals[0], "sum": totals[1]}

    sdf = app.dataframe(source).apply(count, stateful=True)
    sdf.to_topic(sink, key=lambda v: v["id"])
    print("quix service starting", flush=True)
    app.run()
    return 0


def publish(args) -> int:
    """n events at `rate`/s (0: as fast as possible); the produce() wall times (ms) go to --times-file."""
    from confluent_kafka import Producer

    linger = 1 if args.rate > 0 else 20
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": linger, "enable.idempotence": True, "acks": "all",
                         "socket.nagle.disable": True, "batch.num.messages": 10000})
    errors = [0]

    def on_delivery(err, _msg):
        if err is not None:
            errors[0] += 1

    times = array("d", bytes(8 * args.n))
    t0 = time.monotonic()
    i = 0
    while i < args.n:
        if args.rate > 0:
            due = min(args.n, int((time.monotonic() - t0) * args.rate) + 1)
        else:
            due = args.n
        while i < due:
            account = account_of(i, args.accounts)
            value = json.dumps({"id": f"e{i}", "account": account, "amount": (i * 13) % 97 + 1}, separators=(",", ":")).encode()
            try:
                times[i] = time.time() * 1000
                producer.produce(args.topic, value, account.encode(), on_delivery=on_delivery)
                i += 1
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        if args.rate > 0:
            time.sleep(0.0005)
    seconds = time.monotonic() - t0
    producer.flush(120)
    with open(args.times_file, "wb") as f:
        times.tofile(f)
    print(json.dumps({"published": args.n, "errors": errors[0], "seconds": round(seconds, 2), "rate": round(args.n / seconds)}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------
# harness


def pct(values: list[float], q: float):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))], 1)


def summary(values: list[float]) -> dict:
    return {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "p99": pct(values, 0.99), "max": pct(values, 1.0)}


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


class CpuSampler(threading.Thread):
    """(wall ms, CPU s) of a process every 20 ms, to read its CPU over a window after the fact."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.halt = pid, [], threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.samples.append((time.time() * 1000, proc_cpu(self.pid)))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.02)

    def at(self, wall_ms: float) -> float:
        s = self.samples
        if wall_ms <= s[0][0]:
            return s[0][1]
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= wall_ms <= t1:
                return c0 + (c1 - c0) * (wall_ms - t0) / max(1e-9, t1 - t0)
        return s[-1][1]


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1,
                                            config={"message.timestamp.type": "LogAppendTime"}) for t in names], operation_timeout=30)
    for f in futures.values():
        f.result(60)


def reader(bootstrap: str, topic: str, partitions: int):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 5, "isolation.level": "read_committed", "socket.nagle.disable": True})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return c


def drain(c, sink: list, timeout: float) -> None:
    """Block up to `timeout` for one message, then take what is already fetched: (value, append ms, receipt ms)."""
    first = c.poll(timeout)
    if first is None:
        return
    now = time.time() * 1000
    for m in [first] + c.consume(5000, 0):
        if m.error() is None:
            sink.append((m.value(), m.timestamp()[1], now))


def input_timestamps(bootstrap: str, topic: str, partitions: int, expect: int) -> dict[str, int]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"src-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(out) < expect and time.monotonic() < deadline:
        for m in c.consume(5000, 0.2):
            if m.error() is None:
                out[json.loads(m.value())["id"]] = m.timestamp()[1]
    c.close()
    return out


def start_service(mode: str, args, names: dict, work: Path) -> subprocess.Popen:
    kind, opts = MODES[mode]
    log = open(work / "service.log", "wb")
    if kind == "toy":
        cmd = [args.toy_python, "-m", "tests.realtime.toy_service", "--bootstrap", args.bootstrap, "--input", names["input"],
               "--output", names["output"], "--group", names["group"], "--store", str(work / "store"),
               "--snapshot-every", str(opts["snapshot_every"]), "--stats-every", "5"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    cmd = [sys.executable, __file__, "--serve-quix", "--bootstrap", args.bootstrap, "--input", names["input"], "--output", names["output"],
           "--group", names["group"], "--state-dir", str(work / "state"), "--guarantee", opts["guarantee"],
           "--commit-interval", str(opts["commit_interval"])] + (["--tuned"] if opts.get("tuned") else [])
    return subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)


def stop_service(service: subprocess.Popen) -> int | None:
    if service.poll() is None:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(10)
    return service.returncode


def warm_up(args, names: dict, c, service: subprocess.Popen, work: Path) -> float:
    """Publish WARMUP events on their own accounts and wait for all their outputs; returns seconds taken."""
    from confluent_kafka import Producer

    t0 = time.monotonic()
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 1})
    for i in range(WARMUP):
        p.produce(names["input"], json.dumps({"id": f"w{i}", "account": f"warm{i}", "amount": 1}).encode(), f"warm{i}".encode())
    p.flush(30)
    got: list = []
    seen = set()
    while len(seen) < WARMUP:
        if time.monotonic() - t0 > 120 or service.poll() is not None:
            raise RuntimeError(f"service not ready:\n{(work / 'service.log').read_text()[-3000:]}")
        drain(c, got, 0.1)
        seen |= {json.loads(v)["id"] for v, _, _ in got}
    return time.monotonic() - t0


def expected_n(n: int, accounts: int) -> list[int]:
    counts: dict[str, int] = {}
    out = []
    for i in range(n):
        a = account_of(i, accounts)
        counts[a] = counts.get(a, 0) + 1
        out.append(counts[a])
    return out


def analyse(outputs: list, inputs: dict[str, int], send_ms, n: int, accounts: int) -> dict:
    exp = expected_n(n, accounts)
    broker, visible, e2e, wrong, dup = [], [], [], 0, 0
    steady, steady_visible = [], []  # events from the 6th second of load on: without the start-up transient
    by_second: dict[int, list[float]] = {}  # broker latency by the input's second since the first event
    t_first = min((ts for vid, ts in inputs.items() if vid.startswith("e")), default=0)
    seen = set()
    for raw, out_ts, receipt in outputs:
        v = json.loads(raw)
        vid = v["id"]
        if not vid.startswith("e"):
            continue
        if vid in seen:
            dup += 1
            continue
        seen.add(vid)
        i = int(vid[1:])
        if v["n"] != exp[i]:
            wrong += 1
        in_ts = inputs.get(vid)
        if in_ts is not None:
            broker.append(out_ts - in_ts)
            visible.append(receipt - in_ts)
            by_second.setdefault(int((in_ts - t_first) // 1000), []).append(out_ts - in_ts)
            if in_ts - t_first >= 5000:
                steady.append(out_ts - in_ts)
                steady_visible.append(receipt - in_ts)
        if send_ms is not None:
            e2e.append(receipt - send_ms[i])
    return {"decided": len(seen), "duplicates": dup, "wrong_n": wrong, "broker_ms": summary(broker), "visible_ms": summary(visible),
            "e2e_ms": summary(e2e), "broker_ms_after_5s": summary(steady), "visible_ms_after_5s": summary(steady_visible),
            "broker_p95_max_by_second": [[pct(by_second[k], 0.95), pct(by_second[k], 1.0)] for k in sorted(by_second)]}


def run_rate(mode: str, args, rate: float) -> dict:
    tag = uuid.uuid4().hex[:8]
    names = {"input": f"qc-in-{tag}", "output": f"qc-out-{tag}", "group": f"qc-{mode}-{tag}"}
    create_topics(args.bootstrap, [names["input"], names["output"]], args.partitions)
    work = Path(tempfile.mkdtemp(prefix=f"qc-{mode}-"))
    n = int(rate * args.duration)
    load0 = os.getloadavg()
    service = start_service(mode, args, names, work)
    c = reader(args.bootstrap, names["output"], args.partitions)
    outputs: list = []
    try:
        ready_s = warm_up(args, names, c, service, work)
        cpu0 = proc_cpu(service.pid)
        times_file = work / "send_ms.bin"
        pub = subprocess.Popen([sys.executable, __file__, "--publish", "--bootstrap", args.bootstrap, "--topic", names["input"],
                                "--rate", str(rate), "--n", str(n), "--accounts", str(args.accounts), "--times-file", str(times_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        published, last_new = None, time.monotonic()
        while True:
            before = len(outputs)
            drain(c, outputs, 0.05)
            if len(outputs) > before:
                last_new = time.monotonic()
            if published is None and pub.poll() is not None:
                text = pub.stdout.read().decode()
                published = json.loads(text.strip().splitlines()[-1])
            if published is not None and (len(outputs) >= n + WARMUP or time.monotonic() - last_new > args.drain_idle):
                break
            if service.poll() is not None:
                raise RuntimeError(f"service died:\n{(work / 'service.log').read_text()[-3000:]}")
        cpu = proc_cpu(service.pid) - cpu0
    finally:
        rc = stop_service(service)
        c.close()
    send_ms = array("d")
    with open(times_file, "rb") as f:
        send_ms.fromfile(f, n)
    inputs = input_timestamps(args.bootstrap, names["input"], args.partitions, n + WARMUP)
    res = analyse(outputs, inputs, send_ms, n, args.accounts)
    res.update({"mode": mode, "target_rate": rate, "events": n, "publisher": published, "ready_s": round(ready_s, 1),
                "service_us_cpu_per_event": round(cpu / max(1, res["decided"]) * 1e6, 1), "service_exit": rc,
                "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()]})
    return res


def run_backlog(mode: str, args) -> dict:
    tag = uuid.uuid4().hex[:8]
    names = {"input": f"qc-bin-{tag}", "output": f"qc-bout-{tag}", "group": f"qc-b-{mode}-{tag}"}
    create_topics(args.bootstrap, [names["input"], names["output"]], args.partitions)
    work = Path(tempfile.mkdtemp(prefix=f"qc-b-{mode}-"))
    n = args.backlog
    pub = subprocess.run([sys.executable, __file__, "--publish", "--bootstrap", args.bootstrap, "--topic", names["input"],
                          "--rate", "0", "--n", str(n), "--accounts", str(args.accounts), "--times-file", str(work / "send_ms.bin")],
                         capture_output=True, text=True, check=True)
    published = json.loads(pub.stdout.strip().splitlines()[-1])
    load0 = os.getloadavg()
    c = reader(args.bootstrap, names["output"], args.partitions)
    service = start_service(mode, args, names, work)
    sampler = CpuSampler(service.pid)
    sampler.start()
    outputs: list = []
    t0 = time.monotonic()
    try:
        last_new = time.monotonic()
        while len(outputs) < n and time.monotonic() - last_new < max(args.drain_idle, 30) and time.monotonic() - t0 < args.backlog_timeout:
            before = len(outputs)
            drain(c, outputs, 0.05)
            if len(outputs) > before:
                last_new = time.monotonic()
            if service.poll() is not None:
                raise RuntimeError(f"service died:\n{(work / 'service.log').read_text()[-3000:]}")
        time.sleep(0.1)
    finally:
        sampler.halt.set()
        sampler.join()
        rc = stop_service(service)
        c.close()
    stamps = sorted(ts for _, ts, _ in outputs)
    ids = {json.loads(v)["id"] for v, _, _ in outputs}
    first, last = stamps[0], stamps[-1]
    cpu = sampler.at(last) - sampler.at(first)
    rate = (len(stamps) - 1) / max(1e-3, (last - first) / 1000)
    receipts = sorted(r for _, _, r in outputs)
    return {"mode": mode, "backlog": n, "publisher": published, "decided": len(ids), "outputs": len(outputs),
            "max_rate": round(rate), "seconds": round((last - first) / 1000, 2),
            "visible_rate": round((len(receipts) - 1) / max(1e-3, (receipts[-1] - receipts[0]) / 1000)),
            "service_us_cpu_per_event": round(cpu / max(1, len(stamps) - 1) * 1e6, 1), "service_exit": rc,
            "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def versions(args) -> dict:
    import confluent_kafka
    import quixstreams

    toy = subprocess.run([args.toy_python, "-c", "import confluent_kafka as c; print(c.__version__, c.libversion()[0])"],
                         capture_output=True, text=True)
    return {"quixstreams": quixstreams.__version__, "quix_venv_confluent_kafka": confluent_kafka.__version__,
            "quix_venv_librdkafka": confluent_kafka.libversion()[0], "toy_venv_confluent_kafka_librdkafka": toy.stdout.strip(),
            "python": sys.version.split()[0]}


def table(results: dict) -> str:
    rows = ["| mode | rate | broker p50/p95/p99/max ms | visible p50/p95/p99/max ms | CPU us/ev | decided/events | max rate ev/s | CPU us/ev @max |",
            "|---|---|---|---|---|---|---|---|"]
    for mode, r in results["modes"].items():
        b = r.get("backlog", {})
        for lat in r["latency"]:
            f = lambda d: "/".join("-" if d[k] is None else f"{d[k]:g}" for k in ("p50", "p95", "p99", "max"))
            rows.append(f"| {mode} | {lat['target_rate']:g} | {f(lat['broker_ms'])} | {f(lat['visible_ms'])} | {lat['service_us_cpu_per_event']} | "
                        f"{lat['decided']}/{lat['events']} | {b.get('max_rate', '-')} | {b.get('service_us_cpu_per_event', '-')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=os.getenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:39092"))
    p.add_argument("--modes", default="toy,quix-alos,quix-eos,quix-eos-100ms")
    p.add_argument("--rates", default="1200,5000")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--backlog", type=int, default=200_000, help="0 skips the max-rate run")
    p.add_argument("--backlog-timeout", type=float, default=240.0)
    p.add_argument("--drain-idle", type=float, default=15.0, help="stop waiting for outputs after this many idle seconds")
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--toy-python", default=str(REPO / ".venv/bin/python"))
    p.add_argument("--out", default=None)
    # subprocess roles
    p.add_argument("--serve-quix", action="store_true")
    p.add_argument("--publish", action="store_true")
    p.add_argument("--input"), p.add_argument("--output"), p.add_argument("--group"), p.add_argument("--state-dir")
    p.add_argument("--guarantee", default="at-least-once"), p.add_argument("--commit-interval", type=float, default=5.0)
    p.add_argument("--tuned", action="store_true")
    p.add_argument("--topic"), p.add_argument("--rate", type=float, default=0), p.add_argument("--n", type=int, default=0)
    p.add_argument("--times-file")
    args = p.parse_args(argv)
    if args.serve_quix:
        return serve_quix(args)
    if args.publish:
        return publish(args)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = Path(args.out) if args.out else REPO / "bench/results" / f"quix_comparison_{stamp}.json"
    results = {"started": stamp, "host_cpus": os.cpu_count(), "versions": versions(args),
               "settings": {k: getattr(args, k) for k in ("rates", "duration", "backlog", "accounts", "partitions")},
               "loadavg_start": [round(x, 2) for x in os.getloadavg()], "modes": {}}
    for mode in args.modes.split(","):
        entry = results["modes"].setdefault(mode, {"config": MODES[mode][1], "latency": []})
        for rate in (float(r) for r in args.rates.split(",")):
            entry["latency"].append(run_rate(mode, args, rate))
            print(json.dumps(entry["latency"][-1]), flush=True)
            out.write_text(json.dumps(results, indent=1))
        if args.backlog:
            entry["backlog"] = run_backlog(mode, args)
            print(json.dumps(entry["backlog"]), flush=True)
        out.write_text(json.dumps(results, indent=1))
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
