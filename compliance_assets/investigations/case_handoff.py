"""Case-management hand-off: every new HIGH alert in `anomaly_alerts` is posted once, as a JSON case, to the
case-management system (CASE_MANAGEMENT_URL), retried with exponential backoff while it does not answer, and
every attempt is recorded in the `case_handoffs` Delta table.

Alerts are written by the daily batch asset (replaceWhere of a delivery day) and by the streaming job (appends
per micro-batch), so a sensor reads the table itself, with delta-rs (no JVM in the sensor process):
- New alerts, incrementally by Delta version: the cursor keeps the last version read; the event_date partitions
  touched since are those of the data files present now and absent at that version (the Delta log's add
  actions). This is exact for both writers (an append adds files to one partition, a replaceWhere rewrites the
  files of the partitions it touched) and needs no change-data feed. Only HIGH rows of those partitions are
  read. If the old version can no longer be loaded (log cleaned up, table re-created) every partition is read.
- Never flooding with history: alerts raised (scored) before the sensor's horizon are never handed off; the
  horizon is set when the cursor is created (now − 24 h), so switching the sensor on, or clearing its cursor,
  sends at most the last day's alerts.
- Exactly once: an alert with a final record in case_handoffs (DELIVERED, or REJECTED / GAVE_UP: sending it
  again would not help or needs a person) is never posted again, whatever the cursor says: the table survives a
  cursor reset and a re-materialised partition (same alert ids, new files). The receiver gets the header
  `Idempotency-Key: <alert_id>` for the one gap left (a tick killed after posting, before its record was written).
- Bounded: at most MAX_POSTS_PER_TICK posts and POST_BUDGET_SECONDS per tick; partitions with alerts not yet
  attempted stay in the cursor (`backlog`) for the next tick; after a failed attempt (no answer, 5xx, 408,
  429) no case is posted until its backoff has passed (the receiver is down: one probe per backoff, not one per
  alert). A case refused with another 4xx is REJECTED and not retried.

The decisions are pure functions (cursor JSON, what an attempt's result becomes, the case body, the record);
the sensor reads the tables, posts and appends the records.
"""

import datetime as dt
import decimal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from catalog import ALERTS, CASE_HANDOFFS
from compliance_assets.investigations.case_handoffs import SCHEMA
from compliance_assets.operations.outbox import DELIVERED, GAVE_UP, REJECTED, RETRY_SCHEDULED, JsonCursor, RetryPolicy, TickBudget, when
from compliance_assets.operations.outbox import Outcome as DeliveryOutcome
from resources.case_management import DELIVERED as POSTED
from resources.case_management import REJECTED as REFUSED
from resources.case_management import URL_ENV, CaseManagementResource, PostResult
from resources.lake import LakeResource, open_delta

WITHDRAWN = "WITHDRAWN"  # a retry whose alert is no longer HIGH: not sent
FINAL_STATUSES = (DELIVERED, REJECTED, GAVE_UP)  # never posted again
HIGH = "HIGH"
SOURCE, SCHEMA_VERSION = "compliance-platform", "1"
NO_ENDPOINT_MESSAGE = f"no case-management endpoint configured ({URL_ENV} unset): no alert is handed off"

MAX_POSTS_PER_TICK = 50  # cases posted per tick (the outbox's time budget applies too)
MAX_PENDING_RETRIES = 500  # cases waiting for a retry; above it no new case is posted until they drain
MAX_UNWRITTEN = 2000  # records kept in the cursor while case_handoffs cannot be written

CASE_FIELDS = (
    "alert_id", "transaction_id", "event_time", "account_id", "merchant_id", "amount_base", "risk_score", "risk_band",
    "reasons", "primary_reason", "top_features", "model_name", "model_version", "raised_at", "ingest_date",
)

# The case body.

def _json_value(value):
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # money stays exact: "1515.39"
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def case_payload(alert: dict) -> dict:
    """The JSON case of one anomaly_alerts row: the alert's facts, the Dagster run that raised it, the source and
    the schema version. Timestamps are ISO 8601 UTC, `amount_base` a decimal string (EUR, exact)."""
    case = {name: _json_value(alert.get(name)) for name in CASE_FIELDS}
    case["event_date"] = _json_value(alert.get("event_date"))
    case["dagster_run_id"] = alert.get("pipeline_run_id")
    case["source"] = SOURCE
    case["schema_version"] = SCHEMA_VERSION
    return case


# The cursor.

@dataclass(frozen=True)
class Retry:
    """A case not delivered yet: `attempts` made so far, the next one not before `next_at` (unix seconds)."""

    alert_id: str
    event_date: str  # the alert's partition, to read its row again
    attempts: int
    next_at: float


@dataclass
class HandoffCursor(JsonCursor):
    since: float  # alerts raised before this are never handed off (new cursor: now − the outbox's lookback)
    version: Optional[int] = None  # anomaly_alerts version read up to; None: nothing read yet (every partition)
    backlog: list[str] = field(default_factory=list)  # partitions holding alerts not attempted yet
    retries: list[Retry] = field(default_factory=list)
    hold_until: float = 0.0  # after a failed attempt: no case posted before this
    unwritten: list[dict] = field(default_factory=list)  # records not yet in case_handoffs (JSON form)

    @classmethod
    def from_dict(cls, data: dict) -> "HandoffCursor":
        return cls(
            since=float(data["since"]),
            version=None if data.get("version") is None else int(data["version"]),
            backlog=[str(d) for d in data.get("backlog") or []],
            retries=[Retry(str(r["alert_id"]), str(r["event_date"]), int(r["attempts"]), float(r["next_at"])) for r in data.get("retries") or []],
            hold_until=float(data.get("hold_until") or 0.0),
            unwritten=list(data.get("unwritten") or []),
        )

    def to_dict(self) -> dict:
        return {
            "since": self.since,
            "version": self.version,
            "backlog": sorted(set(self.backlog)),
            "retries": [asdict(r) for r in self.retries],
            "hold_until": self.hold_until,
            "unwritten": self.unwritten,
        }


# What an attempt's result becomes.

def after_post(alert_id: str, event_date: str, attempts_before: int, result: PostResult, attempted_at: float, policy: RetryPolicy) -> tuple[str, Optional[Retry]]:
    """The status of attempt number `attempts_before + 1` and the retry it leaves, if any: DELIVERED; REJECTED (a
    4xx other than 408/429: not retried); GAVE_UP at the last attempt; else RETRY_SCHEDULED after the policy's
    backoff, or longer if the receiver asked so (Retry-After, within the cap)."""
    attempt = attempts_before + 1
    status, next_at = policy.after(attempt, result.outcome == POSTED, attempted_at, refused=result.outcome == REFUSED, retry_after=result.retry_after)
    return status, None if next_at is None else Retry(alert_id, event_date, attempt, next_at)


def resumed_retry(alert_id: str, event_date: str, records: Sequence[dict], policy: RetryPolicy) -> Optional[Retry]:
    """An alert's earlier attempts (case_handoffs rows) when the cursor no longer knows them: None if a final
    status is recorded (never post again) or nothing was attempted; else the retry they leave, so a cleared
    cursor neither restarts the attempt count nor skips the backoff."""
    if not records or any(r["status"] in FINAL_STATUSES for r in records):
        return None
    attempts = max(int(r["attempt"]) for r in records)
    if attempts <= 0:
        return None
    last = max(r["attempted_at"] for r in records)
    last = last.timestamp() if isinstance(last, dt.datetime) else float(last)
    return Retry(alert_id, event_date, attempts, last + policy.delay(attempts))


def handoff_row(alert_id: str, status: str, attempt: int, attempted_at: float, endpoint: str, alert: Optional[dict] = None,
                event_date: Optional[str] = None, result: Optional[PostResult] = None, error: Optional[str] = None) -> dict:
    at = dt.datetime.fromtimestamp(attempted_at, dt.timezone.utc)
    alert_day = (alert or {}).get("event_date") or (dt.date.fromisoformat(event_date) if event_date else None)
    return {
        "alert_id": alert_id,
        "transaction_id": (alert or {}).get("transaction_id"),
        "alert_event_date": alert_day,
        "attempt": attempt,
        "status": status,
        "http_status": result.http_status if result else None,
        "error": error if error is not None else (result.error if result else None),
        "case_id": result.case_id if result else None,
        "endpoint": endpoint,
        "attempted_at": at,
        "event_date": at.date(),
    }


def row_to_json(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in row.items()}


def row_from_json(row: dict) -> dict:
    out = dict(row)
    out["attempted_at"] = dt.datetime.fromisoformat(row["attempted_at"])
    for key in ("event_date", "alert_event_date"):
        out[key] = dt.date.fromisoformat(row[key]) if row.get(key) else None
    return out


# Reading the tables (delta-rs).

def _open(path: str, version: Optional[int] = None):
    return open_delta(path, version)


def touched_partitions(path: str, table, since_version: int) -> Optional[set[str]]:
    """The event_date partitions of the data files added after `since_version` (present now, absent then);
    None when that version cannot be loaded (every partition must be read)."""
    if since_version > table.version():
        return None
    try:
        before = _open(path, since_version)
    except Exception:  # log entries cleaned up, a version the table never had
        return None
    if before is None:
        return None
    old = set(pa.table(before.get_add_actions(flatten=True)).column("path").to_pylist())
    actions = pa.table(table.get_add_actions(flatten=True))
    return {str(d) for p, d in zip(actions.column("path").to_pylist(), actions.column("partition.event_date").to_pylist()) if p not in old}


def _utc(timestamp: float) -> pa.Scalar:
    return pa.scalar(dt.datetime.fromtimestamp(timestamp, dt.timezone.utc), type=pa.timestamp("us", tz="UTC"))


def read_alerts(table, partitions: Optional[Iterable[str]], where, columns: Optional[list[str]] = None) -> pa.Table:
    """Rows of anomaly_alerts in `partitions` (None: all) matching the pyarrow expression `where`."""
    partitions = None if partitions is None else sorted(set(partitions))
    if partitions == []:
        return pa.table({c: [] for c in (columns or ["alert_id"])})
    dataset = table.to_pyarrow_dataset(partitions=[("event_date", "in", partitions)] if partitions is not None else None)
    return dataset.to_table(columns=columns, filter=where)


class UnreadableHandoffs(RuntimeError):
    """case_handoffs exists but cannot be read: the tick fails rather than risk posting a case twice."""


def handoff_records(path: str, alert_ids: Iterable[str]) -> dict[str, list[dict]]:
    """case_handoffs rows (alert_id, status, attempt, attempted_at) of the given alerts, by alert id."""
    ids = sorted(set(alert_ids))
    if not ids:
        return {}
    try:
        table = _open(path)
        if table is None:
            return {}
        rows = table.to_pyarrow_dataset().to_table(columns=["alert_id", "status", "attempt", "attempted_at"], filter=pc.field("alert_id").isin(ids))
    except Exception as exc:  # without the delivery record nothing may be posted: it is what prevents a second post
        raise UnreadableHandoffs(f"cannot read {CASE_HANDOFFS} ({type(exc).__name__}: {str(exc)[:200]}): no case is posted until it can be read") from exc
    records: dict[str, list[dict]] = {}
    for row in rows.to_pylist():
        records.setdefault(row["alert_id"], []).append(row)
    return records


# One tick.

@dataclass
class Outcome(DeliveryOutcome):
    """The outbox's outcome of a tick, plus the new cursor and the HIGH alerts found without any record yet."""

    cursor: Optional[HandoffCursor] = None
    new_alerts: int = 0  # HIGH alerts found without any record yet (this tick's and the backlog's)

    def summary(self) -> str:
        counts = self.counted()
        c = self.cursor
        return (
            f"{self.new_alerts} HIGH alert(s) to hand off" + (f"; {counts}" if counts else "")
            + f"; {len(c.retries)} awaiting retry; {len(c.backlog)} partition(s) in backlog; anomaly_alerts version {c.version}"
        )


def handoff(
    alerts_path: str,
    handoffs_path: str,
    cursor: HandoffCursor,
    now: float,
    case_management: CaseManagementResource,
    post: Optional[Callable[[dict, str], PostResult]] = None,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Find the new HIGH alerts since `cursor`, post them and the retries that are due (`post` defaults to
    `case_management.post`) and return the records and the advanced cursor (the caller writes the records)."""
    post = post or case_management.post
    policy = RetryPolicy.of(case_management)
    endpoint = case_management.target
    out = Outcome(cursor=HandoffCursor(cursor.since, cursor.version, list(cursor.backlog), list(cursor.retries), cursor.hold_until, []))
    table = _open(alerts_path)
    if table is None:
        out.logs.append(("info", f"no {ALERTS} table yet"))
        return out

    # 1. Partitions to look at: touched since the version read last, plus the backlog.
    version = table.version()
    if cursor.version is None:
        partitions: Optional[set[str]] = None
    elif version == cursor.version:
        partitions = set(cursor.backlog)
    else:
        touched = touched_partitions(alerts_path, table, cursor.version)
        if touched is None:
            out.logs.append(("warning", f"{ALERTS} version {cursor.version} can no longer be read: reading every partition (alerts raised since {when(cursor.since)})"))
        partitions = None if touched is None else touched | set(cursor.backlog)

    # 2. New HIGH alerts there: raised since the horizon, not waiting for a retry, with no final record.
    waiting = {r.alert_id for r in cursor.retries}
    unwritten = [row_from_json(r) for r in cursor.unwritten]
    found = read_alerts(table, partitions, (pc.field("risk_band") == HIGH) & (pc.field("raised_at") >= _utc(cursor.since)), ["alert_id", "event_date", "raised_at"])
    found = sorted(
        ((r["raised_at"], r["alert_id"], str(r["event_date"])) for r in found.to_pylist() if r["alert_id"] not in waiting),
        key=lambda t: (t[0], t[1]),
    )
    records = handoff_records(handoffs_path, [a for _, a, _ in found])
    found_ids = {a for _, a, _ in found}
    for row in unwritten:  # records the table does not hold yet count as recorded
        if row["alert_id"] in found_ids:
            records.setdefault(row["alert_id"], []).append(row)
    new: list[tuple[str, str]] = []
    retries = list(cursor.retries)
    for _, alert_id, day in found:
        if alert_id not in records:
            new.append((alert_id, day))
        else:
            resumed = resumed_retry(alert_id, day, records[alert_id], policy)
            if resumed is not None:
                retries.append(resumed)
                waiting.add(alert_id)
                out.logs.append(("info", f"case {alert_id}: resuming after {resumed.attempts} earlier attempt(s) recorded in {CASE_HANDOFFS}"))
    out.new_alerts = len(new)

    # 3. What to post this tick: due retries first, then new alerts; none while the receiver is held off.
    due = sorted((r for r in retries if r.next_at <= now), key=lambda r: (r.next_at, r.alert_id))
    later = [r for r in retries if r.next_at > now]
    queue: list[tuple[str, str, int]] = [(r.alert_id, r.event_date, r.attempts) for r in due]
    if len(retries) < MAX_PENDING_RETRIES:
        queue += [(a, d, 0) for a, d in new]
    elif new:
        out.logs.append(("warning", f"{len(retries)} cases are waiting for a retry to {endpoint}: new alerts wait until they drain"))
    budget = TickBudget(MAX_POSTS_PER_TICK, clock=clock)
    if now < cursor.hold_until:
        posting: list[tuple[str, str, int]] = []
        out.logs.append(("info", f"{endpoint} failed recently: no case posted before {when(cursor.hold_until)}"))
    else:
        posting = queue[: budget.max_posts]
    rows = {}
    if posting:
        wanted = {a for a, _, _ in posting}
        for row in read_alerts(table, {d for _, d, _ in posting}, (pc.field("risk_band") == HIGH) & pc.field("alert_id").isin(sorted(wanted))).to_pylist():
            rows[row["alert_id"]] = row

    next_retries = list(later)
    attempted: set[str] = set()
    hold = 0.0
    for alert_id, day, attempts in posting:
        if hold or budget.exhausted():
            break
        budget.spend()
        attempted.add(alert_id)
        alert = rows.get(alert_id)
        if alert is None:  # a retry whose alert was re-computed away (no longer HIGH, or gone)
            out.add(handoff_row(alert_id, WITHDRAWN, attempts, clock(), endpoint, event_date=day,
                                error=f"no longer a HIGH alert in {ALERTS} partition {day}: not sent"))
            out.logs.append(("warning", f"case {alert_id} withdrawn after {attempts} attempt(s): no longer a HIGH alert in {ALERTS}"))
            continue
        result = post(case_payload(alert), alert_id)
        attempted_at = clock()
        status, retry = after_post(alert_id, day, attempts, result, attempted_at, policy)
        out.add(handoff_row(alert_id, status, attempts + 1, attempted_at, endpoint, alert, day, result))
        if retry is not None:
            next_retries.append(retry)
            hold = retry.next_at
            out.logs.append(("warning", f"case {alert_id} not delivered to {endpoint} (attempt {retry.attempts}/{policy.max_attempts}): {result.error}; next attempt at {when(retry.next_at)}"))
        elif status == GAVE_UP:
            hold = attempted_at + policy.delay(attempts + 1)
            out.logs.append(("error", f"case {alert_id} GAVE UP after {policy.max_attempts} attempts to {endpoint}: {result.error}"))
        elif status == REJECTED:
            out.logs.append(("error", f"case {alert_id} REJECTED by {endpoint}, not retried: {result.error}"))
        else:
            out.logs.append(("info", f"case {alert_id} delivered to {endpoint} (attempt {attempts + 1})" + (f": case {result.case_id}" if result.case_id else "")))

    # 4. The advanced cursor: due retries not attempted stay; partitions with new alerts not attempted stay in the backlog.
    next_retries += [r for r in due if r.alert_id not in attempted]
    out.cursor.retries = sorted(next_retries, key=lambda r: (r.next_at, r.alert_id))
    out.cursor.backlog = sorted({d for a, d in new if a not in attempted})
    out.cursor.version = version
    out.cursor.hold_until = hold or (cursor.hold_until if now < cursor.hold_until else 0.0)
    return out


@sensor(
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Opens a case in the case-management system (CASE_MANAGEMENT_URL) for every new HIGH alert, once per alert, "
        "retries with exponential backoff while the system does not answer and records every attempt in "
        "case_handoffs. Off by default: an operator turns it on once the endpoint is configured; it then sends the "
        "HIGH alerts raised in the last 24 hours and every new one."
    ),
)
def case_handoff_sensor(context: SensorEvaluationContext, case_management: CaseManagementResource, lake: LakeResource):
    """Posts new HIGH alerts to the case-management system. STOPPED by default because turning it on sends cases
    to another system (and needs CASE_MANAGEMENT_URL): an operator switches it on when the endpoint is ready."""
    if not case_management.configured:
        return SensorResult(skip_reason=NO_ENDPOINT_MESSAGE)  # the cursor stays as it is: no rows, nothing read
    now = time.time()
    cursor = HandoffCursor.parse(context.cursor, now)
    handoffs_path = lake.table_path(CASE_HANDOFFS)

    # records a previous tick could not write come first: they are what keeps their alerts from being sent again
    if cursor.unwritten:
        try:
            lake.append_rows(CASE_HANDOFFS, [row_from_json(r) for r in cursor.unwritten], SCHEMA)
            cursor.unwritten = []
        except Exception as exc:
            context.log.error(f"still cannot append {len(cursor.unwritten)} row(s) to {CASE_HANDOFFS}: {type(exc).__name__}: {case_management.redact(str(exc))[:300]}")

    outcome = handoff(lake.table_path(ALERTS), handoffs_path, cursor, now, case_management)
    for level, message in outcome.logs:
        getattr(context.log, level)(message)
    unwritten = list(cursor.unwritten)
    if outcome.rows:
        try:
            if unwritten:
                raise RuntimeError("earlier records are still unwritten")
            lake.append_rows(CASE_HANDOFFS, outcome.rows, SCHEMA)
        except Exception as exc:  # never re-send a case because its record could not be written: keep it in the cursor
            context.log.error(f"could not append {len(outcome.rows)} row(s) to {CASE_HANDOFFS}, kept in the cursor: {type(exc).__name__}: {case_management.redact(str(exc))[:300]}")
            unwritten += [row_to_json(r) for r in outcome.rows]
    if len(unwritten) > MAX_UNWRITTEN:
        context.log.error(f"{len(unwritten) - MAX_UNWRITTEN} unwritten {CASE_HANDOFFS} record(s) dropped from the cursor (oldest first)")
        unwritten = unwritten[-MAX_UNWRITTEN:]
    outcome.cursor.unwritten = unwritten
    return SensorResult(skip_reason=outcome.summary(), cursor=outcome.cursor.to_json())
