"""Keep exactly one transaction_stream run alive: launch it, relaunch it after a failure with exponential
backoff, and leave it stopped after an operator pressed Terminate.

The decision is the pure function `decide` (run history in, launch or skip out); the sensor only reads
the run history from the instance and turns the decision into a RunRequest or a SkipReason.
"""

import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from compliance_assets.streaming.job import STREAM_JOB, transaction_stream_job

# A run in any of these states holds (or is about to hold) the stream: never launch a second one.
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
RUN_KEY_TAG = "dagster/run_key"  # the tag Dagster puts on runs launched from a sensor RunRequest
SOURCES = ("kafka", "files")


@dataclass(frozen=True)
class FinishedRun:
    """What the decision needs to know about one finished run of the stream job."""

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
    def from_env(cls) -> "Backoff":
        return cls(
            base_seconds=float(os.getenv("STREAM_RESTART_BACKOFF_SECONDS", "30")),
            max_seconds=float(os.getenv("STREAM_RESTART_BACKOFF_MAX_SECONDS", "600")),
        )

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
) -> Decision:
    """Whether to launch the stream now. `in_flight`: ids of unfinished runs; `history`: finished runs,
    newest first; `sensor_started_at`: when the sensor was last turned on (a restart after a Terminate
    resumes supervision)."""
    if in_flight:
        return Decision(False, f"{STREAM_JOB} run {in_flight[0]} is in flight; not launching a second one")
    if not history:
        return Decision(True, f"no {STREAM_JOB} run yet: launching the stream")
    latest = history[0]
    if latest.status == DagsterRunStatus.SUCCESS:
        return Decision(True, f"run {latest.run_id} finished at {_when(latest.end_time)}: launching the next one")
    if latest.status == DagsterRunStatus.CANCELED:
        if sensor_started_at is not None and latest.end_time is not None and sensor_started_at > latest.end_time:
            return Decision(True, f"run {latest.run_id} was stopped at {_when(latest.end_time)} and the sensor was turned on again since: resuming")
        return Decision(
            False,
            f"run {latest.run_id} was stopped from the UI at {_when(latest.end_time)}; launch {STREAM_JOB} from the "
            "Launchpad (or stop and start this sensor) to resume",
        )
    failures = consecutive_failures(history)
    delay = backoff.delay(failures)
    relaunch_at = (latest.end_time or 0.0) + delay
    if now < relaunch_at:
        return Decision(
            False,
            f"run {latest.run_id} failed at {_when(latest.end_time)} ({failures} consecutive failure(s)); "
            f"relaunching at {_when(relaunch_at)} (backoff {delay:.0f}s)",
            failures=failures,
            relaunch_at=relaunch_at,
        )
    return Decision(True, f"run {latest.run_id} failed ({failures} consecutive failure(s)); relaunching after {delay:.0f}s backoff", failures=failures)


def _generation_of(run_key: Optional[str]) -> int:
    match = re.fullmatch(rf"{RUN_KEY_PREFIX}(\d+)", run_key or "")
    return int(match.group(1)) if match else 0


def next_generation(cursor: Optional[str], run_keys: Iterable[Optional[str]]) -> int:
    """The next run key number: above the cursor's counter and above every stream-N key already used
    (Dagster skips a RunRequest whose run_key an existing run has, e.g. after the cursor was cleared)."""
    try:
        generation = int(json.loads(cursor).get("generation", 0)) if cursor else 0
    except (ValueError, TypeError, AttributeError):
        generation = 0
    return max([generation, *(_generation_of(key) for key in run_keys)]) + 1


def stream_run_config() -> dict:
    """Run config of a launch: the source from STREAM_SOURCE (kafka, the default, or files = landing folder)."""
    source = os.getenv("STREAM_SOURCE", "kafka")
    if source not in SOURCES:
        raise ValueError(f"STREAM_SOURCE={source!r}: use one of {', '.join(SOURCES)}")
    return {"ops": {"run_transaction_stream": {"config": {"source": source}}}}


def _finished_run(record) -> FinishedRun:
    end_time = record.end_time if record.end_time is not None else record.update_timestamp.timestamp()
    run = record.dagster_run
    return FinishedRun(run.run_id, run.status, end_time, run.tags.get(RUN_KEY_TAG))


@sensor(
    job=transaction_stream_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Keeps one transaction_stream run alive: launches it when none is in flight, relaunches a failed run with "
        "exponential backoff (STREAM_RESTART_BACKOFF_SECONDS x 2^(failures-1), capped at STREAM_RESTART_BACKOFF_MAX_SECONDS) "
        "and leaves it stopped after Terminate until the job is launched again or this sensor is stopped and started. "
        "STREAM_SOURCE selects kafka (default) or files."
    ),
)
def stream_supervisor_sensor(context: SensorEvaluationContext):
    instance = context.instance
    in_flight = instance.get_runs(RunsFilter(job_name=STREAM_JOB, statuses=IN_FLIGHT_STATUSES), limit=5)
    history = []
    if not in_flight:
        records = instance.get_run_records(RunsFilter(job_name=STREAM_JOB, statuses=FINISHED_STATUSES), limit=HISTORY_LIMIT)
        history = [_finished_run(record) for record in records]
    decision = decide([run.run_id for run in in_flight], history, time.time(), Backoff.from_env(), context.last_sensor_start_time)
    if not decision.launch:
        return SkipReason(decision.reason)

    generation = next_generation(context.cursor, [context.last_run_key, *(run.run_key for run in history)])
    context.log.info(f"{decision.reason} (run key {RUN_KEY_PREFIX}{generation})")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"{RUN_KEY_PREFIX}{generation}",
                run_config=stream_run_config(),
                tags={"trigger": "stream_supervisor_sensor", "restart_attempt": str(decision.failures)},
            )
        ],
        cursor=json.dumps({"generation": generation}),
    )
