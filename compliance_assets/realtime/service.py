"""The decision service: the transactions topic in, one decision record per event out, in milliseconds.

`DecisionProcessor` plugs the decision logic (decisions.py) into the consumer-group runtime (runtime.py):
per assigned partition it holds the states of the accounts keyed to it, restored from the partition's
snapshot or, at first start, built from silver's history window; it keeps the reference snapshot of the
delivery day and the `@champion` fresh (checked every few seconds, loaded beside the running one and
swapped between events, so no restart and no pause); every decision names the model version and the
reference day it used. Rejected events are decisions too, and go to the DLQ topic as well.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from compliance_assets.ingest.silver import SILVER
from compliance_assets.realtime.account_state import AccountState, AccountStates, dump_states, load_states
from compliance_assets.realtime.decisions import KAFKA_SOURCE, MISKEYED, REJECTED, Champion, Decider, Decision, Event, encode
from compliance_assets.realtime.reference import ReferenceSnapshot, load_references, source_versions
from compliance_assets.realtime.runtime import Output, RuntimeStats, run
from compliance_assets.realtime.snapshots import SnapshotStore
from compliance_assets.transforms.features import HISTORY_DAYS, HISTORY_SCHEMA
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from resources.kafka import DLQ_SUFFIX, DECISIONS_SUFFIX, KafkaResource, create_topic
from resources.lake import LakeResource
from resources.mlflow import ModelRegistryResource

@dataclass(frozen=True)
class ServiceOptions:
    """How the decision service runs (the Dagster job's config and the command line's flags)."""

    decisions_topic: str = ""  # "" = <input topic>-decisions
    dlq_topic: str = ""  # "" = <input topic>-dlq
    group_id: str = "decision-service"
    delivery_date: str = ""  # a fixed delivery day (replaying a historical day); "" = each event's arrival date
    lateness_days: int = DEFAULT_LATENESS_DAYS
    refresh_seconds: float = 5.0  # how often the champion alias and the reference tables' versions are checked
    snapshot_seconds: float = 10.0
    hot_accounts: int = 20_000  # per partition: the most recently used accounts kept unpacked; the others are frozen (account_state.freeze)


def settle_heap() -> None:
    """Take what is alive now (libraries, the model, the reference data, the states) out of the garbage collector's
    sight (`gc.freeze`), after a collection, so no garbage is kept with it. A full collection walks every tracked
    object: with Spark, MLflow and a day's reference data loaded about 0.3-0.5 s, due every few tens of seconds at
    thousands of events a second, and every decision behind it waits. Called after each long-lived load (a model
    or reference data swapped out later is freed as usual, but for objects of it caught in reference cycles)."""
    gc.collect()
    gc.freeze()


def history_start(day: dt.date, lateness_days: int) -> dt.date:
    """The first event date the state keeps for deliveries of `day`: the batch path's history window."""
    return day - dt.timedelta(days=lateness_days + HISTORY_DAYS)


def states_from_silver(spark: SparkSession, lake: LakeResource, day: dt.date, lateness_days: int, exclude_topic: str | None = None) -> dict[str, AccountState]:
    """Every account's state from silver's history window for `day`'s deliveries. Rows that came from
    `exclude_topic` are left out: the service decides that topic's events itself, from the topic."""
    rows = lake.read_or_empty(spark, SILVER, HISTORY_SCHEMA).where(F.col("event_date") >= F.lit(history_start(day, lateness_days)))
    if exclude_topic is not None and "source_file" in rows.columns:
        rows = rows.where(~F.coalesce((F.col("source") == KAFKA_SOURCE) & F.col("source_file").startswith(exclude_topic + "/"), F.lit(False)))
    states: dict[str, AccountState] = {}
    ordered = rows.select("transaction_id", "account_id", "event_time", "amount_base", "latitude", "longitude").orderBy("event_time")
    for r in ordered.toLocalIterator():
        state = states.get(r.account_id)
        if state is None:
            state = states[r.account_id] = AccountState()
        state.update(r.transaction_id, r.event_time, r.amount_base, r.latitude, r.longitude)
    return states


class DecisionProcessor:
    """The runtime's PartitionProcessor for decisions (see the module docstring)."""

    def __init__(self, spark: SparkSession, lake: LakeResource, registry: ModelRegistryResource, input_topic: str, pii_salt: str,
                 options: ServiceOptions, store: SnapshotStore, log: Callable[[str], None] = print):
        self.spark, self.lake, self.registry, self.topic, self.options, self.store, self.log = spark, lake, registry, input_topic, options, store, log
        self.decisions_topic = options.decisions_topic or input_topic + DECISIONS_SUFFIX
        self.dlq_topic = options.dlq_topic or input_topic + DLQ_SUFFIX
        fixed_day = dt.date.fromisoformat(options.delivery_date) if options.delivery_date else None
        self.decider = Decider(pii_salt, options.lateness_days, fixed_day)
        self.states: dict[int, AccountStates] = {}
        self._bootstrap: AccountStates | None = None
        self.champion = self._load_champion()
        self.references: ReferenceSnapshot | None = None
        self._pending: dict[str, object] = {}  # what a background refresh has ready to swap in
        self._refreshing = False
        self._checked_at = time.monotonic()
        self.miskeyed = self._miskeyed_reported = 0  # events keyed by something else than their account (reported in tick)

    # ---- model and reference data ----------------------------------------------------------
    def _load_champion(self) -> Champion:
        version, model = self.registry.champion()
        self.log(f"decision service: champion {self.registry.model_name} v{version.version}")
        return Champion(self.registry.model_name, str(version.version), version.run_id, model)

    def _references_for(self, day: dt.date) -> ReferenceSnapshot:
        """The reference snapshot for deliveries of `day`; a new day is loaded at once (its first event waits)."""
        if self.references is None or self.references.day != day:
            t = time.perf_counter()
            self.references = load_references(self.spark, self.lake, day, self.options.lateness_days, self.champion.model.label_delay_days)
            settle_heap()
            self.log(f"decision service: reference data for {day} loaded in {time.perf_counter() - t:.1f} s")
        return self.references

    def tick(self) -> None:
        """Swap in what a background refresh loaded; start one when the refresh interval has passed."""
        if self._pending:
            if "champion" in self._pending:
                self.champion = self._pending.pop("champion")
                self.log(f"decision service: now deciding with {self.champion.name} v{self.champion.version}")
            if "references" in self._pending:
                refs = self._pending.pop("references")
                if self.references is not None and refs.day == self.references.day:
                    self.references = refs
                    self.log(f"decision service: reference data for {refs.day} refreshed")
            settle_heap()  # the new model or data long-lived, the old one freed
        now = time.monotonic()
        if self._refreshing or now - self._checked_at < self.options.refresh_seconds:
            return
        if self.miskeyed > self._miskeyed_reported:
            self.log(f"decision service: {self.miskeyed} events so far whose message key is not their account_id ({MISKEYED}): "
                     "producers must key by account, or an account's state splits across partitions")
            self._miskeyed_reported = self.miskeyed
        self._checked_at = now
        self._refreshing = True
        threading.Thread(target=self._refresh, name="decision-service-refresh", daemon=True).start()

    def _refresh(self) -> None:
        """Load a new champion or new reference data if the registry or the tables changed (background thread)."""
        try:
            version = self.registry.version_by_alias("champion")
            if version is not None and str(version.version) != self.champion.version:
                self._pending["champion"] = Champion(self.registry.model_name, str(version.version), version.run_id, self.registry.load(version))
            refs = self.references
            if refs is not None and source_versions(self.lake) != refs.versions:
                self._pending["references"] = load_references(self.spark, self.lake, refs.day, self.options.lateness_days, self.champion.model.label_delay_days)
        except Exception as exc:  # a refresh that fails keeps the current model and data; the next one retries
            self.log(f"decision service: refresh failed, keeping the current champion and reference data: {type(exc).__name__}: {exc}")
        finally:
            self._refreshing = False

    # ---- partitions -----------------------------------------------------------------------
    def assign(self, partition: int, snapshot: bytes | None) -> None:
        """A partition's accounts from its snapshot; accounts it has not seen yet start from the group's base state."""
        self.states[partition] = load_states(snapshot, hot=self.options.hot_accounts) if snapshot is not None else AccountStates()
        if self._bootstrap is None:
            self._bootstrap = load_states(self._base_state(), hot=0)
            settle_heap()
        self.log(f"decision service: partition {partition} assigned ({len(self.states[partition])} accounts from its snapshot)")

    def _base_state(self) -> bytes:
        """The base state of the group: saved at its first start from silver's history window (the topic's own
        events left out, they are decided from the topic), so every later start and every replay begins from
        the same states."""
        base = self.store.load_base(self.options.group_id, self.topic)
        if base is None:
            day = self.decider.delivery_date or dt.datetime.now(dt.timezone.utc).date()
            t = time.perf_counter()
            states = states_from_silver(self.spark, self.lake, day, self.options.lateness_days, exclude_topic=self.topic)
            frozen = AccountStates(states)
            frozen.freeze_beyond(0)
            base = self.store.save_base(self.options.group_id, self.topic, dump_states(frozen))
            self.log(f"decision service: base state of {len(states)} accounts built from silver in {time.perf_counter() - t:.1f} s")
        return base

    def revoke(self, partition: int) -> None:
        self.states.pop(partition, None)

    def snapshot(self, partition: int) -> bytes:
        return dump_states(self.states.get(partition, AccountStates()))

    def _state_lookup(self, partition: int, day: dt.date) -> Callable[[str], AccountState]:
        """An account's state on this partition (thawed if it was frozen; moved in from the first-start bootstrap,
        or new), its events before the day's history window forgotten."""
        states = self.states.setdefault(partition, AccountStates())
        first = history_start(day, self.options.lateness_days)

        def state_of(account: str) -> AccountState:
            state = states.get(account)  # now the most recently used
            if state is None:
                state = states[account] = (self._bootstrap.pop(account, None) if self._bootstrap else None) or AccountState()
            state.forget_before(first)
            return state

        return state_of

    # ---- events -----------------------------------------------------------------------------
    def process(self, message) -> list[Output]:
        return self.process_batch([message])

    def process_batch(self, messages: list) -> list[Output]:
        """Decide a poll's messages of one partition in order, scoring them together."""
        events = [Event(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value()) for m in messages]
        outputs: list[Output] = []
        # one reference snapshot per delivery day: split the poll where the day changes
        start = 0
        while start < len(events):
            day = self.decider.arrival(events[start])[1]
            end = start
            while end < len(events) and self.decider.arrival(events[end])[1] == day:
                end += 1
            outputs += self._decide(events[start:end], day)
            start = end
        return outputs

    def _decide(self, events: list[Event], day: dt.date) -> list[Output]:
        refs = self._references_for(day)
        by_partition: dict[int, list[Event]] = {}
        for e in events:
            by_partition.setdefault(e.partition, []).append(e)
        outputs = []
        decided_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        for partition, group in by_partition.items():
            for d in self.decider.decide(group, self._state_lookup(partition, day), self.champion, refs):
                outputs += self._outputs(d, refs, decided_at)
            self.states[partition].freeze_beyond(self.options.hot_accounts)  # the least recently used beyond the bound
        return outputs

    def _outputs(self, d: Decision, refs: ReferenceSnapshot, decided_at: dt.datetime) -> list[Output]:
        value = encode(d.record(self.champion, refs, decided_at))
        key = (d.transaction_id or d.event.ingest_id).encode("utf-8")
        if d.routing_warnings:
            self.miskeyed += 1
        # the input's partition: the Delta lane reads each input partition's decisions in input-offset order
        out = [Output(self.decisions_topic, key, value, partition=d.event.partition)]
        if d.outcome == REJECTED:
            out.append(Output(self.dlq_topic, d.event.ingest_id.encode("utf-8"), value, partition=d.event.partition))
        return out



def ensure_topic(kafka: KafkaResource, topic: str, partitions: int) -> None:
    """Create an output topic with the input's partition count if it is missing, and check it has at least that
    many: decision p of input partition p goes to partition p (the Delta lane relies on that order)."""
    create_topic(kafka.bootstrap_servers, topic, partitions, client_config=kafka.confluent_config())
    for attempt in range(20):  # a topic just created takes a moment to show in the metadata
        try:
            found = int(kafka.model_copy(update={"topic": topic}).preflight()["partitions"])
            break
        except Exception:
            if attempt == 19:
                raise
            time.sleep(0.5)
    if found < partitions:
        raise ValueError(f"topic {topic} has {found} partitions, fewer than the input's {partitions}: give it at least as many (decisions keep their input partition)")


def state_store(lake: LakeResource) -> SnapshotStore:
    """Where the service's state snapshots live: DECISION_STATE_DIR, else <lake>/state/decision_service for a local
    lake folder. A cloud lake (abfss://) needs DECISION_STATE_DIR: a volume every instance mounts."""
    folder = os.getenv("DECISION_STATE_DIR", "")
    if not folder:
        if "://" in lake.root:
            raise ValueError(f"the lake {lake.root} is not a local folder: set DECISION_STATE_DIR to a folder every decision service instance mounts")
        folder = f"{lake.root}/state/decision_service"
    return SnapshotStore(folder)


def run_service(spark: SparkSession, lake: LakeResource, registry: ModelRegistryResource, kafka: KafkaResource, pii_salt: str, options: ServiceOptions,
                stop: threading.Event | None = None, on_stats: Callable[[RuntimeStats], None] | None = None, log: Callable[[str], None] = print,
                max_runtime_s: float = 0, stats_every_s: float = 5.0) -> RuntimeStats:
    """Run the decision service on the kafka resource's topic until `stop` is set (the Dagster job and the CLI call it)."""
    checked = kafka.preflight()  # wrong credentials, no broker or no topic fail here, at once and clearly
    log(f"decision service: {checked['topic']} ({checked['partitions']} partitions) at {checked['bootstrap_servers']} over {checked['security_protocol']}")
    store = state_store(lake)
    processor = DecisionProcessor(spark, lake, registry, kafka.topic, pii_salt, options, store, log)
    connection = kafka.confluent_config()
    for topic in (processor.decisions_topic, processor.dlq_topic):
        ensure_topic(kafka, topic, int(checked["partitions"]))
    log(f"decision service: decisions to {processor.decisions_topic}, rejects also to {processor.dlq_topic}, group {options.group_id}")
    return run(connection, dict(connection), kafka.topic, options.group_id, processor, store, snapshot_every_s=options.snapshot_seconds,
               stop=stop, on_stats=on_stats, stats_every_s=stats_every_s, max_runtime_s=max_runtime_s)
