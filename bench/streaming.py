"""Benchmark: both streaming lanes of issue 22 through a real Kafka broker, with the real Delta lake.

- the decision service (`python -m compliance_assets.realtime`): event-to-decision latency, the
  decision message's broker timestamp minus its input message's broker timestamp (both topics use
  LogAppendTime, so both are the broker's append times; `--create-time` keeps producer CreateTime);
- the Delta lane (`python -m compliance_assets.streaming --source decisions`): event-to-gold latency,
  input broker time -> the gold commit, per micro-batch from `stream_batches` (what the lane reports)
  and per event from the gold files the phase added (file written - input broker time), the rate it
  wrote and its backlog (input offsets not yet in the lake) while and after publishing;
- CPU per event of each process (psutil): the service's Python process and its (idle) JVM, the lane's
  JVM + Python, the broker; the machine's load average and how busy the other processes kept it;
- memory of the per-account state (realtime/account_state.py): account states built in this process
  for synthetic accounts (tracemalloc and snapshot bytes), frozen as the service keeps all but its
  `hot_accounts` most recently used ones, and hot; the steady state of 1M accounts (the hot bound hot,
  the rest frozen) at 30 events per account, with uniform coordinates (pessimistic) and with accounts
  transacting near home as compliance_assets/synthetic generates them, and at the demo population's
  events per account in the state's window; the CPU of touching a frozen account (thaw, update, freeze).

Needs a lake with a champion model: the demo's (run `bash scripts/demo.sh` first; `--lake` and
`--mlflow` point at another one, e.g. a demo run with another LAKE_ROOT / MLFLOW_HOME). Its tables and
MLflow store are copied to a scratch folder (the registry's artifact paths rewritten to the copy), so
the demo stays as it is; both lanes run with `--lake <scratch lake>` (MLflow in <lake>/mlflow).

1. Starts a single-node KRaft broker (scripts/kafka.sh) on free ports; creates the input topic with
   --partitions partitions and its `-decisions` and `-dlq` topics with the same count.
2. Generates today's synthetic transactions for the demo's population (same seed, accounts and
   merchants, so reference lookups succeed; defects included, so rejects and the DLQ are part of the
   cost) and splits them into one delivery folder per phase.
3. Starts the decision service (`--delivery-date` today: the newest reference snapshots on or before
   it) and the Delta lane as their own processes, each with its own JVM, as deployed, and waits until a
   warm-up burst has been decided and has reached gold.
4. Sustained: publishes at --rate events/s for --duration seconds from a separate publisher process
   (compliance_assets.streaming.loadgen.publish, so the publisher does not share this process' GIL),
   samples both lanes' backlog every few seconds, waits until every event is decided and in gold,
   then reads the phase's decisions back from the decisions topic (p50/p95/p99/max) and the lane's
   `stream_batches` rows and gold files (delta-rs).
5. Ramp (--ramp): the same for --step-seconds at each rate. The decision lane's highest rate is the
   highest step with p95 < --decision-target-ms whose publisher reached 90% of the rate; the Delta
   lane's the highest step with event-to-gold p95 < --gold-target-s that it also kept up with (all of
   the step in gold within --gold-target-s of the last event published).
6. State (after the lanes stopped; alone with --state-only): memory as above, the CPU of one
   `AccountState.update` by the number of the account's events in its window, and of a cold touch.

The Delta lane runs at CPU priority --lane-nice below the service (its `--nice`), as on a host both share.
With `--lanes delta` the lane is measured alone: each phase's events are decided first (at --record-rate,
not measured), then the phase's decision records are republished to the lane's own topic at the phase's
rate (REPUBLISHER: partition for partition, in order, arrival and decision times set to the moment of
sending), so event-to-gold runs from when a record reaches the lane, and the idle service takes no CPU.

    .venv/bin/python bench/streaming.py                                   # 1,200 ev/s for 5 minutes, then the ramp
    .venv/bin/python bench/streaming.py --duration 30 --ramp 2500 --step-seconds 20    # a smoke run
    .venv/bin/python bench/streaming.py --lake /tmp/demo/lake --mlflow /tmp/demo/mlruns
    .venv/bin/python bench/streaming.py --lanes delta --duration 120 --ramp 2500,5000 --step-seconds 60 --record-rate 3000

Caveat: the demo's population is 2,000 accounts (its reference data knows no others), so a run puts all
its events (about 1.9M at the defaults) on them: each account's window grows far denser than the demo's
~10 events a day, and the service's per-event state walk slows as the run goes on (the state figures
give the cost of one update by the number of events in the window).

Writes bench/results/streaming_[decision_|delta_]<rate>_<timestamp>.json and prints a table; --keep keeps the scratch
folder (logs of the broker, the service and the lane).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compliance_assets.realtime.account_state import TIE_SLOTS, AccountState, AccountStates, dump_states, freeze, thaw  # noqa: E402
from compliance_assets.realtime.service import ServiceOptions  # noqa: E402
from compliance_assets.streaming.loadgen import delivery_lines  # noqa: E402
from compliance_assets.synthetic.config import SynthConfig  # noqa: E402
from compliance_assets.synthetic.entities import CITY_LAT, CITY_LON, NEARBY_CITY  # noqa: E402
from compliance_assets.synthetic.writer import generate_day  # noqa: E402
from compliance_assets.transforms.features import HISTORY_DAYS  # noqa: E402
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS  # noqa: E402

WARMUP_EVENTS, WARMUP_RATE = 2000, 500.0
SAMPLE_EVERY_S = 5.0

# The publisher: its own process, so pacing and producing do not compete with this one's GIL.
PUBLISHER = r"""
import json, sys, time
from compliance_assets.streaming.loadgen import delivery_lines, publish
folder, bootstrap, topic, rate = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
lines = delivery_lines(folder)
start = time.time()
stats = publish(lines, bootstrap, topic, rate=rate)
print(json.dumps({"start": start, "end": time.time(), "sent": stats.sent, "delivered": stats.delivered,
                  "seconds": stats.seconds, "rate": stats.rate}), flush=True)
"""

# --lanes delta: the Delta lane fed alone. A phase's decision records (recorded first, at the service's pace) are
# republished at the rate under test to the lane's own topic, partition for partition and in order, their arrival
# and decision times set to the moment each is sent: the lane's event-to-gold latency then starts when its input
# reaches it, and the decision service, idle meanwhile, takes no CPU from it.
REPLAY_TOPIC = "replay"
REPUBLISHER = r"""
import datetime as dt, json, re, sys, time
from confluent_kafka import Consumer, TopicPartition
from compliance_assets.streaming.loadgen import publish
bootstrap, source, target, rate, ranges = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), json.loads(sys.argv[5])
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-republisher", "enable.auto.commit": False, "fetch.max.bytes": 52428800})
todo = {int(p): end for p, (begin, end) in ranges.items() if end > begin}
consumer.assign([TopicPartition(source, p, ranges[str(p)][0]) for p in todo])
records, deadline = [], time.monotonic() + 300
while todo:
    if time.monotonic() > deadline:
        sys.exit(f"could not read the recorded decisions {ranges} of {source}")
    for m in consumer.consume(5000, 2.0):
        if m.error() is not None or m.partition() not in todo or m.offset() >= todo[m.partition()]:
            continue
        records.append((m.timestamp()[1], m.partition(), m.offset(), m.key(), m.value()))
        if m.offset() == todo[m.partition()] - 1:
            del todo[m.partition()]
consumer.close()
records.sort()  # the order the service published them in (per partition: offset order)
TIMES = re.compile(rb'"(arrived_at|decided_at)":"[^"]*"')
def message(r):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds").encode()
    return TIMES.sub(lambda m: b'"' + m.group(1) + b'":"' + now + b'"', r[4]), r[3], r[1]
start = time.time()
stats = publish(records, bootstrap, target, rate=rate, message=message)
print(json.dumps({"start": start, "end": time.time(), "sent": stats.sent, "delivered": stats.delivered,
                  "seconds": stats.seconds, "rate": stats.rate}), flush=True)
"""


def free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def follow(proc: subprocess.Popen, what: str, sample: Callable[[], dict]) -> tuple[dict, list[dict]]:
    """Sample every SAMPLE_EVERY_S while a publisher process runs; its summary (the last output line, JSON) and the samples."""
    t0, samples = time.time(), []
    while proc.poll() is None:
        time.sleep(SAMPLE_EVERY_S)
        t = round(time.time() - t0, 1)
        try:
            samples.append({"t": t, **sample()})
        except Exception as e:  # sampling is best effort
            samples.append({"t": t, "error": repr(e)})
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {out}")
    return json.loads(out.strip().splitlines()[-1]), samples


def pct(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def copy_mlflow(src: Path, dst: Path) -> None:
    """The MLflow store (SQLite + artifacts) copied, its absolute artifact paths rewritten to the copy."""
    shutil.copytree(src, dst)
    old, new = str(src.resolve()), str(dst.resolve())
    with sqlite3.connect(dst / "mlflow.db") as db:
        for (table,) in db.execute("select name from sqlite_master where type='table'").fetchall():
            for column in db.execute(f'pragma table_info("{table}")').fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    db.execute(f'update "{table}" set "{column[1]}" = replace("{column[1]}", ?, ?) where "{column[1]}" like ?', (old, new, f"%{old}%"))


def create_topics(bootstrap: str, topics: list[str], partitions: int, log_append_time: bool) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, config=config) for t in topics], operation_timeout=30)
    for topic, future in futures.items():
        error = future.exception(timeout=60)
        if error is not None and error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise RuntimeError(f"creating {topic}: {error}")


class Lake:
    """delta-rs reads of the lane's progress and gold."""

    def __init__(self, root: Path, stream: str):
        self.root, self.stream = root, stream

    def progress(self):
        path = self.root / "tables" / "stream_batches"
        if not (path / "_delta_log").exists():
            return None
        try:
            df = DeltaTable(str(path)).to_pandas()
        except Exception:  # the first commit is being written
            return None
        df = df[df["stream"] == self.stream]
        if getattr(df["processed_at"].dtype, "tz", None) is not None:
            df["processed_at"] = df["processed_at"].dt.tz_convert(None)
        return df

    def marks(self) -> dict[str, int]:
        """The highest input offset in the lake per input partition ("topic/p"), from the newest batch."""
        df = self.progress()
        if df is None or df.empty or "input_offsets" not in df.columns:
            return {}
        last = df[df["input_offsets"].notna()].sort_values("batch_id")
        return json.loads(last["input_offsets"].iloc[-1]) if len(last) else {}

    def gold_since(self, since: float) -> np.ndarray:
        """(written_ms, arrived_ms) of the gold rows in files added at or after `since` (epoch seconds)."""
        path = self.root / "tables" / "risk_scores_gold"
        adds = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).to_pandas()
        mtime = adds["modification_time"]
        if hasattr(mtime, "dt"):  # a timestamp column: epoch milliseconds whatever its unit
            mtime = mtime.dt.tz_localize(None) if mtime.dt.tz is not None else mtime
            mtime_ms = mtime.astype("datetime64[ns]").astype("int64") // 1_000_000
        else:
            mtime_ms = mtime.astype("int64")
        out = []
        for rel, written in zip(adds["path"], mtime_ms):
            if written < since * 1000:
                continue
            t = pq.read_table(path / rel, columns=["scored_at", "latency_ms"])
            scored = t["scored_at"].cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(zero_copy_only=False) / 1000.0
            arrived = scored - t["latency_ms"].to_numpy(zero_copy_only=False)
            out.append(np.column_stack([np.full(len(arrived), float(written)), arrived]))
        return np.vstack(out) if out else np.empty((0, 2))


class Procs:
    """CPU seconds and memory of the processes under test."""

    def __init__(self, service: int, lane: int | None, broker: int | None):
        self.service, self.lane = psutil.Process(service), psutil.Process(lane) if lane else None
        self.broker = psutil.Process(broker) if broker else None

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        try:
            t = p.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def _tree(self, p: psutil.Process) -> list[psutil.Process]:
        try:
            return p.children(recursive=True)
        except psutil.Error:
            return []

    def snapshot(self) -> dict:
        lane_tree = [self.lane, *self._tree(self.lane)] if self.lane else []
        try:
            reaped = self.lane.cpu_times().children_user + self.lane.cpu_times().children_system if self.lane else 0.0
        except psutil.Error:
            reaped = 0.0
        system = psutil.cpu_times()
        return {
            "at": time.time(),
            "service_python": self._cpu(self.service),
            "service_jvm": sum(self._cpu(c) for c in self._tree(self.service)),
            "lane": sum(self._cpu(p) for p in lane_tree) + reaped,
            "broker": self._cpu(self.broker) if self.broker else 0.0,
            "system_busy": system.user + system.system + system.nice + getattr(system, "irq", 0) + getattr(system, "softirq", 0),
            "system_total": sum(system),
        }

    def memory_mb(self) -> dict:
        def rss(ps):
            total = 0
            for p in ps:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            return round(total / 2**20, 1)

        return {"service_python_rss_mb": rss([self.service]), "service_jvm_rss_mb": rss(self._tree(self.service)),
                "lane_rss_mb": rss([self.lane, *self._tree(self.lane)]) if self.lane else 0.0, "broker_rss_mb": rss([self.broker] if self.broker else [])}


class Bench:
    def __init__(self, args, work: Path, lake: Path, bootstrap: str, topic: str, partitions: int):
        self.args, self.work, self.lake_root, self.bootstrap, self.topic, self.partitions = args, work, lake, bootstrap, topic, partitions
        self.decisions = topic + "-decisions"
        self.lane_input = REPLAY_TOPIC + "-decisions" if args.lanes == "delta" else self.decisions
        self.lake = Lake(lake, f"decisions_{self.lane_input}")
        self.meta = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-meta", "enable.auto.commit": False})
        self.procs: Procs | None = None
        self.service_log = work / "service.log"
        self.loads: list[tuple[float, float]] = []
        self.service_saturated: str | None = None  # the phase the service did not drain within --drain-timeout
        self.lane_saturated: str | None = None  # the phase the lane did not write within --drain-timeout
        self._sampling = threading.Event()
        threading.Thread(target=self._sample_load, daemon=True).start()

    def _sample_load(self) -> None:
        while not self._sampling.wait(10.0):
            self.loads.append((time.time(), os.getloadavg()[0]))

    def highs(self, topic: str) -> list[int]:
        """Each partition's end offset (retried while a just-created topic has no leader yet)."""
        for attempt in range(20):
            try:
                return [self.meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in range(self.partitions)]
            except KafkaException:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def lane_backlog(self, input_highs: list[int]) -> int:
        marks = self.lake.marks()
        return sum(max(0, h - 1 - marks.get(f"{self.topic}/{p}", -1)) for p, h in enumerate(input_highs))

    def wait_decided(self, start: list[int], expected: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(self.highs(self.decisions)) - sum(start) >= expected:
                return time.time()
            time.sleep(0.25)
        raise TimeoutError(f"the decision service did not decide {expected} events within {timeout:.0f} s (see {self.service_log})")

    def wait_gold(self, input_highs: list[int], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lane_backlog(input_highs) == 0:
                return time.time()
            time.sleep(0.5)
        raise TimeoutError(f"the Delta lane did not write every decision within {timeout:.0f} s (see {self.work / 'lane.log'})")

    def read_decisions(self, start: list[int], end: list[int]) -> dict:
        """The phase's decisions: broker-to-broker latency, in-service latency, outcomes."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-reader", "enable.auto.commit": False, "fetch.max.bytes": 52428800})
        todo = {p: e for p, e in enumerate(end) if e > start[p]}
        consumer.assign([TopicPartition(self.decisions, p, start[p]) for p in todo])
        to_decision, in_service, outcomes, ts_types = [], [], {}, set()
        epoch = dt.datetime(1970, 1, 1)
        deadline = time.monotonic() + 600
        try:
            while todo and time.monotonic() < deadline:
                for m in consumer.consume(2000, 2.0):
                    if m.error() is not None or m.partition() not in todo:
                        continue
                    if m.offset() >= todo[m.partition()]:
                        continue
                    kind, ts = m.timestamp()
                    ts_types.add(kind)
                    r = json.loads(m.value())
                    arrived = (dt.datetime.fromisoformat(r["arrived_at"]) - epoch) / dt.timedelta(milliseconds=1)
                    decided = (dt.datetime.fromisoformat(r["decided_at"]) - epoch) / dt.timedelta(milliseconds=1)
                    to_decision.append(ts - arrived)
                    in_service.append(decided - arrived)
                    outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
                    if m.offset() >= todo[m.partition()] - 1:
                        del todo[m.partition()]
        finally:
            consumer.close()
        lat = np.asarray(to_decision)
        return {
            "decisions": len(lat), "outcomes": outcomes,
            "timestamps": "LogAppendTime" if ts_types == {TIMESTAMP_LOG_APPEND_TIME} else "CreateTime",
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "max_ms": round(float(lat.max()), 1) if len(lat) else None,
            "arrival_to_decided_at_p95_ms": pct(np.asarray(in_service), 95),
        }

    def service_stats(self, start_pos: int) -> dict:
        """The service's own stats lines (input broker time -> hand-off to its producer) since `start_pos`."""
        with open(self.service_log, "rb") as f:
            f.seek(start_pos)
            lines = f.read().decode("utf-8", "replace").splitlines()
        windows = []
        for line in lines:
            if line.startswith("{") and '"p95_ms"' in line:
                try:
                    w = json.loads(line)
                except ValueError:
                    continue
                if w.get("p95_ms") is not None and w.get("rate", 0) > 0:
                    windows.append(w)
        if not windows:
            return {}
        return {"windows": len(windows), "p95_ms_max_window": max(w["p95_ms"] for w in windows),
                "p95_ms_median_window": float(np.median([w["p95_ms"] for w in windows])), "max_ms": max(w["max_ms"] for w in windows)}

    def publish(self, folder: Path, rate: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", PUBLISHER, str(folder), self.bootstrap, self.topic, str(rate)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def phase(self, name: str, folder: Path, rate: float, expected: int, warm: bool = False) -> dict:
        """Publish a folder at `rate`, follow both lanes, wait for both (at most --drain-timeout), measure."""
        lane_measured = self.lane_saturated is None
        load_start = os.getloadavg()
        dec_start, in_start = self.highs(self.decisions), self.highs(self.topic)
        log_pos = self.service_log.stat().st_size
        cpu0 = self.procs.snapshot() if self.procs else None

        def sample() -> dict:
            ih = self.highs(self.topic)
            backlogs = {"published": sum(ih) - sum(in_start), "decision_backlog": sum(ih) - sum(in_start) - (sum(self.highs(self.decisions)) - sum(dec_start))}
            return {**backlogs, "lane_backlog": self.lane_backlog(ih)} if lane_measured else backlogs

        pub, samples = follow(self.publish(folder, rate), "publisher", sample)
        in_end = self.highs(self.topic)
        backlog_at_end = {"decision": sum(in_end) - sum(in_start) - (sum(self.highs(self.decisions)) - sum(dec_start)),
                          "lane": self.lane_backlog(in_end) if lane_measured else None}
        timeout = 900.0 if warm else self.args.drain_timeout if name.startswith("ramp") else max(self.args.drain_timeout, 2 * pub["seconds"])
        try:
            decided_at = self.wait_decided(dec_start, pub["delivered"], timeout)
        except TimeoutError:  # saturated: measure what was decided, end the ramp
            decided_at, self.service_saturated = None, name
        cpu_dec = self.procs.snapshot() if self.procs else None
        gold_at = None
        if self.lane_saturated is None and decided_at is not None:
            try:
                gold_at = self.wait_gold(in_end, timeout)
            except TimeoutError:  # the lane did not keep up: measured so far, then stopped (see main)
                self.lane_saturated = name
        cpu1 = self.procs.snapshot() if self.procs else None
        load_end = os.getloadavg()
        dec_end = self.highs(self.decisions)
        figures = {
            "phase": name, "target_rate": rate, "published": pub["delivered"], "publish_rate": pub["rate"],
            "publish_seconds": pub["seconds"], "load_average_1m": [round(load_start[0], 2), round(load_end[0], 2)],
            "decision": {**self.read_decisions(dec_start, dec_end), "drain_s_after_publish": round(decided_at - pub["end"], 1) if decided_at else None,
                         "kept_up": decided_at is not None, "backlog_at_publish_end": backlog_at_end["decision"],
                         "backlog_after_drain_timeout": None if decided_at else pub["delivered"] - (sum(dec_end) - sum(dec_start)),
                         "service_stats": self.service_stats(log_pos)},
            "delta": self.delta_figures(pub, gold_at, backlog_at_end["lane"], samples) if lane_measured
            else {"not_measured": self.lane_saturated if self.args.lanes == "decision" else f"the lane was stopped after it did not keep up in {self.lane_saturated}"},
        }
        if cpu0 and cpu_dec:
            events = pub["delivered"]
            busy = (cpu1["system_busy"] - cpu0["system_busy"]) / max(1e-9, cpu1["system_total"] - cpu0["system_total"])
            ours = sum(cpu1[k] - cpu0[k] for k in ("service_python", "service_jvm", "lane", "broker"))
            wall = cpu1["at"] - cpu0["at"]
            figures["cpu"] = {
                "service_python_us_per_event": round((cpu_dec["service_python"] - cpu0["service_python"]) / events * 1e6, 1),
                "service_jvm_us_per_event": round((cpu_dec["service_jvm"] - cpu0["service_jvm"]) / events * 1e6, 1),
                "lane_us_per_event": round((cpu1["lane"] - cpu0["lane"]) / events * 1e6, 1),
                "broker_us_per_event": round((cpu1["broker"] - cpu0["broker"]) / events * 1e6, 1),
                "service_cores_while_publishing": round((cpu_dec["service_python"] - cpu0["service_python"]) / max(1e-9, cpu_dec["at"] - cpu0["at"]), 2),
                "lane_cores": round((cpu1["lane"] - cpu0["lane"]) / max(1e-9, wall), 2),
                "machine_busy_fraction": round(busy, 2),
                "other_processes_cores": round(busy * psutil.cpu_count() - ours / max(1e-9, wall), 2),
            }
            figures["memory"] = self.procs.memory_mb()
        print(json.dumps(figures), flush=True)
        return figures

    def replayed_phase(self, name: str, folder: Path, rate: float, expected: int, warm: bool = False) -> dict:
        """--lanes delta: the folder is decided first (published at --record-rate, not measured), then its decision
        records are republished to the lane's topic at `rate` (REPUBLISHER) and the lane is measured from each send."""
        dec_start = self.highs(self.decisions)
        recorded, _ = follow(self.publish(folder, self.args.record_rate), "publisher", dict)
        self.wait_decided(dec_start, recorded["delivered"], 900.0)
        dec_end, in_end = self.highs(self.decisions), self.highs(self.topic)
        ranges = {p: [dec_start[p], dec_end[p]] for p in range(self.partitions)}
        load_start = os.getloadavg()
        cpu0 = self.procs.snapshot() if self.procs else None
        republisher = subprocess.Popen([sys.executable, "-c", REPUBLISHER, self.bootstrap, self.decisions, self.lane_input, str(rate), json.dumps(ranges)],
                                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pub, samples = follow(republisher, "republisher", lambda: {"lane_backlog": self.lane_backlog(in_end)})
        backlog_at_end = self.lane_backlog(in_end)
        timeout = 900.0 if warm else self.args.drain_timeout if name.startswith("ramp") else max(self.args.drain_timeout, 2 * pub["seconds"])
        gold_at = None
        try:
            gold_at = self.wait_gold(in_end, timeout)
        except TimeoutError:
            self.lane_saturated = name
        cpu1 = self.procs.snapshot() if self.procs else None
        load_end = os.getloadavg()
        figures = {
            "phase": name, "target_rate": rate, "published": pub["delivered"], "publish_rate": pub["rate"], "publish_seconds": pub["seconds"],
            "load_average_1m": [round(load_start[0], 2), round(load_end[0], 2)],
            "decision": {"recorded": recorded["delivered"], "recorded_at_rate": recorded["rate"], "p50_ms": None, "p95_ms": None, "p99_ms": None,
                         "max_ms": None, "kept_up": True},
            "delta": self.delta_figures(pub, gold_at, backlog_at_end, samples),
        }
        if cpu0 and cpu1:
            wall = cpu1["at"] - cpu0["at"]
            busy = (cpu1["system_busy"] - cpu0["system_busy"]) / max(1e-9, cpu1["system_total"] - cpu0["system_total"])
            figures["cpu"] = {"lane_us_per_event": round((cpu1["lane"] - cpu0["lane"]) / pub["delivered"] * 1e6, 1),
                              "lane_cores": round((cpu1["lane"] - cpu0["lane"]) / max(1e-9, wall), 2), "machine_busy_fraction": round(busy, 2)}
            figures["memory"] = self.procs.memory_mb()
        print(json.dumps(figures), flush=True)
        return figures

    def idle_cpu(self, seconds: float = 20.0) -> dict:
        """Cores each process uses with no traffic (refresh checks, empty micro-batches, the broker)."""
        a = self.procs.snapshot()
        time.sleep(seconds)
        b = self.procs.snapshot()
        wall = b["at"] - a["at"]
        return {k: round((b[k] - a[k]) / wall, 3) for k in ("service_python", "service_jvm", "lane", "broker")}

    def delta_figures(self, pub: dict, gold_at: float | None, backlog_at_end: int, samples: list) -> dict:
        progress = self.lake.progress()
        rows = progress[(progress["processed_at"] >= dt.datetime.utcfromtimestamp(pub["start"])) & (progress["scored_rows"] > 0)]
        batches = rows.drop_duplicates(["batch_id"])
        weights = rows["scored_rows"].to_numpy(dtype=float)
        p95s = rows["latency_p95_ms"].to_numpy(dtype=float) / 1000.0
        order = np.argsort(p95s)
        cum = np.cumsum(weights[order]) / weights.sum() if len(weights) else np.array([])
        gold = self.lake.gold_since(pub["start"] - 1)
        gold = gold[(gold[:, 1] >= pub["start"] * 1000 - 1000) & (gold[:, 1] <= pub["end"] * 1000 + 1000)]
        to_gold = (gold[:, 0] - gold[:, 1]) / 1000.0
        written_s = (gold[:, 0].max() / 1000.0 - pub["start"]) if len(gold) else 0.0
        lag = [s["lane_backlog"] for s in samples if "lane_backlog" in s]
        return {
            "gold_rows": int(len(gold)), "written_per_second": round(len(gold) / written_s, 1) if written_s > 0 else None,
            "event_to_gold_p50_s": round(float(np.percentile(to_gold, 50)), 2) if len(to_gold) else None,
            "event_to_gold_p95_s": round(float(np.percentile(to_gold, 95)), 2) if len(to_gold) else None,
            "event_to_gold_max_s": round(float(to_gold.max()), 2) if len(to_gold) else None,
            "micro_batches": int(len(batches)),
            "batch_seconds_median": round(float(batches["batch_seconds"].median()), 2) if len(batches) else None,
            "batch_seconds_max": round(float(batches["batch_seconds"].max()), 2) if len(batches) else None,
            "batch_records_median": int(batches["batch_records"].median()) if len(batches) else None,
            "stream_batches_p95_s_median": round(float(np.median(p95s)), 2) if len(p95s) else None,
            "stream_batches_p95_s_max": round(float(p95s.max()), 2) if len(p95s) else None,
            "stream_batches_p95_s_event_weighted": round(float(p95s[order][np.searchsorted(cum, 0.95)]), 2) if len(p95s) else None,
            "drain_s_after_publish": round(gold_at - pub["end"], 1) if gold_at else None,
            "kept_up": gold_at is not None,
            "backlog_at_publish_end": backlog_at_end,
            "backlog_after_drain_timeout": None if gold_at else self.lane_backlog(self.highs(self.topic)),
            "backlog_max": max(lag) if lag else None,
            "backlog_samples": samples,
        }


def synthetic_columns(rng: np.random.Generator, n: int, events: int, coordinates: str) -> tuple[np.ndarray, ...]:
    """Five (n, events) columns of `n` accounts as `AccountState.update` writes them: keys in order whose tie slot is
    the id's, random amounts; coordinates uniform on the globe ("uniform": the pessimistic case, full-precision
    doubles) or, as compliance_assets/synthetic generates them ("home"), 5-decimal places near the account's home
    city (3% in its nearest other city) with 15% of the events not located."""
    end = int(dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc).timestamp())
    window = (HISTORY_DAYS + DEFAULT_LATENESS_DAYS) * 86400
    ids = rng.integers(0, 2**64, size=(n, events), dtype=np.uint64)
    keys = np.sort(rng.integers(end - window, end, size=(n, events)), axis=1) * TIE_SLOTS + ids.view(np.int64) % TIE_SLOTS
    order = np.argsort(keys, axis=1, kind="stable")
    keys, ids = np.take_along_axis(keys, order, 1), np.take_along_axis(ids, order, 1)
    cents = rng.integers(100, 500_000, size=(n, events))
    if coordinates == "uniform":
        lat, lon = rng.uniform(-60, 60, size=(n, events)), rng.uniform(-180, 180, size=(n, events))
    else:
        home = rng.integers(0, len(CITY_LAT), n)
        city = np.where(rng.random((n, events)) < 0.03, NEARBY_CITY[home][:, None], home[:, None])
        home_lat, home_lon = CITY_LAT[home] + rng.normal(0, 0.04, n), CITY_LON[home] + rng.normal(0, 0.04, n)
        at_home = city == home[:, None]
        lat = np.round(np.where(at_home, home_lat[:, None], CITY_LAT[city]) + rng.normal(0, 0.03, (n, events)), 5)
        lon = np.round(np.where(at_home, home_lon[:, None], CITY_LON[city]) + rng.normal(0, 0.03, (n, events)), 5)
        missing = rng.random((n, events)) < 0.15
        lat[missing], lon[missing] = np.nan, np.nan
    return keys, cents, ids, lat, lon


def _state(row: tuple[np.ndarray, ...]) -> AccountState:
    s = AccountState()
    for column, values in zip((s.keys, s.cents, s.ids, s.lat, s.lon), row):
        column.frombytes(values.tobytes())
    return s


def state_memory(accounts: int, events: int, seed: int = 7, coordinates: str = "uniform", frozen: bool = True) -> dict:
    """Memory of `accounts` account states of `events` events each, per 100k accounts: as the service keeps a
    partition's accounts (`AccountStates`), all frozen (`frozen`), or all hot `AccountState`s (as before the cold
    form; what the service's bounded hot set costs an account)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(1, events))
    names = [f"ACC{i:08d}" for i in range(accounts)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rss0 = psutil.Process().memory_info().rss
    states = AccountStates()
    for first in range(0, accounts, chunk):  # the generator's temporaries are freed before the reading
        n = min(chunk, accounts - first)
        columns = synthetic_columns(rng, n, events, coordinates)
        for i in range(n):
            states[names[first + i]] = _state(tuple(c[i] for c in columns))
        if frozen:
            states.freeze_beyond(0)
        del columns
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss = psutil.Process().memory_info().rss - rss0
    blob_bytes = sum(len(b) for b in states.cold.values())
    snapshot = len(dump_states(states))
    per = 100_000 / accounts
    del states
    gc.collect()
    return {
        "accounts": accounts, "events_per_account": events, "coordinates": coordinates, "form": "frozen" if frozen else "hot",
        "traced_mb_per_100k_accounts": round(used * per / 2**20, 1), "rss_mb_per_100k_accounts": round(rss * per / 2**20, 1),
        "snapshot_mb_per_100k_accounts": round(snapshot * per / 2**20, 1),
        "bytes_per_account": round(used / accounts), "blob_bytes_per_account": round(blob_bytes / accounts) if frozen else None,
        "gb_per_1m_accounts": round(used * 1_000_000 / accounts / 2**30, 3),
    }


def steady_state(cold: dict, hot: dict, hot_accounts: int, accounts: int = 1_000_000) -> dict:
    """The service's steady state for `accounts` accounts: `hot_accounts` of them hot (the LRU bound), the rest frozen."""
    hot_n = min(hot_accounts, accounts)
    total = hot_n * hot["bytes_per_account"] + (accounts - hot_n) * cold["bytes_per_account"]
    return {"accounts": accounts, "hot_accounts": hot_n, "bytes_per_account": round(total / accounts), "gb": round(total / 2**30, 3)}


def cold_touch_cost(events: int, coordinates: str = "uniform", touches: int = 2000, seed: int = 13) -> dict:
    """Microseconds of CPU to use a frozen account: thaw it, `update` it with a new event, freeze it again (what the
    service does when an account outside its hot set transacts and, after the batch, the least recently used
    account is frozen); each part separately too."""
    rng = np.random.default_rng(seed)
    columns = synthetic_columns(rng, touches, events, coordinates)
    blobs = [freeze(_state(tuple(c[i] for c in columns))) for i in range(touches)]
    when = dt.datetime(2026, 12, 6, 12, 0, 0)
    location = (48.85341, 2.34880) if coordinates == "home" else (float(rng.uniform(-60, 60)), float(rng.uniform(-180, 180)))
    best = {"thaw": float("inf"), "update": float("inf"), "freeze": float("inf")}
    for _ in range(3):  # the best of three runs: the machine is shared
        t0 = time.process_time()
        thawed = [thaw(b) for b in blobs]
        t1 = time.process_time()
        for i, s in enumerate(thawed):
            s.update(f"c{i}", when, 30.0, *location)
        t2 = time.process_time()
        for s in thawed:
            freeze(s)
        t3 = time.process_time()
        for part, t in (("thaw", t1 - t0), ("update", t2 - t1), ("freeze", t3 - t2)):
            best[part] = min(best[part], t / touches * 1e6)
    out = {f"{k}_us": round(v, 1) for k, v in best.items()}
    out["cold_touch_us"] = round(sum(best.values()), 1)
    return out


def update_cost(events_in_window: int, updates: int = 300, seed: int = 11) -> float:
    """Microseconds of CPU per `AccountState.update` with about `events_in_window` events of the account in the
    30-day window (the per-event walk over the window is the service's largest single cost)."""
    rng = np.random.default_rng(seed)
    end = dt.datetime(2026, 12, 6)
    state = AccountState()
    for i, offset in enumerate(np.sort(rng.uniform(0, 30 * 86400 - 3600, events_in_window))[::-1]):
        state.update(f"h{i}", end - dt.timedelta(seconds=float(offset)) - dt.timedelta(hours=1), 25.0, 1.0, 2.0)
    times = [end - dt.timedelta(seconds=float(x)) for x in np.sort(rng.uniform(0, 3600, updates))[::-1]]
    started = time.process_time()
    for i, t in enumerate(times):
        state.update(f"n{i}", t, 30.0, 1.0, 2.0)
    return round((time.process_time() - started) / updates * 1e6, 1)


def state_figures(source_lake: Path, accounts: int, hot_accounts: int = ServiceOptions.hot_accounts) -> dict:
    """The state's memory at 30 events per account (uniform and home-centred coordinates) and at the demo's density,
    hot (every account an `AccountState`, as before the cold form) and frozen; the service's steady state for 1M
    accounts with `hot_accounts` hot; the CPU of an update of a hot account by window size and of a cold one."""
    silver = DeltaTable(str(source_lake / "tables" / "transactions_silver")).to_pyarrow_table(columns=["account_id", "event_date"]).to_pandas()
    per_day = silver.groupby("event_date").size()
    full_days = per_day[per_day > 0.5 * per_day.max()]
    window_days = HISTORY_DAYS + DEFAULT_LATENESS_DAYS
    density = full_days.mean() / silver["account_id"].nunique()
    typical = int(round(density * window_days))
    heavy_accounts = max(1000, min(accounts, 10_000_000 // max(1, typical)))
    hot_30 = state_memory(min(accounts, 20_000), 30, frozen=False)
    memory = {"window_days": window_days, "demo_events_per_account_per_day": round(density, 2), "hot_accounts": hot_accounts,
              "thirty_events_hot": hot_30}
    for coordinates in ("uniform", "home"):
        cold = state_memory(accounts, 30, coordinates=coordinates)
        memory[f"thirty_events_{coordinates}"] = cold
        memory[f"thirty_events_{coordinates}_steady_1m"] = steady_state(cold, hot_30, hot_accounts)
    # the pessimistic figure (uniform coordinates) is the one the target is checked on
    memory["thirty_events"] = {**memory["thirty_events_uniform"], "gb_per_1m_accounts": memory["thirty_events_uniform_steady_1m"]["gb"],
                               "bytes_per_account": memory["thirty_events_uniform_steady_1m"]["bytes_per_account"]}
    demo_cold = state_memory(heavy_accounts, typical)
    demo_hot = state_memory(min(heavy_accounts, 20_000), typical, frozen=False)
    steady = steady_state(demo_cold, demo_hot, hot_accounts)
    memory["demo_density"] = {**demo_cold, "gb_per_1m_accounts": steady["gb"], "bytes_per_account": steady["bytes_per_account"], "hot": demo_hot}
    memory["update_cpu_us_by_events_in_window"] = {n: update_cost(n) for n in (30, 100, 300, 1000)}
    memory["cold_touch_cpu_us"] = {coordinates: cold_touch_cost(30, coordinates) for coordinates in ("uniform", "home")}
    return memory


def print_state(m: dict) -> None:
    h = m["thirty_events_hot"]
    print(f"state, 30 events/account, all hot (AccountState): {h['bytes_per_account']} B/account, {h['gb_per_1m_accounts']} GB per 1M")
    for c in ("uniform", "home"):
        f, s = m[f"thirty_events_{c}"], m[f"thirty_events_{c}_steady_1m"]
        print(f"state, 30 events/account, {c} coordinates: frozen {f['bytes_per_account']} B/account (blob {f['blob_bytes_per_account']} B, "
              f"snapshot {f['snapshot_mb_per_100k_accounts']} MB per 100k); 1M accounts with {s['hot_accounts']} hot: "
              f"{s['bytes_per_account']} B/account, {s['gb']} GB")
    d = m["demo_density"]
    print(f"state, demo density ({d['events_per_account']} events/account): {d['gb_per_1m_accounts']} GB per 1M ({m['hot_accounts']} hot)")
    print(f"hot update CPU us by events in window: {m['update_cpu_us_by_events_in_window']}")
    print(f"cold touch CPU us (thaw + update + freeze), 30 events: {m['cold_touch_cpu_us']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", type=Path, default=REPO / "lake", help="A lake with a champion (the demo's ./lake).")
    p.add_argument("--mlflow", type=Path, default=None, help="Its MLflow home (SQLite + artifacts; default: the lake's sibling mlruns/).")
    p.add_argument("--rate", type=float, default=1200.0)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--ramp", default="2500,5000,7500,10000", help="Rates for the ramp (comma-separated; empty = skip).")
    p.add_argument("--step-seconds", type=float, default=60.0)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--trigger", type=float, default=1.0, help="The Delta lane's micro-batch interval.")
    p.add_argument("--lane-nice", type=int, default=10, help="The Delta lane's CPU priority below the decision service's (its --nice; 0 = equal).")
    p.add_argument("--decision-target-ms", type=float, default=100.0)
    p.add_argument("--gold-target-s", type=float, default=15.0)
    p.add_argument("--drain-timeout", type=float, default=180.0, help="Seconds a lane may take after publishing ends before it counts as not keeping up.")
    p.add_argument("--create-time", action="store_true", help="Keep producer CreateTime timestamps instead of the broker's LogAppendTime.")
    p.add_argument("--state-accounts", type=int, default=200_000, help="Accounts for the state-memory measurement (fewer at the demo's density).")
    p.add_argument("--seed", type=int, default=int(os.getenv("SEED", "42")), help="The demo's seed (its population).")
    p.add_argument("--population-events", type=int, default=int(os.getenv("EVENTS", "20000")), help="The demo's events per day (its population size).")
    p.add_argument("--state-only", action="store_true", help="Only the state measurements (no broker, no lanes).")
    p.add_argument("--lanes", choices=("both", "decision", "delta"), default="both",
                   help="both: the decision service and the Delta lane together, as deployed; decision: the service alone (its targets "
                        "are for one process; on 2 cores the lane's Spark work otherwise takes most of the CPU); delta: the Delta lane "
                        "alone, fed each phase's recorded decision records at the phase's rate (REPUBLISHER), its latency from each send.")
    p.add_argument("--record-rate", type=float, default=2000.0, help="--lanes delta: the rate the phases' events are decided at first.")
    p.add_argument("--keep", action="store_true", help="Keep the scratch folder (lake, logs).")
    args = p.parse_args(argv)

    if args.state_only:
        result = {"benchmark": "streaming: decision-service state", "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "load_average": [round(x, 2) for x in os.getloadavg()], "state_memory": state_figures(args.lake, args.state_accounts)}
        out = REPO / "bench" / "results" / f"streaming_state_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(json.dumps(result, indent=2, default=str))
        print_state(result["state_memory"])
        print(f"wrote {out}")
        return 0
    mlflow_home = args.mlflow or args.lake.parent / "mlruns"
    if not (args.lake / "tables" / "transactions_silver" / "_delta_log").exists() or not (mlflow_home / "mlflow.db").exists():
        sys.exit(f"no lake with silver at {args.lake} or no MLflow store at {mlflow_home}: run `bash scripts/demo.sh` first")
    today = dt.datetime.now(dt.timezone.utc).date()
    ramp = [float(r) for r in args.ramp.split(",") if r.strip()]
    plan = [("warm-up", WARMUP_RATE, WARMUP_EVENTS), ("sustained", args.rate, int(args.rate * args.duration))]
    plan += [(f"ramp-{int(r)}", r, int(r * args.step_seconds)) for r in ramp]
    needed = int(sum(n for _, _, n in plan) * 1.01) + 1000

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    lake = work / "lake"
    print(f"scratch {work}; copying {args.lake} and {mlflow_home}", flush=True)
    shutil.copytree(args.lake / "tables", lake / "tables", ignore=shutil.ignore_patterns("stream_batches"))
    copy_mlflow(mlflow_home, lake / "mlflow")
    population = SynthConfig(seed=args.seed, events_per_day=args.population_events)
    config = SynthConfig(seed=args.seed, events_per_day=needed, n_accounts=population.accounts, n_merchants=population.merchants)
    t = time.perf_counter()
    generate_day(config, work / "landing", today)
    lines = delivery_lines(work / "landing" / "transactions" / f"event_date={today}")
    print(f"generated {len(lines)} events for {today} ({population.accounts} accounts, {population.merchants} merchants) in {time.perf_counter() - t:.0f} s", flush=True)
    folders, at = [], 0
    for name, _, n in plan:
        folder = work / "phases" / name
        folder.mkdir(parents=True)
        (folder / "part-00000.jsonl").write_bytes(("\n".join(lines[at: at + n]) + "\n").encode("utf-8", "surrogateescape"))
        folders.append(folder)
        at += n
    del lines
    shutil.rmtree(work / "landing", ignore_errors=True)

    port, controller = free_ports(2)
    kafka_env = {**os.environ, "KAFKA_DATA": str(work / "kafka"), "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller)}
    subprocess.run(["bash", "scripts/kafka.sh", "start"], cwd=REPO, env=kafka_env, check=True)
    bootstrap, topic = f"127.0.0.1:{port}", "transactions"
    children: list[subprocess.Popen] = []
    result: dict = {}
    bench = None
    try:
        replay = [REPLAY_TOPIC, REPLAY_TOPIC + "-decisions"] if args.lanes == "delta" else []
        create_topics(bootstrap, [topic, topic + "-decisions", topic + "-dlq", *replay], args.partitions, log_append_time=not args.create_time)
        env = {**os.environ, "SPARK_MASTER": os.getenv("SPARK_MASTER", "local[2]"), "PYTHONUNBUFFERED": "1"}
        bench = Bench(args, work, lake, bootstrap, topic, args.partitions)
        if args.lanes == "decision":
            bench.lane_saturated = "the Delta lane was not run (--lanes decision)"
        service_log, lane_log = open(bench.service_log, "w"), open(work / "lane.log", "w")
        children.append(subprocess.Popen(
            [sys.executable, "-m", "compliance_assets.realtime", "--lake", str(lake), "--bootstrap", bootstrap, "--topic", topic,
             "--delivery-date", today.isoformat(), "--stats-every", "5"], cwd=REPO, env=env, stdout=service_log, stderr=subprocess.STDOUT))
        if args.lanes != "decision":
            children.append(subprocess.Popen(
                [sys.executable, "-m", "compliance_assets.streaming", "--source", "decisions", "--lake", str(lake), "--bootstrap", bootstrap,
                 "--topic", REPLAY_TOPIC if args.lanes == "delta" else topic,
                 "--trigger", str(args.trigger), "--nice", str(args.lane_nice)], cwd=REPO, env=env, stdout=lane_log, stderr=subprocess.STDOUT))
        broker_pid = int((work / "kafka" / "kafka.pid").read_text().strip()) if (work / "kafka" / "kafka.pid").exists() else None
        started = time.time()
        run_phase = bench.replayed_phase if args.lanes == "delta" else bench.phase
        warm = run_phase("warm-up", folders[0], WARMUP_RATE, WARMUP_EVENTS, warm=True)
        print(f"warm-up done: {'the decision service' if args.lanes == 'decision' else 'both lanes'} up {time.time() - started:.0f} s after their start", flush=True)
        bench.procs = Procs(children[0].pid, children[1].pid if args.lanes != "decision" else None, broker_pid)
        idle = bench.idle_cpu()
        phases = []
        for (name, rate, n), folder in zip(plan[1:], folders[1:]):
            phases.append(run_phase(name, folder, rate, n))
            if bench.lane_saturated and args.lanes == "delta":
                print(f"the Delta lane did not keep up in {bench.lane_saturated}: ramp ends", flush=True)
                break
            if bench.lane_saturated and len(children) > 1 and children[1].poll() is None:
                # a lane that cannot keep up would only add its backlog's load to the next steps
                print(f"the Delta lane did not keep up in {bench.lane_saturated}: stopping it; later steps measure the decision service alone", flush=True)
                children[1].terminate()
                children[1].wait(60)
            if bench.service_saturated:
                print(f"the decision service did not keep up in {bench.service_saturated}: ramp ends", flush=True)
                break
        sustained, steps = phases[0], phases[1:]
        result = {
            "benchmark": {"both": "streaming (decision service + Delta lane)", "decision": "streaming (decision service alone)",
                          "delta": "streaming (Delta lane alone, fed recorded decision records)"}[args.lanes],
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {"cores": os.cpu_count(), "spark_master": env["SPARK_MASTER"], "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                        "load_average_1m_samples": [round(x, 2) for _, x in bench.loads],
                        "load_average_1m_mean": round(float(np.mean([x for _, x in bench.loads])), 2) if bench.loads else None,
                        "load_average_1m_max": round(max(x for _, x in bench.loads), 2) if bench.loads else None},
            "population": {"accounts": population.accounts, "merchants": population.merchants, "day": today.isoformat()},
            "startup_to_warm_s": round(warm["publish_seconds"] + (warm["delta"].get("drain_s_after_publish") or warm["decision"].get("drain_s_after_publish") or 0), 1),
            "idle_cores": idle,
            "service_saturated_in": bench.service_saturated, "lane_saturated_in": bench.lane_saturated,
            "warm_up": warm, "sustained": sustained, "ramp": steps,
        }
    finally:
        if bench is not None:
            bench.meta.close()
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
        subprocess.run(["bash", "scripts/kafka.sh", "stop"], cwd=REPO, env=kafka_env)
        if not result:
            print(f"failed: logs in {work}", flush=True)

    # the account state is the decision service's: not measured in a run of the Delta lane alone
    memory = result["state_memory"] = state_figures(args.lake, args.state_accounts) if args.lanes != "delta" else None

    s, d = result["sustained"], result["sustained"]["delta"]
    dec_ok = [st for st in result["ramp"] if st["decision"]["kept_up"] and st["decision"]["p95_ms"] is not None
              and st["decision"]["p95_ms"] < args.decision_target_ms and st["publish_rate"] >= 0.9 * st["target_rate"]]
    gold_ok = [st for st in result["ramp"] if st["delta"].get("kept_up") and st["delta"].get("event_to_gold_p95_s") is not None
               and st["delta"]["event_to_gold_p95_s"] < args.gold_target_s and st["delta"]["drain_s_after_publish"] < args.gold_target_s
               and st["publish_rate"] >= 0.9 * st["target_rate"]]
    result["decision_highest_rate_p95_under_target"] = max((st["target_rate"] for st in dec_ok), default=None)
    result["delta_highest_rate_p95_under_target"] = max((st["target_rate"] for st in gold_ok), default=None)
    targets = {
        **({"decision_p95_under_50ms_at_rate": s["decision"]["p95_ms"] is not None and s["decision"]["p95_ms"] < 50,
            "decision_highest_rate_ge_5000": (result["decision_highest_rate_p95_under_target"] or 0) >= 5000} if args.lanes != "delta" else {}),
        **({"delta_p95_under_10s_at_rate": d.get("event_to_gold_p95_s") is not None and d["event_to_gold_p95_s"] < 10,
            "delta_highest_rate_ge_5000": (result["delta_highest_rate_p95_under_target"] or 0) >= 5000} if args.lanes != "decision" else {}),
        **({"state_le_1gb_per_1m_accounts_at_30_events": memory["thirty_events"]["gb_per_1m_accounts"] <= 1.0,
            "state_le_1gb_per_1m_accounts_at_demo_density": memory["demo_density"]["gb_per_1m_accounts"] <= 1.0} if memory else {}),
    }
    result["targets_met"] = targets
    lanes = {"both": "", "decision": "decision_", "delta": "delta_"}[args.lanes]
    out = REPO / "bench" / "results" / f"streaming_{lanes}{int(args.rate)}_{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"wrote {out}")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(r: dict) -> None:
    print(f"\n{'phase':<12}{'rate':>7}{'pub/s':>8} | {'dec p50':>9}{'p95':>9}{'p99':>9}{'max':>9} ms | {'gold p50':>9}{'p95':>8}{'max':>8} s"
          f"{'written/s':>10}{'backlog':>9}{'drain s':>8} | {'svc us/ev':>10}{'lane us/ev':>11}{'load':>6}")
    for ph in [r["sustained"], *r["ramp"]]:
        de, dl, cpu = ph["decision"], ph["delta"], ph.get("cpu", {})
        dl = {k: dl.get(k) for k in ("event_to_gold_p50_s", "event_to_gold_p95_s", "event_to_gold_max_s", "written_per_second", "backlog_at_publish_end", "drain_s_after_publish")}
        print(f"{ph['phase']:<12}{ph['target_rate']:>7.0f}{ph['publish_rate']:>8.0f} | {de['p50_ms']!s:>9}{de['p95_ms']!s:>9}{de['p99_ms']!s:>9}{de['max_ms']!s:>9}    | "
              f"{dl['event_to_gold_p50_s']!s:>9}{dl['event_to_gold_p95_s']!s:>8}{dl['event_to_gold_max_s']!s:>8}  {dl['written_per_second']!s:>10}{dl['backlog_at_publish_end']!s:>9}"
              f"{dl['drain_s_after_publish']!s:>8} | {cpu.get('service_python_us_per_event')!s:>10}{cpu.get('lane_us_per_event')!s:>11}{ph['load_average_1m'][1]:>6}")
    if r["state_memory"]:
        print_state(r["state_memory"])
    print(f"decision lane highest rate p95 < target: {r['decision_highest_rate_p95_under_target']}; Delta lane: {r['delta_highest_rate_p95_under_target']}")
    print("targets:", json.dumps(r["targets_met"]))
    print(f"load average (1 min) during the run: mean {r['machine']['load_average_1m_mean']}, max {r['machine']['load_average_1m_max']} on {r['machine']['cores']} cores")


if __name__ == "__main__":
    sys.exit(main())
