"""Alerting: one webhook message (Slack or Microsoft Teams) for every failed asset check and every failed run,
sent once, retried with exponential backoff while the receiver is down, and recorded in the
`alert_notifications` Delta table.

How the event log is read: the cursor holds the storage id of the last run-status change processed (RUN_SUCCESS,
RUN_FAILURE, RUN_CANCELED, read with `instance.fetch_run_status_changes`, which works on every event-log storage).
For every run finished after it, the run's ASSET_CHECK_EVALUATION records are read (`instance.get_records_for_run`);
runs still in flight are read too, with a per-run cursor, so a failed check is reported within a tick rather than
when its (possibly long) run ends. Reading ASSET_CHECK_EVALUATION records across runs "after a storage id"
(`event_log_storage.get_event_records(EventRecordsFilter(..., after_cursor=N))`) is not an option: on the default
SQLite storage (run-sharded, what dagster.yaml uses) it raises for a plain storage-id cursor, and storage ids are
per run there. Check results reported outside any run (`report_runless_asset_event`) are not read; nothing in
this project reports any.

The decisions are pure functions (what a check evaluation or a run failure becomes, what happens after a
delivery attempt, the cursor's JSON); the sensor reads the event log, posts and writes the table.
"""

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

from dagster import (
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from catalog import ALERT_NOTIFICATIONS
from compliance_assets.operations.alert_notifications import SCHEMA
from compliance_assets.operations.outbox import DELIVERED, GAVE_UP, RETRY_SCHEDULED, JsonCursor, RetryPolicy, TickBudget, when  # noqa: F401 (the statuses it records)
from compliance_assets.operations.outbox import Outcome as DeliveryOutcome
from resources.lake import LakeResource
from resources.masking import mask_error
from resources.notifier import CHECK_KIND, RUN_KIND, WEBHOOK_ENV, Alert, NotifierResource, alert_payload, alert_text

LOGGED_NO_WEBHOOK = "LOGGED_NO_WEBHOOK"
NO_WEBHOOK_MESSAGE = f"no webhook configured ({WEBHOOK_ENV} unset): logging alerts only"

MAX_RECORDS_PER_TICK = 500  # event records read per tick (run-status changes + check evaluations)
MAX_PENDING = 500  # undelivered alerts kept in the cursor; above it no new events are read (they wait in the event log)
SUMMARY_CHARS = 300

FINISHED_EVENT_TYPES = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED)
IN_FLIGHT_STATUSES = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

# What a Dagster event becomes.

def _clip(text: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize_metadata(metadata: Mapping) -> str:
    """`key=value; …` of a check's metadata (first few entries, long values cut)."""
    parts = []
    for key, value in list(metadata.items())[:6]:
        raw = getattr(value, "value", value)
        parts.append(f"{key}={_clip(str(raw), 60)}")
    return "; ".join(parts)


def run_partition(tags: Mapping[str, str]) -> Optional[str]:
    """The partition (or `start...end` range) a run was launched for, from its tags."""
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        start, end = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
        return start if start == end else f"{start}...{end}"
    return None


def alert_from_check(record, run_tags: Mapping[str, str] | None = None) -> Optional[Alert]:
    """The alert of one ASSET_CHECK_EVALUATION record (an `EventLogRecord`), None when the check passed."""
    entry = record.event_log_entry
    evaluation = entry.dagster_event.asset_check_evaluation_data
    if evaluation.passed:
        return None
    summary = "; ".join(p for p in (evaluation.description, summarize_metadata(evaluation.metadata or {})) if p)
    return Alert(
        notification_id=f"check:{entry.run_id}:{record.storage_id}",
        kind=CHECK_KIND,
        run_id=entry.run_id,
        job=entry.job_name,
        occurred_at=entry.timestamp,
        asset=evaluation.asset_key.to_user_string(),
        partition=evaluation.partition or run_partition(run_tags or {}),
        check=evaluation.check_name,
        severity=evaluation.severity.value,
        summary=_clip(summary) if summary else None,
    )


def _root_cause(error) -> str:
    """The innermost error of a SerializableErrorInfo chain (the user's exception, not Dagster's wrapper), masked
    (`mask_error`): the class name stays, content the error quotes does not."""
    while error.cause is not None:
        error = error.cause
    message = mask_error(error.message.strip())
    return message if message.startswith(f"{error.cls_name}:") or not error.cls_name else f"{error.cls_name}: {message}"


def run_failure_error(entry) -> Optional[str]:
    """The first step's error of a RUN_FAILURE entry, else the run's own error, else its message."""
    data = entry.dagster_event.event_specific_data if entry.dagster_event else None
    step_event = getattr(data, "first_step_failure_event", None)
    step_error = getattr(getattr(step_event, "event_specific_data", None), "error", None) if step_event else None
    if step_error is not None:
        return _clip(f"step {step_event.step_key}: {_root_cause(step_error)}")
    error = getattr(data, "error", None)
    if error is not None:
        return _clip(_root_cause(error))
    message = entry.dagster_event.message if entry.dagster_event else entry.user_message
    return _clip(mask_error(message)) if message else None


def alert_from_run_failure(record, run: Optional[DagsterRun], assets: Sequence[str] = ()) -> Alert:
    """The alert of one RUN_FAILURE record (`EventLogRecord`), with the run's partition (from its tags) and the
    assets it failed to materialise (else planned to) when known."""
    entry = record.event_log_entry
    assets = sorted(set(assets))
    return Alert(
        notification_id=f"run:{entry.run_id}",
        kind=RUN_KIND,
        run_id=entry.run_id,
        job=entry.job_name or (run.job_name if run else None),
        occurred_at=entry.timestamp,
        asset=_clip(", ".join(assets), 200) if assets else None,
        partition=run_partition(run.tags) if run else None,
        severity="ERROR",
        summary=run_failure_error(entry),
    )


# The cursor: where reading stopped, undelivered alerts, whether the no-webhook notice was given.

@dataclass(frozen=True)
class Pending:
    """An alert not delivered yet: `attempts` made so far, the next one not before `next_at` (unix seconds)."""

    alert: Alert
    attempts: int
    next_at: float


@dataclass
class AlertCursor(JsonCursor):
    since: float  # events older than this are never alerted (first tick: now − the outbox's lookback)
    after: Optional[int] = None  # storage id of the last run-status change fully processed
    runs: dict[str, str] = field(default_factory=dict)  # run id -> event cursor of the check evaluations read so far
    pending: list[Pending] = field(default_factory=list)
    no_webhook_noticed: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> "AlertCursor":
        return cls(
            since=float(data["since"]),
            after=None if data.get("after") is None else int(data["after"]),
            runs={str(k): str(v) for k, v in (data.get("runs") or {}).items()},
            pending=[Pending(Alert(**p["alert"]), int(p["attempts"]), float(p["next_at"])) for p in data.get("pending") or []],
            no_webhook_noticed=bool(data.get("no_webhook_noticed", False)),
        )

    def to_dict(self) -> dict:
        return {
            "since": self.since,
            "after": self.after,
            "runs": self.runs,
            "pending": [{"alert": asdict(p.alert), "attempts": p.attempts, "next_at": p.next_at} for p in self.pending],
            "no_webhook_noticed": self.no_webhook_noticed,
        }


# What happens after a delivery attempt.

def after_attempt(item: Pending, delivered: bool, now: float, policy: RetryPolicy) -> tuple[str, Optional[Pending]]:
    """The status of attempt number `item.attempts + 1` and what stays pending: nothing once delivered or given
    up; otherwise the next attempt after the policy's backoff."""
    attempt = item.attempts + 1
    status, next_at = policy.after(attempt, delivered, now)
    return status, None if next_at is None else Pending(item.alert, attempt, next_at)


def notification_row(alert: Alert, status: str, attempt: int, now: float, http_status: Optional[int] = None, error: Optional[str] = None) -> dict:
    recorded_at = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    return {
        "notification_id": alert.notification_id,
        "kind": alert.kind,
        "asset": alert.asset,
        "partition": alert.partition,
        "check_name": alert.check,
        "severity": alert.severity,
        "run_id": alert.run_id,
        "job": alert.job,
        "summary": alert.summary,
        "status": status,
        "attempt": attempt,
        "http_status": http_status,
        "error": error,
        "occurred_at": dt.datetime.fromtimestamp(alert.occurred_at, dt.timezone.utc),
        "recorded_at": recorded_at,
        "event_date": recorded_at.date(),
    }


@dataclass
class Outcome(DeliveryOutcome):
    """The outbox's outcome of a tick, plus what stays pending and whether the no-webhook notice has been given."""

    no_webhook_noticed: bool = False
    pending: list[Pending] = field(default_factory=list)


def deliver(
    new_alerts: Sequence[Alert],
    cursor: AlertCursor,
    now: float,
    notifier: NotifierResource,
    post: Optional[Callable[[dict], tuple[bool, Optional[int], Optional[str]]]] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Post the new alerts and the pending ones that are due (`post` defaults to `notifier.post`).

    Without a webhook every alert is logged (warning) and recorded LOGGED_NO_WEBHOOK, and the notice that alerts
    are only logged is given once. With one, a tick stops posting at the first failure (the receiver is down: the
    rest wait, no attempt counted) or when the outbox's per-tick budget is spent.
    """
    post = post or notifier.post
    if not notifier.configured:
        outcome = Outcome(no_webhook_noticed=True)
        if not cursor.no_webhook_noticed:
            outcome.logs.append(("warning", NO_WEBHOOK_MESSAGE))
        for alert in [p.alert for p in cursor.pending] + list(new_alerts):
            outcome.logs.append(("warning", f"[alert {alert.notification_id}] {alert_text(alert, notifier.dagster_base_url)}"))
            outcome.add(notification_row(alert, LOGGED_NO_WEBHOOK, 0, now))
        return outcome

    outcome = Outcome(no_webhook_noticed=False)
    policy = RetryPolicy.of(notifier)
    due = sorted((p for p in cursor.pending if p.next_at <= now), key=lambda p: (p.next_at, p.alert.occurred_at))
    outcome.pending = [p for p in cursor.pending if p.next_at > now]
    queue = due + [Pending(alert, 0, now) for alert in new_alerts]
    budget, receiver_down = TickBudget(clock=clock), False
    for item in queue:
        if receiver_down or budget.exhausted():
            outcome.pending.append(item)
            continue
        budget.spend()
        delivered, http_status, error = post(alert_payload(item.alert, notifier.dagster_base_url))
        status, retry = after_attempt(item, delivered, now, policy)
        outcome.add(notification_row(item.alert, status, item.attempts + 1, now, http_status, error))
        if retry is not None:
            outcome.pending.append(retry)
            outcome.logs.append((
                "warning",
                f"alert {item.alert.notification_id} not delivered to {notifier.target} (attempt {retry.attempts}/{policy.max_attempts}): "
                f"{error}; next attempt at {when(retry.next_at)}",
            ))
        elif status == GAVE_UP:
            outcome.logs.append((
                "error",
                f"alert {item.alert.notification_id} GAVE UP after {policy.max_attempts} attempts to {notifier.target} ({error}): "
                f"{alert_text(item.alert)}",
            ))
        else:
            outcome.logs.append(("info", f"alert {item.alert.notification_id} delivered to {notifier.target} (attempt {item.attempts + 1})"))
        receiver_down = not delivered
    return outcome


# Reading the event log.

def _check_alerts_of_run(instance, run_id: str, run_cursor: Optional[str], limit: int, since: float, tags: Callable[[str], Mapping[str, str]]):
    """Failed check evaluations of a run after `run_cursor`: (alerts, new cursor, records read, complete)."""
    connection = instance.get_records_for_run(run_id, cursor=run_cursor, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=limit)
    alerts = []
    for record in connection.records:
        if record.event_log_entry.timestamp < since:
            continue
        alert = alert_from_check(record)
        if alert is not None and alert.partition is None:
            alert = alert_from_check(record, tags(run_id))
        if alert is not None:
            alerts.append(alert)
    return alerts, connection.cursor, len(connection.records), not connection.has_more


def _assets_of_failed_run(instance, run_id: str) -> list[str]:
    """The assets a failed run could not materialise (ASSET_FAILED_TO_MATERIALIZE), else those it planned."""
    types = {DagsterEventType.ASSET_FAILED_TO_MATERIALIZE, DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
    keys: dict[DagsterEventType, set[str]] = {t: set() for t in types}
    for record in instance.get_records_for_run(run_id, of_type=types, limit=200).records:
        event = record.event_log_entry.dagster_event
        if event.asset_key is not None:
            keys[event.event_type].add(event.asset_key.to_user_string())
    return sorted(keys[DagsterEventType.ASSET_FAILED_TO_MATERIALIZE] or keys[DagsterEventType.ASSET_MATERIALIZATION_PLANNED])


def read_new_alerts(instance, cursor: AlertCursor, budget: int = MAX_RECORDS_PER_TICK) -> tuple[list[Alert], AlertCursor]:
    """New failed checks and failed runs since `cursor`, reading at most `budget` event records; returns them
    with the cursor advanced past what was read (a run cut short by the budget is resumed next tick)."""
    runs_by_id: dict[str, Optional[DagsterRun]] = {}

    def run_of(run_id: str) -> Optional[DagsterRun]:
        if run_id not in runs_by_id:
            runs_by_id[run_id] = instance.get_run_by_id(run_id)
        return runs_by_id[run_id]

    def tags_of(run_id: str) -> Mapping[str, str]:
        run = run_of(run_id)
        return run.tags if run else {}

    alerts: list[Alert] = []
    run_cursors = dict(cursor.runs)
    after = cursor.after
    remaining = budget

    # 1. Runs that finished, oldest first: their check evaluations (from where a previous tick stopped), then the failure.
    changes = []
    for event_type in FINISHED_EVENT_TYPES:
        records_filter = (
            RunStatusChangeRecordsFilter(event_type, after_storage_id=after)
            if after is not None
            else RunStatusChangeRecordsFilter(event_type, after_timestamp=cursor.since)
        )
        changes.extend(instance.fetch_run_status_changes(records_filter, limit=budget, ascending=True).records)
    changes.sort(key=lambda record: record.storage_id)
    for change in changes:
        if remaining <= 1:
            break
        remaining -= 1
        run_id = change.event_log_entry.run_id
        found, run_cursor, read, complete = _check_alerts_of_run(instance, run_id, run_cursors.get(run_id), remaining, cursor.since, tags_of)
        alerts.extend(found)
        remaining -= read
        if not complete:
            run_cursors[run_id] = run_cursor  # resumed next tick; `after` stays before this run's status change
            break
        run_cursors.pop(run_id, None)
        if change.event_log_entry.dagster_event_type == DagsterEventType.RUN_FAILURE and change.event_log_entry.timestamp >= cursor.since:
            alerts.append(alert_from_run_failure(change, run_of(run_id), _assets_of_failed_run(instance, run_id)))
        after = change.storage_id

    # 2. Runs in flight: check evaluations so far (a long backfill's failed checks are reported before it ends).
    in_flight = instance.get_runs(RunsFilter(statuses=IN_FLIGHT_STATUSES), limit=50) if remaining > 0 else []
    for run in in_flight:
        if remaining <= 0:
            break
        runs_by_id[run.run_id] = run
        found, run_cursor, read, _ = _check_alerts_of_run(instance, run.run_id, run_cursors.get(run.run_id), remaining, cursor.since, tags_of)
        alerts.extend(found)
        remaining -= read
        run_cursors[run.run_id] = run_cursor

    # A run read while in flight and since deleted never sends its status change: forget it.
    listed = {run.run_id for run in in_flight}
    for run_id in [r for r in run_cursors if r not in listed]:
        if run_of(run_id) is None:
            run_cursors.pop(run_id)

    return alerts, AlertCursor(cursor.since, after, run_cursors, list(cursor.pending), cursor.no_webhook_noticed)


@sensor(
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Sends one webhook message (Slack or Teams, ALERT_WEBHOOK_URL) per failed asset check and per failed run, "
        "retries undelivered ones with exponential backoff and records every attempt in alert_notifications. "
        "Without ALERT_WEBHOOK_URL it logs the alerts instead."
    ),
)
def alerting_sensor(context: SensorEvaluationContext, notifier: NotifierResource, lake: LakeResource):
    now = time.time()
    cursor = AlertCursor.parse(context.cursor, now)
    if len(cursor.pending) < MAX_PENDING:
        new_alerts, cursor = read_new_alerts(context.instance, cursor)
    else:
        new_alerts = []
        context.log.warning(f"{len(cursor.pending)} alerts are waiting for {notifier.target}: not reading new events until they drain")

    outcome = deliver(new_alerts, cursor, now, notifier)
    for level, message in outcome.logs:
        getattr(context.log, level)(message)
    if outcome.rows:
        try:
            lake.append_rows(ALERT_NOTIFICATIONS, outcome.rows, SCHEMA)
        except Exception as exc:  # never re-send an alert because its record could not be written
            context.log.error(f"could not append {len(outcome.rows)} row(s) to {ALERT_NOTIFICATIONS}: {type(exc).__name__}: {_clip(str(exc))}")

    cursor.pending, cursor.no_webhook_noticed = outcome.pending, outcome.no_webhook_noticed
    counts = outcome.counted()
    message = f"{len(new_alerts)} new alert(s)" + (f"; {counts}" if counts else "") + f"; {len(cursor.pending)} pending"
    return SensorResult(skip_reason=message, cursor=cursor.to_json())
