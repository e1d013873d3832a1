"""The decision service's runtime (compliance_assets/realtime/runtime.py) on a real broker, with the toy
processor of toy_service.py: snapshots and offsets, a clean restart, SIGKILL and replay, two instances in
one group with one killed, and a processor that raises.

The reference for every output is a clean run of the toy processor over the input topic, partition by
partition in offset order (`expected`): an output equal to it is the decision a crash-free single instance
would have made, so equality of every output (duplicates included) proves deterministic replay, no lost
or double-counted state and correct per-account counts at once.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from compliance_assets.realtime.runtime import ProcessorError, RuntimeFailure, run
from compliance_assets.realtime.snapshots import SnapshotStore
from compliance_assets.streaming.loadgen import create_topic
from tests.realtime.toy_service import ToyProcessor

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
ACCOUNTS = 40
OWN = re.compile(r"now own \[([0-9, ]*)\]")


def events(start: int, n: int, poison: int | None = None) -> list[dict]:
    """n deterministic events with ids start..start+n-1 over ACCOUNTS accounts; `poison` gets the id 'poison'."""
    return [
        {"id": "poison" if i == poison else f"t{i}", "account": f"acct{(i * 7) % ACCOUNTS}", "amount": (i * 13) % 97 + 1}
        for i in range(start, start + n)
    ]


def publish(bootstrap: str, topic: str, batch: list[dict], rate: float | None = None) -> None:
    """Publish the events keyed by account (optionally at `rate` per second) and wait for every delivery."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True})
    start = time.monotonic()
    for i, event in enumerate(batch):
        if rate and i % 50 == 0:
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
        producer.produce(topic, json.dumps(event).encode(), event["account"].encode())
        producer.poll(0)
    assert producer.flush(30) == 0
    producer.close()


def read_topic(bootstrap: str, topic: str) -> list:
    """Every message of the topic up to its current end, in partition then offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        messages, deadline = [], time.monotonic() + 20
        while len(messages) < sum(ends.values()) and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(1000, 0.2) if m.error() is None]
        assert len(messages) == sum(ends.values()), "the topic could not be read to its end"
        return sorted(messages, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def expected(bootstrap: str, input_topic: str, output_topic: str) -> dict[str, dict]:
    """id -> the output of a clean, crash-free run of the toy processor over the whole input topic."""
    processor, out = ToyProcessor(output_topic), {}
    for p in range(PARTITIONS):
        processor.assign(p, None)
    for msg in read_topic(bootstrap, input_topic):
        (output,) = processor.process(msg)
        out[output.key.decode()] = json.loads(output.value)
    return out


class Outputs:
    """Everything published to the output topic so far, read from the beginning (no group)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-outputs", "enable.auto.commit": False, "fetch.wait.max.ms": 20})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.records: list[dict] = []
        self.raw: list[tuple[bytes, bytes]] = []

    def ids(self) -> set[str]:
        return {r["id"] for r in self.records}

    def wait(self, condition, timeout: float, what: str) -> None:
        """Read until condition(self) holds; fail naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {len(self.records)} outputs, {len(self.ids())} ids"
            for m in self.consumer.consume(2000, 0.1):
                if m.error() is None:
                    self.raw.append((m.key(), m.value()))
                    self.records.append(json.loads(m.value()))

    def settle(self, quiet: float = 0.5) -> None:
        """Read whatever else arrives until the topic is quiet for `quiet` seconds (late duplicates, strays)."""
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            got = [m for m in self.consumer.consume(2000, 0.1) if m.error() is None]
            for m in got:
                self.raw.append((m.key(), m.value()))
                self.records.append(json.loads(m.value()))
            if got:
                last = time.monotonic()

    def close(self) -> None:
        self.consumer.close()


def assert_all_as_clean_run(outputs: Outputs, want: dict[str, dict]) -> int:
    """Every input has an output and every output (duplicates too) equals the clean run's; returns the duplicates."""
    assert outputs.ids() == set(want), f"missing outputs for {sorted(set(want) - outputs.ids())[:5]}..., unexpected {sorted(outputs.ids() - set(want))[:5]}"
    wrong = [r for r in outputs.records if r != want[r["id"]]]
    assert not wrong, f"{len(wrong)} outputs differ from the clean run, e.g. {wrong[0]} vs {want[wrong[0]['id']]}"
    for key, value in outputs.raw:
        assert key == json.loads(value)["id"].encode()
    return len(outputs.records) - len(want)


@pytest.fixture
def names(kafka_broker):
    """Fresh input and output topics (PARTITIONS each) and a fresh group name."""
    tag = uuid.uuid4().hex[:10]
    names = {"input": f"rt-in-{tag}", "output": f"rt-out-{tag}", "group": f"rt-group-{tag}"}
    for topic in (names["input"], names["output"]):
        create_topic(kafka_broker, topic, PARTITIONS)
    return names


class InProcess:
    """The runtime in a thread; `stop()` asks for a clean stop and returns its stats (or raises its failure)."""

    def __init__(self, bootstrap: str, names: dict, store: SnapshotStore, processor, snapshot_every_s: float = 0.3) -> None:
        self.stop_event, self.result, self.error = threading.Event(), None, None

        def target() -> None:
            try:
                config = {"bootstrap.servers": bootstrap}
                self.result = run(config, dict(config), names["input"], names["group"], processor, store, snapshot_every_s=snapshot_every_s, stop=self.stop_event)
            except BaseException as e:  # handed to the test thread
                self.error = e

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30):
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the runtime did not stop"
        if self.error is not None:
            raise self.error
        return self.result


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def test_in_process_outputs_snapshots_and_clean_restart(kafka_broker, names, tmp_path):
    """Each input gets exactly one output with per-account counts 1..k in offset order; a clean stop leaves
    snapshots (and committed offsets) at the partitions' ends; a restart re-emits nothing and keeps counting."""
    store = SnapshotStore(tmp_path / "snapshots")
    publish(kafka_broker, names["input"], events(0, 2000))
    outputs = Outputs(kafka_broker, names["output"])
    service = InProcess(kafka_broker, names, store, ToyProcessor(names["output"]))
    outputs.wait(lambda o: len(o.ids()) >= 2000, 30, "2,000 outputs")
    stats = service.stop()
    assert (stats.events, stats.outputs) == (2000, 2000)
    assert stats.rebalances >= 2 and stats.snapshots >= PARTITIONS and stats.stale_skipped == 0
    ends = high_watermarks(kafka_broker, names["input"])
    assert min(ends.values()) > 0, "the keys should spread over every partition"
    for p, end in ends.items():
        offset, data = store.load(names["group"], names["input"], p)
        assert offset == end
        assert sum(n for n, _ in json.loads(data).values()) == end  # the snapshot's counts are that partition's events
    group = Consumer({"bootstrap.servers": kafka_broker, "group.id": names["group"]})
    committed = group.committed([TopicPartition(names["input"], p) for p in range(PARTITIONS)], timeout=10)
    group.close()
    assert {tp.partition: tp.offset for tp in committed} == ends

    outputs.settle(0.3)
    want = expected(kafka_broker, names["input"], names["output"])
    assert assert_all_as_clean_run(outputs, want) == 0
    by_account: dict[str, list[dict]] = {}
    for r in sorted(outputs.records, key=lambda r: (r["partition"], r["offset"])):
        by_account.setdefault(r["account"], []).append(r)
    for records in by_account.values():
        assert [r["n"] for r in records] == list(range(1, len(records) + 1))
        assert len({r["partition"] for r in records}) == 1

    # restart: the state resumes from the snapshots, nothing before them is decided again
    publish(kafka_broker, names["input"], events(2000, 1000))
    service = InProcess(kafka_broker, names, store, ToyProcessor(names["output"]))
    outputs.wait(lambda o: len(o.ids()) >= 3000, 30, "3,000 outputs")
    stats = service.stop()
    assert stats.events == 1000
    outputs.settle(0.3)
    assert assert_all_as_clean_run(outputs, expected(kafka_broker, names["input"], names["output"])) == 0
    outputs.close()


def start_service(bootstrap: str, names: dict, store: Path, log: Path, snapshot_every: float = 0.5) -> subprocess.Popen:
    """toy_service as a subprocess, its log (stderr) appended to `log`."""
    command = [sys.executable, "-m", "tests.realtime.toy_service", "--bootstrap", bootstrap, "--input", names["input"], "--output", names["output"],
               "--group", names["group"], "--store", str(store), "--snapshot-every", str(snapshot_every)]
    with open(log, "ab") as f:
        return subprocess.Popen(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)


def owned(log: Path) -> set[int] | None:
    """The partitions a service's log last said it owns (None before its first assignment)."""
    found = OWN.findall(log.read_text()) if log.exists() else []
    return {int(p) for p in found[-1].split(",") if p.strip()} if found else None


def terminate(proc: subprocess.Popen, log: Path) -> None:
    """SIGTERM and expect a clean exit."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]


def test_sigkill_mid_stream_then_restart_replays_identically(kafka_broker, names, tmp_path):
    """kill -9 while events flow, restart: every input has an output, and every output (re-emitted ones
    included) is the clean run's."""
    store, log = tmp_path / "snapshots", tmp_path / "service.log"
    outputs = Outputs(kafka_broker, names["output"])
    service = start_service(kafka_broker, names, store, log)
    try:
        publish(kafka_broker, names["input"], events(0, 800))
        outputs.wait(lambda o: len(o.ids()) >= 800, 30, "the first burst's outputs")
        burst = threading.Thread(target=publish, args=(kafka_broker, names["input"], events(800, 1500), 1500))
        burst.start()
        outputs.wait(lambda o: len(o.ids()) >= 1400, 30, "outputs of the second burst")
        service.kill()  # SIGKILL: no final snapshot, no hand-off
        service.wait(10)
        killed_at = len(outputs.ids())
        burst.join()
        publish(kafka_broker, names["input"], events(2300, 700))  # the third burst lands while nothing runs
        assert killed_at < 3000
        service = start_service(kafka_broker, names, store, log)
        outputs.wait(lambda o: len(o.ids()) >= 3000, 40, "every input's output after the restart")
        terminate(service, log)
    finally:
        service.kill()
    outputs.settle(0.3)
    outputs.close()
    assert log.read_text().count("snapshot)") >= 1, "the restart should have resumed from snapshots"
    duplicates = assert_all_as_clean_run(outputs, expected(kafka_broker, names["input"], names["output"]))
    print(f"killed after {killed_at} of 3000 ids; {duplicates} re-emitted outputs, all identical")


def test_two_instances_split_partitions_and_survive_a_kill(kafka_broker, names, tmp_path):
    """Two services in one group own disjoint halves; one is killed while events flow and the survivor takes
    its partitions over from their snapshots: no input without an output, no output unlike the clean run's."""
    store = tmp_path / "snapshots"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    outputs = Outputs(kafka_broker, names["output"])
    services = [start_service(kafka_broker, names, store, log) for log in logs]
    try:
        publish(kafka_broker, names["input"], events(0, 600))
        outputs.wait(lambda o: len(o.ids()) >= 600, 30, "the first burst's outputs")
        deadline = time.monotonic() + 20
        while not (all(owned(log) for log in logs) and owned(logs[0]) | owned(logs[1]) == set(range(PARTITIONS))
                   and not owned(logs[0]) & owned(logs[1])):
            assert time.monotonic() < deadline, f"the two services did not split the partitions: {[owned(log) for log in logs]}"
            time.sleep(0.1)
        burst = threading.Thread(target=publish, args=(kafka_broker, names["input"], events(600, 2400), 1200))
        burst.start()
        outputs.wait(lambda o: len(o.ids()) >= 1200, 30, "outputs of the second burst")
        services[1].kill()
        services[1].wait(10)
        burst.join()
        outputs.wait(lambda o: len(o.ids()) >= 3000, 40, "every input's output after the survivor took over")
        assert owned(logs[0]) == set(range(PARTITIONS))
        terminate(services[0], logs[0])
    finally:
        for s in services:
            s.kill()
    outputs.settle(0.3)
    outputs.close()
    want = expected(kafka_broker, names["input"], names["output"])
    duplicates = assert_all_as_clean_run(outputs, want)
    last: dict[str, dict] = {}
    for r in outputs.records:
        if r["n"] >= last.get(r["account"], {"n": 0})["n"]:
            last[r["account"]] = r
    inputs_per_account: dict[str, int] = {}
    for r in want.values():
        inputs_per_account[r["account"]] = inputs_per_account.get(r["account"], 0) + 1
    assert {a: r["n"] for a, r in last.items()} == inputs_per_account
    print(f"{duplicates} re-emitted outputs after the kill, all identical")


class FailingToy(ToyProcessor):
    """The toy processor with a bug: the event with id 'poison' raises after half-updating its account."""

    def process(self, message):
        event = json.loads(message.value())
        if event["id"] == "poison":
            self.state[message.partition()].setdefault(event["account"], [0, 0])[0] += 1000  # the half update
            raise ValueError("cannot decide this event")
        return super().process(message)


def test_processor_exception_stops_with_clear_error_and_resumes_from_last_good_snapshot(kafka_broker, names, tmp_path):
    """A raising `process` stops the runtime with an error naming the partition and offset; the other
    partitions are snapshotted, the failing one is not; a fixed processor resumes from its last snapshot."""
    store = SnapshotStore(tmp_path / "snapshots")
    publish(kafka_broker, names["input"], events(0, 400))
    outputs = Outputs(kafka_broker, names["output"])
    service = InProcess(kafka_broker, names, store, FailingToy(names["output"]), snapshot_every_s=0.1)
    outputs.wait(lambda o: len(o.ids()) >= 400, 30, "the first burst's outputs")
    first_ends = high_watermarks(kafka_broker, names["input"])
    deadline = time.monotonic() + 10
    while any((store.load(names["group"], names["input"], p) or (0,))[0] != end for p, end in first_ends.items()):
        assert time.monotonic() < deadline, "the first burst was not snapshotted"
        time.sleep(0.05)
    publish(kafka_broker, names["input"], events(400, 400, poison=600))
    service.thread.join(30)
    assert not service.thread.is_alive() and isinstance(service.error, ProcessorError)
    poison = next(m for m in read_topic(kafka_broker, names["input"]) if json.loads(m.value())["id"] == "poison")
    p, offset = poison.partition(), poison.offset()
    assert (service.error.partition, service.error.offset) == (p, offset)
    assert f"{names['input']}[{p}] at offset {offset}" in str(service.error) and "cannot decide this event" in str(service.error)

    outputs.settle(0.3)
    assert "poison" not in outputs.ids()
    saved = {q: store.load(names["group"], names["input"], q)[0] for q in range(PARTITIONS)}
    assert first_ends[p] <= saved[p] <= offset  # the last good snapshot, never one with the half update
    failed_state = json.loads(store.load(names["group"], names["input"], p)[1])
    assert all(n < 1000 for n, _ in failed_state.values())
    for q in set(range(PARTITIONS)) - {p}:  # the others were snapshotted after their last output
        assert saved[q] == max(r["offset"] for r in outputs.records if r["partition"] == q) + 1

    service = InProcess(kafka_broker, names, store, ToyProcessor(names["output"]))
    outputs.wait(lambda o: len(o.ids()) >= 800, 30, "every output after the fix")
    service.stop()
    outputs.settle(0.3)
    outputs.close()
    assert assert_all_as_clean_run(outputs, expected(kafka_broker, names["input"], names["output"])) >= 0


class SlowDisk(SnapshotStore):
    """A snapshot store whose background writes (the runtime's writer thread) wait until `release` is set, or fail
    with `failure` when one is given; writes made by the loop itself go through at once."""

    def __init__(self, root: Path, failure: Exception | None = None) -> None:
        super().__init__(root)
        self.release, self.holding, self.failure = threading.Event(), threading.Event(), failure
        self.background_writes = 0

    def save(self, group: str, topic: str, partition: int, next_offset: int, data: bytes) -> None:
        if threading.current_thread().name.startswith("snapshot-writer"):
            if self.failure is not None:
                raise self.failure
            self.holding.set()
            assert self.release.wait(60), "the test never released the write"
            self.background_writes += 1
        super().save(group, topic, partition, next_offset, data)


def test_periodic_snapshots_are_written_in_the_background_and_a_failed_write_stops_the_loop(kafka_broker, names, tmp_path):
    """While a periodic snapshot's write is held up (a slow disk), the loop goes on deciding; once it completes the
    stop snapshots every partition at its end. A background write that fails stops the runtime with an error
    naming the snapshot, and a restart replays from the snapshots there are, every output as the clean run's."""
    store = SlowDisk(tmp_path / "snapshots")
    publish(kafka_broker, names["input"], events(0, 400))
    outputs = Outputs(kafka_broker, names["output"])
    service = InProcess(kafka_broker, names, store, ToyProcessor(names["output"]), snapshot_every_s=0.1)
    outputs.wait(lambda o: len(o.ids()) >= 400, 30, "the first burst's outputs")
    assert store.holding.wait(10), "no periodic snapshot was written in the background"
    publish(kafka_broker, names["input"], events(400, 400))
    outputs.wait(lambda o: len(o.ids()) >= 800, 30, "the second burst's outputs while a snapshot write is held up")
    assert store.background_writes == 0  # the held write is still going: the loop decided the burst meanwhile
    store.release.set()
    stats = service.stop()
    assert store.background_writes >= 1 and stats.snapshots >= PARTITIONS + 1
    for p, end in high_watermarks(kafka_broker, names["input"]).items():
        assert store.load(names["group"], names["input"], p)[0] == end

    failing = SlowDisk(tmp_path / "snapshots", failure=OSError(28, "No space left on device"))
    publish(kafka_broker, names["input"], events(800, 400))
    service = InProcess(kafka_broker, names, failing, ToyProcessor(names["output"]), snapshot_every_s=0.1)
    service.thread.join(30)
    assert not service.thread.is_alive() and isinstance(service.error, RuntimeFailure)
    assert "snapshot of" in str(service.error) and "No space left on device" in str(service.error)

    service = InProcess(kafka_broker, names, SnapshotStore(tmp_path / "snapshots"), ToyProcessor(names["output"]))
    outputs.wait(lambda o: len(o.ids()) >= 1200, 30, "every output after the restart")
    service.stop()
    outputs.settle(0.3)
    outputs.close()
    assert assert_all_as_clean_run(outputs, expected(kafka_broker, names["input"], names["output"])) >= 0
