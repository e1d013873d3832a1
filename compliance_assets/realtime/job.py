"""decision_service: the Dagster job that runs the real-time decision service (launched and kept alive by the
decision service supervisor sensor; stopped with Terminate in the UI).

The service runs in a worker thread; the op's own thread relays its log lines and turns every statistics report
into an observation of `transaction_decisions` (rate, latency percentiles, totals) the UI shows while the run is
live. A Terminate interrupts the op's thread only: it sets the service's stop event and waits for its clean stop
(final state snapshots, the consumer group left), then lets the run end as canceled.
"""

import queue
import threading
import time
from typing import Callable, Iterator

from dagster import AssetKey, AssetObservation, AssetSpec, Config, MetadataValue, OpExecutionContext, in_process_executor, job, op
from dagster_pyspark import PySparkResource
from pydantic import Field

from compliance_assets.realtime.runtime import RuntimeStats
from compliance_assets.realtime.service import ServiceOptions, run_service
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from resources.kafka import KafkaResource, decisions_topic
from resources.lake import LakeResource
from resources.masking import PiiMaskingResource
from resources.mlflow import ModelRegistryResource

DECISION_SERVICE_JOB = "decision_service"
CONCURRENCY_KEY = "decision_service"
DECISIONS = "transaction_decisions"
HEARTBEAT_TIMEOUT_S = 10.0  # the op not resumed for this long means the run is ending: the service stops cleanly
STOP_TIMEOUT_S = 120.0  # how long a Terminate waits for the service's final snapshots before giving up on them

transaction_decisions = AssetSpec(
    DECISIONS,
    group_name="streaming",
    kinds={"kafka"},
    description=(
        "One decision record per transaction, made within milliseconds of its arrival by the real-time decision service: "
        "the raw event, its validation outcome (scored, rejected with reason codes, or duplicate), the model's features, "
        "the risk score and band with the top contributing features, the alert reasons, the model name, version and run "
        "that decided, and the reference data day used. Stored in the decisions topic (<transactions topic>-decisions; "
        "rejects also in <transactions topic>-dlq); the transaction_stream job writes it to bronze, silver, gold and alerts. "
        "Its observations report the service's rate and event-to-decision latency."
    ),
)


class DecisionServiceConfig(Config):
    """How the decision service runs (the command line's flags, python -m compliance_assets.realtime)."""

    group_id: str = Field(
        default=ServiceOptions.group_id,
        description="Consumer group of the service's instances: runs with the same group share the topic's partitions and its saved state.",
    )
    delivery_date: str = Field(
        default="", description="Decide every event as delivered on this day (YYYY-MM-DD; replaying a past day); empty = each event's arrival date.",
    )
    lateness_days: int = Field(default=DEFAULT_LATENESS_DAYS, description="Events older than this many days are rejected (ARRIVED_TOO_LATE), as in the batch path.")
    snapshot_seconds: float = Field(
        default=ServiceOptions.snapshot_seconds, description="Seconds between saves of the accounts' state; a restart replays at most this much of the topic.",
    )
    hot_accounts: int = Field(
        default=ServiceOptions.hot_accounts,
        description="Per partition: the most recently used accounts kept unpacked (about 1.9 KB each at 30 events); the others are packed (about 1 KB) and unpacked on their next event.",
    )
    refresh_seconds: float = Field(
        default=ServiceOptions.refresh_seconds, description="Seconds between checks for a newly promoted champion model and new reference data (both swapped in without a restart).",
    )
    stop_after_seconds: float = Field(default=0.0, description="Stop cleanly after this long (0 = until terminated); the sensor starts the next run.")
    stats_every_seconds: float = Field(
        default=30.0,
        description="Seconds between the rate and latency reports on transaction_decisions; each is kept in Dagster's event log, so keep it coarse for a service that runs for days.",
    )


def observation(summary: dict, model_version: str | None, final: bool = False) -> AssetObservation:
    """One statistics report of the service as an observation of transaction_decisions: the window's rate and
    event-to-decision latency (none without events), the totals since the run started, the partitions it owns."""
    metadata = {
        "rate_events_per_s": MetadataValue.float(float(summary["rate"])),
        **{f"latency_{q}_ms": MetadataValue.float(float(summary[f"{q}_ms"])) for q in ("p50", "p95", "max") if summary[f"{q}_ms"] is not None},
        "window_seconds": MetadataValue.float(float(summary["window_s"])),
        "events": summary["events"],
        "outputs": summary["outputs"],
        "snapshots": summary["snapshots"],
        "rebalances": summary["rebalances"],
        "assigned_partitions": MetadataValue.text(", ".join(str(p) for p in summary["assigned"]) or "none"),
        "stale_skipped": summary["stale_skipped"],
        "offset_gaps": summary["offset_gaps"],
        "report": "final (the service stopped and released its partitions)" if final else "periodic",
    }
    if model_version is not None:
        metadata["champion_version"] = model_version
    return AssetObservation(asset_key=AssetKey(DECISIONS), metadata=metadata)


def stats_line(summary: dict) -> str:
    """A statistics report as one log line."""
    p = {k: f"{summary[k]:.0f}" if summary.get(k) is not None else "-" for k in ("p50_ms", "p95_ms", "max_ms")}
    return (f"decision service: {summary['rate']} events/s, latency p50 {p['p50_ms']} ms, p95 {p['p95_ms']} ms, max {p['max_ms']} ms; "
            f"{summary['events']} events, {summary['outputs']} outputs, {summary['snapshots']} snapshots, partitions {summary['assigned']}")


class ServiceThread(threading.Thread):
    """Runs the service and queues its log lines and statistics for the op's thread (the one Dagster talks to)."""

    def __init__(self, run: Callable[..., RuntimeStats]):
        # not a daemon: a run worker ending after a Terminate waits for the service's clean stop (its final snapshots)
        super().__init__(name="decision-service")
        self.reports: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self.result: RuntimeStats | None = None
        self.error: BaseException | None = None
        self._run_service = run
        self.beat = time.monotonic()

    def heartbeat(self) -> None:
        """The op's thread is still relaying (called every half second while the op runs)."""
        self.beat = time.monotonic()

    def _watch(self) -> None:
        """Stop the service when the op's thread stops relaying: Dagster may raise a Terminate's interrupt between two
        resumptions of the op, where no `finally` of the op runs until the op is discarded."""
        while not self.stop_event.wait(1.0):
            if time.monotonic() - self.beat > HEARTBEAT_TIMEOUT_S:
                self.stop_event.set()

    def run(self) -> None:
        threading.Thread(target=self._watch, name="decision-service-watch", daemon=True).start()
        try:
            self.result = self._run_service(
                stop=self.stop_event, on_stats=lambda s: self.reports.put(("stats", s.summary())), log=lambda m: self.reports.put(("log", m)),
            )
        except BaseException as exc:  # re-raised in the op's thread
            self.error = exc


@op(out={}, description="Run the decision service: decide every transaction of the topic, one record each to the decisions topic, until terminated.")
def run_decision_service(
    context: OpExecutionContext,
    config: DecisionServiceConfig,
    spark: PySparkResource,
    lake: LakeResource,
    masking: PiiMaskingResource,
    model_registry: ModelRegistryResource,
    kafka: KafkaResource,
) -> Iterator[AssetObservation]:
    options = ServiceOptions(
        group_id=config.group_id, delivery_date=config.delivery_date, lateness_days=config.lateness_days,
        snapshot_seconds=config.snapshot_seconds, refresh_seconds=config.refresh_seconds, hot_accounts=config.hot_accounts,
    )
    session, salt = spark.spark_session, masking.salt

    def service(**kwargs) -> RuntimeStats:
        return run_service(session, lake, model_registry, kafka, salt, options, max_runtime_s=config.stop_after_seconds,
                           stats_every_s=config.stats_every_seconds, **kwargs)

    def champion_version() -> str | None:
        """The registry's @champion (the service swaps to a new one within refresh_seconds); None if unreachable."""
        try:
            version = model_registry.version_by_alias("champion")
        except Exception:
            return None
        return None if version is None else str(version.version)

    def drained() -> Iterator[tuple[str, object]]:
        """What the worker queued and the op's thread has not relayed yet."""
        while True:
            try:
                yield worker.reports.get_nowait()
            except queue.Empty:
                return

    def relay(kind: str, item) -> Iterator[AssetObservation]:
        """A log line to the run's log; a statistics report to the UI (an observation, shown in the run's log too)."""
        if kind == "log":
            context.log.info(item)
        else:
            yield observation(item, champion_version())

    context.log.info(f"decision service: deciding {kafka.topic} into {decisions_topic(kafka)} as group {options.group_id}")
    worker = ServiceThread(service)
    worker.start()
    ended = False
    try:
        while worker.is_alive():
            worker.heartbeat()
            try:
                yield from relay(*worker.reports.get(timeout=0.5))
            except queue.Empty:
                pass
        ended = True
    finally:
        if not ended:
            # a Terminate (DagsterExecutionInterruptedError) lands here, in the op's thread: stop the service cleanly,
            # then let the interruption end the run (its last log lines relayed, its statistics too, as text)
            worker.stop_event.set()
            worker.join(STOP_TIMEOUT_S)
            if worker.is_alive():
                context.log.warning(f"decision service: not stopped after {STOP_TIMEOUT_S:.0f} s; a restart replays from the last snapshots")
            for kind, item in drained():
                context.log.info(item if kind == "log" else stats_line(item))
    for kind, item in drained():
        yield from relay(kind, item)
    if worker.error is not None:
        raise worker.error
    summary = worker.result.summary()
    context.log.info(f"stopped cleanly; the last report window: {stats_line(summary)}")
    yield observation(summary, champion_version(), final=True)


@job(
    name=DECISION_SERVICE_JOB,
    executor_def=in_process_executor,
    tags={"dagster/concurrency_key": CONCURRENCY_KEY},
    description=(
        "The real-time decision service: every transaction on the transactions topic (Kafka; Event Hubs in production) is "
        "validated, enriched, scored by the @champion and alert-checked within milliseconds, one decision record each to the "
        "decisions topic (transaction_decisions). Launched and relaunched by decision_service_supervisor_sensor; stop it with "
        "Terminate (and turn the sensor off). transaction_stream then writes the decisions to the lake."
    ),
)
def decision_service_job():
    run_decision_service()
