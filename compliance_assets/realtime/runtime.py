"""The decision service's runtime: a consumer-group loop around a stateful, per-partition processor.

The processor (the decision logic) keeps one state per input partition, turns every input message into
its outputs, and serialises a partition's state on request. The runtime owns everything Kafka:

- assignment: a partition's newest snapshot (snapshots.py) is handed to `processor.assign` and consumption
  starts at the snapshot's offset; without one at the group's committed offset, else the earliest. The
  offsets are set in the rebalance callback (`incremental_assign`/`assign` with explicit offsets), the
  only point where a librdkafka consumer can choose them before fetching starts;
- checkpoints, every `snapshot_every_s` (one partition per loop turn, so the pause is one partition's
  serialisation, not all of them), on revocation and on a clean stop: the producer is flushed first (every
  output of the events a snapshot covers is durable), then each changed partition's state is serialised
  and saved with its next offset, then the offsets are committed to the group (for lag monitoring only:
  the snapshot decides where a partition resumes). A periodic snapshot's file is written and fsynced on a
  background thread (the I/O releases the GIL, so the loop goes on deciding; one write at a time, the next
  partition waits for it); revocation and stop wait for it, then write theirs in the loop. A crash before a
  background write completes leaves the partition's previous snapshot, from which a restart replays;
- delivery: at least once. After a crash the next owner restores the last snapshot and re-processes from
  its offset; the processor is deterministic, so the re-emitted outputs are identical and consumers
  dedupe on their key (the transaction id). No Kafka transactions: Event Hubs Standard has none;
- failures stop the loop with a clear error, never skip or retry: a `process` exception stops after the
  other partitions' snapshots (the failing partition's state may be half updated, so it keeps its last
  snapshot and the message is re-processed after a fix); a failed output delivery stops without any
  further snapshot (the outputs since the last one are replayed on restart).

Assignment strategy: cooperative-sticky. A rebalance moves only the partitions that change owner, so a
second instance joining or leaving costs a snapshot hand-off of those partitions only; the others keep
deciding without a pause or a reload. The revoking member's callback (flush, snapshot) completes before
the partition is offered to its new owner, as with the eager protocol. A consumer_config with another
`partition.assignment.strategy` (e.g. `range`, should a Kafka endpoint refuse cooperative rebalancing)
switches the callbacks to eager `assign`/`unassign`.

Latency settings (overridable through the configs): consumer `fetch.wait.max.ms` 10 (an idle partition's
fetch returns quickly once data lands), producer `linger.ms` 1 (batches form from what arrives during a
request in flight, so throughput holds without waiting for a batch to fill), Nagle off on both. The loop
blocks in `poll` for the first message, then drains what is already fetched with `consume(n, 0)`, so a
lone event is decided at once and a busy stream is handled in batches.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple, Protocol

from confluent_kafka import OFFSET_STORED, TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Producer, TopicPartition

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.1  # how long an idle loop blocks: also how fast it sees `stop` and calls tick()
BATCH = 200  # messages drained from the local queue per loop turn, after the first one (a turn's outputs wait for its last)
FLUSH_TIMEOUT_S = 60.0
CONSUMER_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "fetch.wait.max.ms": 10,
    "socket.nagle.disable": True,
    "session.timeout.ms": 10000,  # a killed instance's partitions move after 10 s, not librdkafka's 45
    "heartbeat.interval.ms": 3000,
}
PRODUCER_DEFAULTS = {"linger.ms": 1, "socket.nagle.disable": True}


class Output(NamedTuple):
    """One record to publish for an input message (a named tuple: one is made per output)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None  # None: the producer's partitioner (by key)


class PartitionProcessor(Protocol):
    """The decision logic: per-partition state, deterministic `process` (a replay re-emits the same outputs)."""

    def assign(self, partition: int, snapshot: bytes | None) -> None:
        """Restore (or start empty) the state of a partition this instance now owns."""

    def revoke(self, partition: int) -> None:
        """Forget a partition's state (its snapshot has been written, or it was lost)."""

    def process(self, message) -> list[Output]:
        """One confluent_kafka.Message to the outputs to publish; errors of the message become outputs (DLQ).
        A processor may also offer `process_batch(messages)` (one partition's consecutive messages, in order):
        the runtime then hands it each partition's run of a poll at once."""

    def snapshot(self, partition: int) -> bytes:
        """The partition's state, serialised."""

    def tick(self) -> None:
        """Called between polls (e.g. to hot-reload a model); must be cheap."""


@dataclass
class RuntimeStats:
    """Counters since the start, and the event-to-output latencies (ms, from the input's broker timestamp to
    the hand-off of its last output to the producer) and event count of the current reporting window."""

    events: int = 0
    outputs: int = 0
    snapshots: int = 0
    rebalances: int = 0
    stale_skipped: int = 0  # messages of a partition no longer owned, or already processed (dropped by design)
    offset_gaps: int = 0  # a partition's next message was beyond its expected offset (retention, compaction)
    assigned: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    window_started: float = field(default_factory=time.monotonic)
    window_events: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        """The window's latency at quantile q (0..1, nearest rank), or None without samples."""
        if not self.latency_ms:
            return None
        ordered = sorted(self.latency_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def summary(self) -> dict:
        """A printable report: totals, the window's rate and latency percentiles."""
        seconds = max(1e-9, time.monotonic() - self.window_started)

        def rounded(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        return {
            "events": self.events, "outputs": self.outputs, "snapshots": self.snapshots, "rebalances": self.rebalances,
            "assigned": sorted(self.assigned), "stale_skipped": self.stale_skipped, "offset_gaps": self.offset_gaps,
            "window_s": round(seconds, 2), "rate": round(self.window_events / seconds, 1),
            "p50_ms": rounded(self.percentile(0.5)), "p95_ms": rounded(self.percentile(0.95)),
            "max_ms": rounded(max(self.latency_ms) if self.latency_ms else None),
        }

    def new_window(self) -> None:
        """Start the next reporting window."""
        self.window_started, self.window_events, self.latency_ms = time.monotonic(), 0, []


class RuntimeFailure(RuntimeError):
    """The runtime stopped on an error it must not skip; its text says what, where, and what was saved."""


class ProcessorError(RuntimeFailure):
    """`process` raised on one message: the runtime stopped without snapshotting that message's partition."""

    def __init__(self, message: str, partition: int, offset: int) -> None:
        super().__init__(message)
        self.partition, self.offset = partition, offset


class DeliveryError(RuntimeFailure):
    """An output could not be delivered: the runtime stopped without writing further snapshots."""


class _Writing(NamedTuple):
    """The periodic snapshot being written in the background."""

    future: Future
    partition: int
    offset: int


@dataclass
class _Partition:
    next_offset: int | None  # the next input offset the state has not seen; None until known
    dirty: bool = False  # processed messages since its last snapshot
    broken: bool = False  # its state may be inconsistent: never snapshot it again
    saved_offset: int | None = None  # the offset of its newest snapshot, where a new owner would resume


class _Runtime:
    def __init__(self, consumer_config, producer_config, topic, group, processor, store, snapshot_every_s, stats) -> None:
        self.topic, self.group, self.processor, self.store = topic, group, processor, store
        self.snapshot_every_s, self.stats = snapshot_every_s, stats
        self.parts: dict[int, _Partition] = {}
        self.delivery_error: KafkaError | None = None
        self.fatal_error: KafkaError | None = None
        consumer = {**CONSUMER_DEFAULTS, **consumer_config}
        self.incremental = "cooperative" in str(consumer["partition.assignment.strategy"])
        consumer.update({"group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False, "error_cb": self._on_error})
        producer = {**PRODUCER_DEFAULTS, **producer_config, "enable.idempotence": True, "acks": "all",
                    # no output after a failed one: a consumer may treat an input offset at or below the highest it saw as re-emitted
                    "enable.gapless.guarantee": True}
        producer.update({"on_delivery": self._on_delivery, "error_cb": self._on_error})
        self.consumer = Consumer(consumer)
        self.producer = Producer(producer)
        # periodic snapshots are written and fsynced here, one at a time, while the loop goes on deciding
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer")
        self.writing: _Writing | None = None

    # --- librdkafka callbacks (run inside poll/consume/flush/close, on this thread) ---

    def _on_error(self, err: KafkaError) -> None:
        """Client errors: a fatal one (e.g. the idempotent producer's) stops the loop; others are retried by the client."""
        if err.fatal():
            self.fatal_error = self.fatal_error or err
        log.warning("kafka client error: %s", err)

    def _on_delivery(self, err: KafkaError | None, _msg) -> None:
        if err is not None and self.delivery_error is None:
            self.delivery_error = err

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Restore each new partition's snapshot and start consuming at its offset (else committed, else earliest)."""
        self.stats.rebalances += 1
        started = {}
        for tp in partitions:
            held = self.parts.get(tp.partition)
            if held is not None and held.next_offset is not None:  # still ours (never revoked): keep the live state
                tp.offset = held.next_offset
                started[tp.partition] = f"{held.next_offset} (kept)"
                continue
            snapshot = self.store.load(self.group, tp.topic, tp.partition)
            self.processor.assign(tp.partition, snapshot[1] if snapshot else None)
            tp.offset = snapshot[0] if snapshot else OFFSET_STORED
            self.parts[tp.partition] = _Partition(snapshot[0] if snapshot else None, saved_offset=snapshot[0] if snapshot else None)
            started[tp.partition] = f"{snapshot[0]} (snapshot)" if snapshot else "committed/earliest (no snapshot, empty state)"
        if self.incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self.stats.assigned = sorted(self.parts)
        log.info("assigned %s partitions %s, starting at %s; now own %s", self.topic, sorted(started), started, self.stats.assigned)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Hand partitions over: flush, snapshot and commit them, then let the processor forget them."""
        self.stats.rebalances += 1
        mine = [tp.partition for tp in partitions if tp.partition in self.parts]
        try:
            self._checkpoint(mine, sync_commit=True)
        finally:
            self._release(consumer, partitions, mine)
        log.info("revoked %s partitions %s; now own %s", self.topic, sorted(mine), self.stats.assigned)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a hand-off (this member was considered dead): drop them unsnapshotted;
        their new owner restores the last snapshot and replays, re-emitting identical outputs."""
        self.stats.rebalances += 1
        lost = [tp.partition for tp in partitions if tp.partition in self.parts]
        self._release(consumer, partitions, lost)
        log.warning("lost %s partitions %s (no hand-off); now own %s", self.topic, sorted(lost), self.stats.assigned)

    def _release(self, consumer: Consumer, partitions: list[TopicPartition], owned: list[int]) -> None:
        """Forget the owned ones among `partitions` and give them all back to the group."""
        self._forget(owned)
        if self.incremental:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.parts.pop(p, None)
            self.processor.revoke(p)
        self.stats.assigned = sorted(self.parts)

    # --- checkpoints ---

    def _raise_if_undelivered(self, still_queued: int = 0) -> None:
        """Stop, snapshotting nothing more, if an output failed, was not delivered in time, or a client hit a
        fatal error (which may have lost outputs too)."""
        if self.delivery_error is None and self.fatal_error is None and still_queued == 0:
            return
        for st in self.parts.values():
            st.broken = True
        if self.delivery_error is not None:
            reason = f"outputs could not be delivered ({self.delivery_error.str()})"
        elif self.fatal_error is not None:
            reason = f"fatal Kafka client error ({self.fatal_error.str()})"
        else:
            reason = f"{still_queued} outputs still undelivered after {FLUSH_TIMEOUT_S:.0f}s"
        raise DeliveryError(
            f"{reason}; stopped without further snapshots, so a restart replays every partition of {self.topic} from its "
            "last snapshot and re-emits the outputs since"
        )

    def _checkpoint(self, partitions: Iterable[int], sync_commit: bool, background: bool = False) -> None:
        """Flush the outputs, then snapshot the given partitions that changed, then commit their offsets.
        `background` (one partition, the writer idle): its state is serialised here and written by the writer
        thread, its offset committed once `_reap` sees the write done. Otherwise an earlier background write is
        waited for first, and these are written here."""
        if not background:
            self._reap(wait=True)
        todo = [(p, st) for p in partitions if (st := self.parts.get(p)) and st.dirty and not st.broken and st.next_offset is not None]
        if not todo:
            return
        self._raise_if_undelivered(self.producer.flush(FLUSH_TIMEOUT_S))
        if background:
            ((p, st),) = todo
            data = self._serialised(p, st)
            self.writing = _Writing(self.writer.submit(self.store.save, self.group, self.topic, p, st.next_offset, data), p, st.next_offset)
            st.dirty = False
            return
        saved = []
        for p, st in todo:
            data = self._serialised(p, st)
            try:
                self.store.save(self.group, self.topic, p, st.next_offset, data)
            except Exception as e:
                raise self._snapshot_failed(p, st.next_offset, e) from e
            st.dirty = False
            saved.append((p, st.next_offset))
        self._saved(saved, sync_commit)

    def _serialised(self, p: int, st: _Partition) -> bytes:
        try:
            return self.processor.snapshot(p)
        except Exception as e:
            raise self._snapshot_failed(p, st.next_offset, e) from e

    def _snapshot_failed(self, p: int, offset: int, error: Exception) -> RuntimeFailure:
        return RuntimeFailure(f"snapshot of {self.topic}[{p}] at offset {offset} failed: {error!r}")

    def _reap(self, wait: bool = False) -> None:
        """Take in the background write once it is done (`wait`: block until it is): the partition now resumes
        from it and its offset is committed. A failed write stops the loop (the partition keeps its previous
        snapshot, from which a restart replays)."""
        writing = self.writing
        if writing is None or not (wait or writing.future.done()):
            return
        self.writing = None
        try:
            writing.future.result()
        except Exception as e:
            raise self._snapshot_failed(writing.partition, writing.offset, e) from e
        self._saved([(writing.partition, writing.offset)], sync_commit=False)

    def _saved(self, saved: list[tuple[int, int]], sync_commit: bool) -> None:
        """Snapshots written: where their partitions now resume, and the group's offsets (for lag monitoring)."""
        offsets = []
        for p, offset in saved:
            self.stats.snapshots += 1
            st = self.parts.get(p)
            if st is not None:  # still ours (a lost partition's write may complete after it left: its new owner commits)
                st.saved_offset = offset
                offsets.append(TopicPartition(self.topic, p, offset))
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=not sync_commit)
        except KafkaException as e:  # monitoring only: the snapshots are saved
            log.warning("offset commit for lag monitoring failed (snapshots are saved): %s", e)

    # --- the loop ---

    def _process(self, batch: list) -> None:
        """Decide a batch of messages in order, each partition's run of messages in one `process_batch` call
        where the processor has one; stale ones (a partition not owned or already past) are skipped."""
        parts, stats = self.parts, self.stats
        runs: dict[int, list] = {}
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise RuntimeFailure(f"consumer failed: {err.str()}")
                log.warning("consumer: %s", err.str())
                continue
            p, offset = msg.partition(), msg.offset()
            st = parts.get(p)
            expected = runs[p][-1].offset() + 1 if runs.get(p) else (st.next_offset if st is not None else None)
            # fetched before a revocation, or before a re-assignment rewound the partition: not ours to decide
            if st is None or st.broken or (expected is not None and offset < expected):
                stats.stale_skipped += 1
                continue
            if expected is not None and offset > expected:
                stats.offset_gaps += 1
                log.warning("%s[%d]: expected offset %d, got %d (records gone from the log?)", self.topic, p, expected, offset)
            runs.setdefault(p, []).append(msg)
        for p, messages in runs.items():
            self._process_run(p, messages)

    def _process_run(self, p: int, messages: list) -> None:
        """One partition's consecutive messages: decide them, hand every output to the producer, advance."""
        st, stats = self.parts[p], self.stats
        process_batch = getattr(self.processor, "process_batch", None)
        failing = messages[0]  # the message being decided (the run's first one for a batch call)
        try:
            if process_batch is not None:
                outputs = process_batch(messages)
            else:
                outputs = []
                for failing in messages:
                    outputs += self.processor.process(failing)
            for out in outputs:
                self._produce(out)
        except BaseException as e:
            st.broken = True  # the processor may have updated part of the state
            if not isinstance(e, Exception):  # KeyboardInterrupt: stop as asked, the partition unsnapshotted
                raise
            resume = f"its last snapshot's offset {st.saved_offset}" if st.saved_offset is not None else "the committed/earliest offset (no snapshot)"
            where = f"offset {failing.offset()}" if process_batch is None else f"offsets {failing.offset()}..{messages[-1].offset()}"
            raise ProcessorError(
                f"processing {self.topic}[{p}] at {where} (key {failing.key()!r}) failed: {e!r}. Stopped; partition {p} was not "
                f"snapshotted (its state may be half updated) and resumes at {resume} once the processor is fixed",
                p, failing.offset(),
            ) from e
        st.next_offset, st.dirty = messages[-1].offset() + 1, True
        stats.events += len(messages)
        stats.window_events += len(messages)
        stats.outputs += len(outputs)
        now_ms = time.time() * 1000.0
        for msg in messages:
            ts_type, ts = msg.timestamp()
            if ts_type != TIMESTAMP_NOT_AVAILABLE:
                stats.latency_ms.append(now_ms - ts)

    def _produce(self, out: Output) -> None:
        """Hand one output to the producer (to its partition when it names one), waiting while the queue is full."""
        kwargs = {"headers": out.headers} if out.headers else {}
        if out.partition is not None:
            kwargs["partition"] = out.partition
        while True:
            try:
                self.producer.produce(out.topic, out.value, out.key, **kwargs)
                return
            except BufferError:  # the producer's queue is full: let deliveries drain
                self.producer.poll(0.01)

    def run(self, stop: threading.Event, on_stats, stats_every_s: float, max_runtime_s: float) -> None:
        """Consume, decide and checkpoint until `stop` is set or `max_runtime_s` has passed."""
        consumer = self.consumer
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        now = time.monotonic()
        next_snapshot, next_stats = now + self.snapshot_every_s, now + stats_every_s
        end = now + max_runtime_s if max_runtime_s > 0 else math.inf
        due: list[int] = []  # partitions whose periodic snapshot is still to write this round
        while not stop.is_set():
            msg = consumer.poll(POLL_TIMEOUT_S)
            if msg is not None:
                batch = consumer.consume(BATCH, 0)
                batch.insert(0, msg)
                self._process(batch)
            self.producer.poll(0)
            self._raise_if_undelivered()
            try:
                self.processor.tick()
            except Exception as e:
                raise RuntimeFailure(f"processor.tick() failed: {e!r}") from e
            now = time.monotonic()
            if not due and now >= next_snapshot:
                due, next_snapshot = sorted(self.parts), now + self.snapshot_every_s
            self._reap()
            if due and self.writing is None:
                # one partition per loop turn, written in the background: the pause a snapshot costs is its serialisation
                self._checkpoint([due.pop(0)], sync_commit=False, background=True)
            if now >= next_stats:
                if on_stats is not None:
                    on_stats(self.stats)
                self.stats.new_window()
                next_stats = now + stats_every_s
            if now >= end:
                break

    def close(self) -> None:
        """Leave the group (the revocation callback snapshots what is still dirty and consistent), flush the
        outputs and close the producer, so no client outlives the run (a caught exception's frames hold it)."""
        try:
            self.consumer.close()
        finally:
            self.writer.shutdown(wait=True)  # a background write still going completes (or fails: its partition replays)
            if self.producer.flush(FLUSH_TIMEOUT_S):
                # undeliverable (the broker is gone): no snapshot covers these outputs, a restart re-emits them
                self.producer.purge()
            self.producer.close()


def run(
    consumer_config: dict,
    producer_config: dict,
    input_topic: str,
    group_id: str,
    processor: PartitionProcessor,
    store,
    *,
    snapshot_every_s: float = 10.0,
    stop: threading.Event | None = None,
    on_stats: Callable[[RuntimeStats], None] | None = None,
    stats_every_s: float = 5.0,
    max_runtime_s: float = 0,
) -> RuntimeStats:
    """Run the processor over `input_topic` as a member of `group_id` until `stop` is set (or `max_runtime_s`
    passed); a clean stop snapshots every owned partition. Raises RuntimeFailure (ProcessorError,
    DeliveryError) after saving what is consistent; returns the stats (the last window's latencies)."""
    stop = stop or threading.Event()
    stats = RuntimeStats()
    rt = _Runtime(consumer_config, producer_config, input_topic, group_id, processor, store, snapshot_every_s, stats)
    log.info("runtime: %s as group %s, snapshots in %s every %.1fs, %s assignment", input_topic, group_id,
             getattr(store, "describe", lambda: store)(), snapshot_every_s, "cooperative" if rt.incremental else "eager")
    try:
        rt.run(stop, on_stats, stats_every_s, max_runtime_s)
        rt._checkpoint(list(rt.parts), sync_commit=True)
    except BaseException as e:
        # save what is consistent (a failed partition and everything after a failed delivery are marked broken)
        if not isinstance(e, DeliveryError):
            try:
                rt._checkpoint(list(rt.parts), sync_commit=True)
            except Exception as again:
                log.error("final snapshot after a failure also failed: %s", again)
        try:
            rt.close()
        except Exception as again:
            log.error("closing after a failure: %s", again)
        if isinstance(e, RuntimeFailure):
            log.error("runtime stopped: %s", e)
        raise
    rt.close()
    log.info("runtime stopped cleanly: %s", stats.summary())
    return stats
