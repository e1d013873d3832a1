"""Keep exactly one run of each long-running lane alive: the decision service (decision_service, the real-time
lane) and the Spark stream (transaction_stream, by default the Delta lane reading the decisions topic). Each
supervisor launches its job, relaunches it after a failure with exponential backoff, and leaves it stopped
after an operator pressed Terminate.

The decision is the pure function `decide` (run history in, launch or skip out); `supervisor_sensor` builds
one sensor per lane that only reads the run history from the instance and turns the decision into a
RunRequest or a SkipReason.
"""

import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from compliance_assets.realtime.job import DECISION_SERVICE_JOB, decision_service_job
from compliance_assets.streaming.job import STREAM_JOB, transaction_stream_job

# A run in any of these states holds (or is about to hold) the lane: never launch a second one.
IN_FLIGHT_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.SUSPENDED,  # in progress without a worker (nothing writes it yet in 1.13)
]
FINISHED_STATUSES = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
# How many finished runs are read to count consecutive failures; the backoff is capped long before.
HISTORY_LIMIT = 50
RUN_KEY_PREFIX = "stream-"
DECISIONS_RUN_KEY_PREFIX = "decisions-"
RUN_KEY_TAG = "dagster/run_key"  # the tag Dagster puts on runs launched from a sensor RunRequest
SOURCES = ("decisions", "kafka", "files")  # the stream's sources: the Delta lane (default), the transactions topic, the landing folder


@dataclass(frozen=True)
class FinishedRun:
    """What the decision needs to know about one finished run of a supervised job."""

    run_id: str
    status: DagsterRunStatus
    end_time: Optional[float]  # unix seconds
    run_key: Optional[str] = None


@dataclass(frozen=True)
class Backoff:
    """Relaunch delay after n consecutive failures: base × 2^(n−1), capped at max."""

    base_seconds: float = 30.0
    max_seconds: float = 600.0

    @classmethod
    def from_env(cls, prefix: str = "STREAM") -> "Backoff":
        """<prefix>_RESTART_BACKOFF_SECONDS and ..._MAX_SECONDS; unset, the stream's (STREAM_...), else 30 s and 600 s."""

        def seconds(suffix: str, default: str) -> float:
            return float(os.getenv(f"{prefix}_{suffix}", os.getenv(f"STREAM_{suffix}", default)))

        return cls(base_seconds=seconds("RESTART_BACKOFF_SECONDS", "30"), max_seconds=seconds("RESTART_BACKOFF_MAX_SECONDS", "600"))

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.max_seconds, self.base_seconds * 2 ** min(failures - 1, 60))


@dataclass(frozen=True)
class Decision:
    """Launch or skip, why, and (when launching after failures) how many failures came before."""

    launch: bool
    reason: str
    failures: int = 0
    relaunch_at: Optional[float] = None


def _when(timestamp: Optional[float]) -> str:
    if timestamp is None:
        return "an unknown time"
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def consecutive_failures(history: Sequence[FinishedRun]) -> int:
    """Failed runs at the head of the history (newest first), up to the first run that did not fail."""
    count = 0
    for run in history:
        if run.status != DagsterRunStatus.FAILURE:
            break
        count += 1
    return count


def decide(
    in_flight: Sequence[str],
    history: Sequence[FinishedRun],
    now: float,
    backoff: Backoff,
    sensor_started_at: Optional[float] = None,
    job_name: str = STREAM_JOB,
) -> Decision:
    """Whether to launch the job now. `in_flight`: ids of unfinished runs; `history`: finished runs,
    newest first; `sensor_started_at`: when the sensor was last turned on (a restart after a Terminate
    resumes supervision); `job_name`: the supervised job, as the reasons name it."""
    if in_flight:
        return Decision(False, f"{job_name} run {in_flight[0]} is in flight; not launching a second one")
    if not history:
        return Decision(True, f"no {job_name} run yet: launching it")
    latest = history[0]
    if latest.status == DagsterRunStatus.SUCCESS:
        return Decision(True, f"{job_name} run {latest.run_id} finished at {_when(latest.end_time)}: launching the next one")
    if latest.status == DagsterRunStatus.CANCELED:
        if sensor_started_at is not None and latest.end_time is not None and sensor_started_at > latest.end_time:
            return Decision(True, f"{job_name} run {latest.run_id} was stopped at {_when(latest.end_time)} and the sensor was turned on again since: resuming")
        return Decision(
            False,
            f"{job_name} run {latest.run_id} was stopped from the UI at {_when(latest.end_time)}; launch {job_name} from the "
            "Launchpad (or stop and start this sensor) to resume",
        )
    failures = consecutive_failures(history)
    delay = backoff.delay(failures)
    relaunch_at = (latest.end_time or 0.0) + delay
    if now < relaunch_at:
        return Decision(
            False,
            f"{job_name} run {latest.run_id} failed at {_when(latest.end_time)} ({failures} consecutive failure(s)); "
            f"relaunching at {_when(relaunch_at)} (backoff {delay:.0f}s)",
            failures=failures,
            relaunch_at=relaunch_at,
        )
    return Decision(True, f"{job_name} run {latest.run_id} failed ({failures} consecutive failure(s)); relaunching after {delay:.0f}s backoff", failures=failures)


def _generation_of(run_key: Optional[str], prefix: str) -> int:
    match = re.fullmatch(rf"{re.escape(prefix)}(\d+)", run_key or "")
    return int(match.group(1)) if match else 0


def next_generation(cursor: Optional[str], run_keys: Iterable[Optional[str]], prefix: str = RUN_KEY_PREFIX) -> int:
    """The next run key number: above the cursor's counter and above every <prefix>N key already used
    (Dagster skips a RunRequest whose run_key an existing run has, e.g. after the cursor was cleared)."""
    try:
        generation = int(json.loads(cursor).get("generation", 0)) if cursor else 0
    except (ValueError, TypeError, AttributeError):
        generation = 0
    return max([generation, *(_generation_of(key, prefix) for key in run_keys)]) + 1


def stream_run_config() -> dict:
    """Run config of a stream launch: the source from STREAM_SOURCE (decisions, the default: the Delta lane
    behind the decision service; kafka: the transactions topic; files: the landing folder)."""
    source = os.getenv("STREAM_SOURCE", "decisions")
    if source not in SOURCES:
        raise ValueError(f"STREAM_SOURCE={source!r}: use one of {', '.join(SOURCES)}")
    return {"ops": {"run_transaction_stream": {"config": {"source": source}}}}


def _finished_run(record) -> FinishedRun:
    end_time = record.end_time if record.end_time is not None else record.update_timestamp.timestamp()
    run = record.dagster_run
    return FinishedRun(run.run_id, run.status, end_time, run.tags.get(RUN_KEY_TAG))


@dataclass(frozen=True)
class Lane:
    """A supervised job: its sensor's name, run keys, backoff variables and launch config."""

    sensor_name: str
    job: JobDefinition
    run_key_prefix: str
    env_prefix: str  # <env_prefix>_RESTART_BACKOFF_SECONDS / _MAX_SECONDS
    run_config: Callable[[], dict]
    description: str


def supervisor_sensor(lane: Lane) -> SensorDefinition:
    """The sensor that keeps one run of the lane's job alive (the same `decide` for every lane)."""
    job_name = lane.job.name

    @sensor(name=lane.sensor_name, job=lane.job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED, description=lane.description)
    def _supervisor(context: SensorEvaluationContext):
        instance = context.instance
        in_flight = instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES), limit=5)
        history = []
        if not in_flight:
            records = instance.get_run_records(RunsFilter(job_name=job_name, statuses=FINISHED_STATUSES), limit=HISTORY_LIMIT)
            history = [_finished_run(record) for record in records]
        backoff = Backoff.from_env(lane.env_prefix)
        decision = decide([run.run_id for run in in_flight], history, time.time(), backoff, context.last_sensor_start_time, job_name)
        if not decision.launch:
            return SkipReason(decision.reason)

        generation = next_generation(context.cursor, [context.last_run_key, *(run.run_key for run in history)], lane.run_key_prefix)
        run_key = f"{lane.run_key_prefix}{generation}"
        context.log.info(f"{decision.reason} (run key {run_key})")
        return SensorResult(
            run_requests=[
                RunRequest(run_key=run_key, run_config=lane.run_config(), tags={"trigger": lane.sensor_name, "restart_attempt": str(decision.failures)})
            ],
            cursor=json.dumps({"generation": generation}),
        )

    return _supervisor


def _backoff_text(prefix: str, note: str = "") -> str:
    return (f"relaunches a failed run with exponential backoff ({prefix}_RESTART_BACKOFF_SECONDS x 2^(failures-1), capped at "
            f"{prefix}_RESTART_BACKOFF_MAX_SECONDS{note})")


stream_supervisor_sensor = supervisor_sensor(Lane(
    sensor_name="stream_supervisor_sensor", job=transaction_stream_job, run_key_prefix=RUN_KEY_PREFIX, env_prefix="STREAM",
    run_config=stream_run_config,
    description=(
        f"Keeps one {STREAM_JOB} run alive: launches it when none is in flight, {_backoff_text('STREAM')} "
        "and leaves it stopped after Terminate until the job is launched again or this sensor is stopped and started. "
        "STREAM_SOURCE selects decisions (default: the Delta lane, writing the decision service's records to the lake), "
        "kafka (scoring the transactions topic itself) or files (the landing folder)."
    ),
))

decision_service_supervisor_sensor = supervisor_sensor(Lane(
    sensor_name="decision_service_supervisor_sensor", job=decision_service_job, run_key_prefix=DECISIONS_RUN_KEY_PREFIX,
    env_prefix="DECISION_SERVICE", run_config=dict,
    description=(
        f"Keeps one {DECISION_SERVICE_JOB} run (the real-time decision service) alive: launches it when none is in flight, "
        f"{_backoff_text('DECISION_SERVICE', '; unset, the STREAM_RESTART_BACKOFF_* values apply')} and leaves it "
        "stopped after Terminate until the job is launched again or this sensor is stopped and started."
    ),
))
