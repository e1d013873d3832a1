"""The case hand-off sensor posts each new HIGH alert once to the case-management system, never a non-HIGH one,
retries while the receiver is down (no post before the backoff), never re-sends after a re-written partition or a
cleared cursor, records a 400 as REJECTED without retrying, and never leaks the endpoint's token.

Real parts: an anomaly_alerts Delta table (delta-rs, the column set alert_rows() writes) in tmp_path, a real HTTP
receiver on loopback that records every request, the sensor evaluated through build_sensor_context on a real
(ephemeral) Dagster instance. No Spark."""

import datetime as dt
import decimal
import json
import logging
import shutil
import time

import pyarrow as pa
import pytest
from dagster import DagsterInstance, DefaultSensorStatus, build_sensor_context
from deltalake import DeltaTable, write_deltalake

import compliance_assets.investigations.case_handoff as handoff_module
from resources.case_management import RETRYABLE, CaseManagementResource, PostResult, case_management_from_env, classify
from resources.lake import LakeResource
from compliance_assets.operations.notifications import RetryPolicy
from compliance_assets.investigations.case_handoffs import case_handoffs_spec
from compliance_assets.investigations.case_handoff import DELIVERED, GAVE_UP, NO_ENDPOINT_MESSAGE, REJECTED, RETRY_SCHEDULED, WITHDRAWN, HandoffCursor, Retry, after_post, case_handoff_sensor, case_payload, resumed_retry, touched_partitions
from tests.helpers import free_port
from tests.http_receiver import Receiver as HttpReceiver
from catalog import CASE_HANDOFFS

TOKEN = "CASE-SECRET-987"
DAY, DAY2 = "2026-04-03", "2026-04-04"

# the columns and types of anomaly_alerts as alert_rows() writes them (read from a table the daily asset wrote)
ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()), ("transaction_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
        ("account_id", pa.string()), ("merchant_id", pa.string()), ("amount_base", pa.decimal128(18, 2)),
        ("primary_reason", pa.string()), ("reasons", pa.list_(pa.string())), ("risk_score", pa.float64()),
        ("risk_band", pa.string()),
        ("top_features", pa.list_(pa.struct([("feature", pa.string()), ("value", pa.float64()), ("contribution", pa.float64())]))),
        ("model_name", pa.string()), ("model_version", pa.string()), ("dq_status", pa.string()),
        ("raised_at", pa.timestamp("us", tz="UTC")), ("pipeline_run_id", pa.string()), ("event_date", pa.date32()),
        ("ingest_date", pa.date32()),
    ]
)


def alert(n: int, day: str = DAY, band: str = "HIGH", raised_hours_ago: float = 0.1, run: str = "run-batch-1") -> dict:
    reasons = ["HIGH_RISK_SCORE"] if band == "HIGH" else ["WATCHLIST_MATCH:SANCTIONS_EU"]
    return {
        "alert_id": f"ALR-{day}-{n:04d}",
        "transaction_id": f"TX{day.replace('-', '')}{n:06d}",
        "event_time": dt.datetime.fromisoformat(f"{day}T10:{n % 60:02d}:00+00:00"),
        "account_id": f"ACC{n:08d}",
        "merchant_id": None if n % 5 == 0 else f"MER{n:06d}",
        "amount_base": decimal.Decimal(f"{1000 + n}.25"),
        "primary_reason": reasons[0],
        "reasons": reasons,
        "risk_score": 0.99 if band == "HIGH" else 0.5,
        "risk_band": band,
        "top_features": [{"feature": "amount_to_typical", "value": 7.5, "contribution": 1.25}, {"feature": "night", "value": 1.0, "contribution": -0.5}],
        "model_name": "transaction_risk",
        "model_version": "3",
        "dq_status": "PASS",
        "raised_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=raised_hours_ago),
        "pipeline_run_id": run,
        "event_date": dt.date.fromisoformat(day),
        "ingest_date": dt.date.fromisoformat(day),
    }


def write_alerts(lake_root, rows, rewrite_day: str | None = None):
    """Append (the stream) or replace one event_date partition (a re-materialised day)."""
    table = pa.Table.from_pylist(rows, schema=ALERT_SCHEMA)
    path = f"{lake_root}/tables/anomaly_alerts"
    if rewrite_day:
        write_deltalake(path, table, mode="overwrite", predicate=f"event_date = '{rewrite_day}'", partition_by=["event_date"])
    else:
        write_deltalake(path, table, mode="append", partition_by=["event_date"])


# A real case-management receiver.

def Receiver(port: int = 0, respond=None) -> HttpReceiver:
    """A case-management endpoint on loopback (token in the query string) answering `respond(alert_id, n)` -> status
    (n = how many times this alert id was posted), 200 with a case id by default; a 429 says Retry-After: 0."""
    respond = respond or (lambda alert_id, n: 200)

    def answer(request, seen):
        key = request["headers"].get("Idempotency-Key")
        status = respond(key, sum(1 for r in seen if r["headers"].get("Idempotency-Key") == key))
        body = {"case_id": f"CASE-{key}"} if status < 300 else {"error": f"status {status}"}
        headers = {"Content-Type": "application/json", **({"Retry-After": "0"} if status == 429 else {})}
        return status, headers, json.dumps(body).encode()

    return HttpReceiver(port, answer, path=f"/api/cases?access_token={TOKEN}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


def tick(instance, lake_root, cm: CaseManagementResource, cursor=None, log_handler=None):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"case_management": cm, "lake": LakeResource(root=str(lake_root))})
    if log_handler is not None:
        context.log.addHandler(log_handler)
    result = case_handoff_sensor.evaluate_tick(context)
    return result.cursor, result.skip_message


def handoffs(lake_root):
    return DeltaTable(f"{lake_root}/tables/{CASE_HANDOFFS}").to_pandas().sort_values(["attempted_at", "alert_id"]).reset_index(drop=True)


def wait_until(timestamp: float):
    time.sleep(max(0.0, timestamp - time.time()) + 0.05)


# Through the sensor.

def test_each_new_high_alert_reaches_the_receiver_exactly_once(instance, tmp_path, receiver):
    cm = CaseManagementResource(url=receiver.url(), token=TOKEN)
    batch = [alert(1), alert(2), alert(3), alert(4, band="MEDIUM"), alert(5, raised_hours_ago=72)]  # 5: raised before the horizon
    write_alerts(tmp_path, batch)
    cursor, message = tick(instance, tmp_path, cm)
    assert sorted(receiver.keys()) == [batch[0]["alert_id"], batch[1]["alert_id"], batch[2]["alert_id"]], message
    assert "3 DELIVERED" in message

    for _ in range(3):
        cursor, _ = tick(instance, tmp_path, cm, cursor)
    assert len(receiver.requests) == 3

    # the stream appends a micro-batch: one more HIGH alert (another day) and a non-HIGH one
    write_alerts(tmp_path, [alert(6, DAY2, run="run-stream-7"), alert(7, DAY2, band="MEDIUM")])
    for _ in range(3):
        cursor, _ = tick(instance, tmp_path, cm, cursor)
    keys = receiver.keys()
    assert sorted(keys) == sorted([batch[0]["alert_id"], batch[1]["alert_id"], batch[2]["alert_id"], alert(6, DAY2)["alert_id"]])
    assert len(set(keys)) == len(keys)

    # what the receiver saw for the streamed alert: headers and the whole case
    request = receiver.requests[-1]
    assert request["path"] == f"/api/cases?access_token={TOKEN}"
    assert request["headers"]["Idempotency-Key"] == alert(6, DAY2)["alert_id"]
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    body, expected = request["body"], alert(6, DAY2)
    assert body["source"] == "compliance-platform" and body["schema_version"] == "1"
    assert body["dagster_run_id"] == "run-stream-7"
    assert (body["alert_id"], body["transaction_id"], body["account_id"], body["merchant_id"]) == (
        expected["alert_id"], expected["transaction_id"], expected["account_id"], expected["merchant_id"],
    )
    assert body["amount_base"] == "1006.25" and body["risk_score"] == 0.99 and body["risk_band"] == "HIGH"
    assert body["event_time"] == f"{DAY2}T10:06:00Z" and body["ingest_date"] == DAY2 and body["event_date"] == DAY2
    assert body["reasons"] == ["HIGH_RISK_SCORE"] and body["primary_reason"] == "HIGH_RISK_SCORE"
    assert body["top_features"][0] == {"feature": "amount_to_typical", "value": 7.5, "contribution": 1.25}
    assert (body["model_name"], body["model_version"]) == ("transaction_risk", "3")
    assert dt.datetime.fromisoformat(body["raised_at"].replace("Z", "+00:00")) > dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)

    rows = handoffs(tmp_path)
    assert sorted(rows["alert_id"]) == sorted(keys)
    assert set(rows["status"]) == {DELIVERED} and set(rows["attempt"]) == {1} and set(rows["http_status"]) == {200}
    assert (rows["case_id"] == "CASE-" + rows["alert_id"]).all()
    assert set(rows["endpoint"]) == {f"http://127.0.0.1:{receiver.port}"}
    assert rows.loc[rows["alert_id"] == expected["alert_id"], "alert_event_date"].item() == dt.date.fromisoformat(DAY2)
    assert set(rows["event_date"]) == {dt.datetime.now(dt.timezone.utc).date()}


def test_a_rewritten_partition_or_a_cleared_cursor_sends_nothing_again(instance, tmp_path, receiver):
    cm = CaseManagementResource(url=receiver.url())
    day = [alert(1), alert(2), alert(3, band="MEDIUM")]
    write_alerts(tmp_path, day)
    cursor, _ = tick(instance, tmp_path, cm)
    assert len(receiver.requests) == 2

    # the day is re-materialised (replay): the same alert ids, raised again now, in new files; plus one new HIGH
    # alert, and the former MEDIUM one now HIGH: only those two are new
    write_alerts(tmp_path, [alert(1), alert(2), alert(3), alert(8)], rewrite_day=DAY)
    cursor, message = tick(instance, tmp_path, cm, cursor)
    assert sorted(receiver.keys()[2:]) == [alert(3)["alert_id"], alert(8)["alert_id"]], message

    for fresh in (None, "not json"):  # a cleared (or unreadable) cursor: back to the last 24 hours
        cursor, message = tick(instance, tmp_path, cm, fresh)
        assert "0 HIGH alert(s) to hand off" in message
    for _ in range(2):
        cursor, _ = tick(instance, tmp_path, cm, cursor)
    assert len(receiver.requests) == 4 and len(set(receiver.keys())) == 4
    assert handoffs(tmp_path)["status"].tolist() == [DELIVERED] * 4


def test_receiver_down_retries_after_the_backoff_then_delivers_each_once(instance, tmp_path):
    port = free_port()  # nothing listens here yet
    cm = CaseManagementResource(url=f"http://127.0.0.1:{port}/api/cases", retry_base_seconds=0.5, timeout_seconds=2)
    write_alerts(tmp_path, [alert(1), alert(2), alert(3)])

    cursor, message = tick(instance, tmp_path, cm)
    assert "1 RETRY_SCHEDULED" in message and "1 awaiting retry" in message
    [first] = HandoffCursor.parse(cursor, time.time()).retries
    assert first.attempts == 1 and first.alert_id == alert(1)["alert_id"]  # the oldest alert first
    cursor, message = tick(instance, tmp_path, cm, cursor)  # before the backoff: nothing posted, nothing recorded
    assert "RETRY_SCHEDULED" not in message
    wait_until(first.next_at)
    cursor, message = tick(instance, tmp_path, cm, cursor)  # still down: attempt 2, twice the delay
    [second] = HandoffCursor.parse(cursor, time.time()).retries
    assert second.attempts == 2 and second.next_at - time.time() > 0.6

    receiver = Receiver(port)
    try:
        cursor, _ = tick(instance, tmp_path, cm, cursor)  # up now, but the backoff has not passed
        assert receiver.requests == []
        wait_until(second.next_at)
        cursor, message = tick(instance, tmp_path, cm, cursor)
        assert "3 DELIVERED" in message and "0 awaiting retry" in message
        for _ in range(3):
            cursor, _ = tick(instance, tmp_path, cm, cursor)
        assert sorted(receiver.keys()) == sorted(a["alert_id"] for a in (alert(1), alert(2), alert(3)))
    finally:
        receiver.stop()

    rows = handoffs(tmp_path)
    first_alert = rows[rows["alert_id"] == alert(1)["alert_id"]]
    assert first_alert[["status", "attempt"]].values.tolist() == [[RETRY_SCHEDULED, 1], [RETRY_SCHEDULED, 2], [DELIVERED, 3]]
    assert first_alert["http_status"].isna().tolist() == [True, True, False]
    assert "ConnectionError" in first_alert["error"].iloc[0] and f"127.0.0.1:{port}" in first_alert["error"].iloc[0]
    assert rows[rows["alert_id"] != alert(1)["alert_id"]][["status", "attempt"]].values.tolist() == [[DELIVERED, 1], [DELIVERED, 1]]


def test_a_cleared_cursor_resumes_a_retry_from_the_table(instance, tmp_path):
    """The attempt count and the backoff come back from case_handoffs: no early post, no restarted count."""
    port = free_port()
    cm = CaseManagementResource(url=f"http://127.0.0.1:{port}/api/cases", retry_base_seconds=1.0, max_attempts=3)
    write_alerts(tmp_path, [alert(1)])
    tick(instance, tmp_path, cm)
    receiver = Receiver(port)
    try:
        cursor, message = tick(instance, tmp_path, cm, None)  # cursor cleared within the 1 s backoff
        assert receiver.requests == [] and "1 awaiting retry" in message
        [resumed] = HandoffCursor.parse(cursor, time.time()).retries
        assert resumed.attempts == 1
        wait_until(resumed.next_at)
        tick(instance, tmp_path, cm, cursor)
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()
    assert handoffs(tmp_path)[["status", "attempt"]].values.tolist() == [[RETRY_SCHEDULED, 1], [DELIVERED, 2]]


def test_a_400_is_rejected_without_retry_and_a_429_is_retried(instance, tmp_path):
    refused, throttled = alert(1)["alert_id"], alert(2)["alert_id"]
    receiver = Receiver(respond=lambda key, n: 400 if key == refused else 429 if key == throttled and n == 1 else 201)
    try:
        cm = CaseManagementResource(url=receiver.url(), retry_base_seconds=0.3)
        write_alerts(tmp_path, [alert(1), alert(2), alert(3)])
        cursor, message = tick(instance, tmp_path, cm)
        assert "1 REJECTED" in message and "1 RETRY_SCHEDULED" in message
        time.sleep(0.4)
        for _ in range(3):
            cursor, _ = tick(instance, tmp_path, cm, cursor)
            time.sleep(0.35)
        assert sorted(receiver.keys()) == sorted([refused, throttled, throttled, alert(3)["alert_id"]])
    finally:
        receiver.stop()
    rows = handoffs(tmp_path)
    by_alert = {a: g[["status", "attempt", "http_status"]].values.tolist() for a, g in rows.groupby("alert_id")}
    assert by_alert[refused] == [[REJECTED, 1, 400]]
    assert by_alert[throttled] == [[RETRY_SCHEDULED, 1, 429], [DELIVERED, 2, 201]]
    assert by_alert[alert(3)["alert_id"]] == [[DELIVERED, 1, 201]]
    assert "HTTP 400" in rows.loc[rows["alert_id"] == refused, "error"].item()


def test_the_token_never_leaks(instance, tmp_path, caplog):
    """Neither the bearer token nor the URL's token: not in the table, the logs (urllib3's DEBUG lines included),
    the cursor, the tick's message or the resource's repr; the receiver does get it."""
    port = free_port()
    cm = CaseManagementResource(url=f"http://127.0.0.1:{port}/cases/{TOKEN}?sig={TOKEN}", token=TOKEN, retry_base_seconds=0.2)
    assert TOKEN not in repr(cm)
    write_alerts(tmp_path, [alert(1), alert(2)])
    messages = []
    with caplog.at_level(logging.DEBUG):
        cursor, m = tick(instance, tmp_path, cm, None, caplog.handler)  # refused: retry scheduled
        messages.append(m)
        receiver = Receiver(port)
        try:
            time.sleep(0.3)
            cursor, m = tick(instance, tmp_path, cm, cursor, caplog.handler)
            messages.append(m)
        finally:
            receiver.stop()
    assert len(receiver.requests) == 2 and receiver.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert "127.0.0.1" in caplog.text  # the logs do name the receiver
    assert TOKEN not in caplog.text and TOKEN not in cursor and TOKEN not in " ".join(messages)
    rows = handoffs(tmp_path)
    assert set(rows["status"]) == {RETRY_SCHEDULED, DELIVERED}
    assert TOKEN not in rows.to_csv()


def test_without_an_endpoint_the_sensor_skips(instance, tmp_path, monkeypatch):
    monkeypatch.delenv("CASE_MANAGEMENT_URL", raising=False)
    monkeypatch.delenv("CASE_MANAGEMENT_TOKEN", raising=False)
    cm = case_management_from_env()
    assert not cm.configured
    write_alerts(tmp_path, [alert(1)])
    cursor, message = tick(instance, tmp_path, cm)
    assert message == NO_ENDPOINT_MESSAGE and cursor is None
    assert not (tmp_path / "tables" / CASE_HANDOFFS).exists()


def test_the_endpoint_and_token_come_from_the_environment(instance, tmp_path, receiver, monkeypatch):
    """EnvVar fields: the definitions show the variables' names; the sensor posts with their values."""
    monkeypatch.setenv("CASE_MANAGEMENT_URL", receiver.url())
    monkeypatch.setenv("CASE_MANAGEMENT_TOKEN", TOKEN)
    monkeypatch.setenv("CASE_MANAGEMENT_MAX_ATTEMPTS", "4")
    cm = case_management_from_env()
    assert (cm.url, cm.token) == ("CASE_MANAGEMENT_URL", "CASE_MANAGEMENT_TOKEN")  # the names, not the secrets
    assert cm.url.get_value() == receiver.url() and cm.token.get_value() == TOKEN and cm.max_attempts == 4
    write_alerts(tmp_path, [alert(1)])
    tick(instance, tmp_path, cm)
    [request] = receiver.requests
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}" and request["path"].endswith(TOKEN)
    assert handoffs(tmp_path)["endpoint"].tolist() == [f"http://127.0.0.1:{receiver.port}"]
    resolved = CaseManagementResource(url=receiver.url(), token=TOKEN)
    assert TOKEN not in resolved.redact(f"failed {receiver.url()} Bearer {TOKEN}")


def test_posting_is_bounded_per_tick(instance, tmp_path, receiver, monkeypatch):
    monkeypatch.setattr(handoff_module, "MAX_POSTS_PER_TICK", 2)
    write_alerts(tmp_path, [alert(n) for n in range(1, 6)])
    cm = CaseManagementResource(url=receiver.url())
    cursor, per_tick = None, []
    for _ in range(4):
        before = len(receiver.requests)
        cursor, _ = tick(instance, tmp_path, cm, cursor)
        per_tick.append(len(receiver.requests) - before)
        if per_tick[-1] == 2:
            assert json.loads(cursor)["backlog"] == [DAY]  # the rest wait in the cursor
    assert per_tick == [2, 2, 1, 0]
    assert sorted(receiver.keys()) == [alert(n)["alert_id"] for n in range(1, 6)]


def test_a_waiting_alert_no_longer_high_is_withdrawn(instance, tmp_path):
    port = free_port()
    cm = CaseManagementResource(url=f"http://127.0.0.1:{port}/api/cases", retry_base_seconds=0.2)
    write_alerts(tmp_path, [alert(1)])
    cursor, _ = tick(instance, tmp_path, cm)
    write_alerts(tmp_path, [alert(1, band="MEDIUM")], rewrite_day=DAY)  # re-scored: no longer HIGH
    receiver = Receiver(port)
    try:
        time.sleep(0.3)
        cursor, message = tick(instance, tmp_path, cm, cursor)
        assert receiver.requests == [] and "1 WITHDRAWN" in message and "0 awaiting retry" in message
    finally:
        receiver.stop()
    assert handoffs(tmp_path)["status"].tolist() == [RETRY_SCHEDULED, WITHDRAWN]


def test_a_record_that_cannot_be_written_still_prevents_a_second_post(instance, tmp_path, receiver, caplog):
    """case_handoffs cannot take the new rows (an older table with fewer columns stands at its path): the
    DELIVERED record waits in the cursor, keeps the alert from being posted again, and is written once the table
    can take it."""
    old_table = f"{tmp_path}/tables/{CASE_HANDOFFS}"
    write_deltalake(old_table, pa.table({
        "alert_id": pa.array(["ALR-other"]), "attempt": pa.array([1], pa.int32()), "status": pa.array([DELIVERED]),
        "attempted_at": pa.array([dt.datetime.now(dt.timezone.utc)], pa.timestamp("us", tz="UTC")), "event_date": pa.array([dt.date.today()]),
    }), partition_by=["event_date"])
    cm = CaseManagementResource(url=receiver.url())
    write_alerts(tmp_path, [alert(1)])
    with caplog.at_level(logging.ERROR):
        cursor, _ = tick(instance, tmp_path, cm, None, caplog.handler)
        assert len(receiver.requests) == 1 and len(json.loads(cursor)["unwritten"]) == 1
        write_alerts(tmp_path, [alert(1)], rewrite_day=DAY)  # re-materialised: the alert is found again
        cursor, _ = tick(instance, tmp_path, cm, cursor, caplog.handler)
    assert len(receiver.requests) == 1 and len(json.loads(cursor)["unwritten"]) == 1
    assert f"could not append 1 row(s) to {CASE_HANDOFFS}" in caplog.text
    shutil.rmtree(old_table)  # an operator moves the old table away
    cursor, _ = tick(instance, tmp_path, cm, cursor)
    assert json.loads(cursor)["unwritten"] == [] and len(receiver.requests) == 1
    assert handoffs(tmp_path)[["alert_id", "status", "case_id"]].values.tolist() == [[alert(1)["alert_id"], DELIVERED, f"CASE-{alert(1)['alert_id']}"]]


def test_an_unreadable_delivery_record_fails_the_tick_before_any_post(instance, tmp_path, receiver):
    blocker = tmp_path / "tables" / CASE_HANDOFFS
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a table")
    write_alerts(tmp_path, [alert(1)])
    with pytest.raises(Exception, match=f"cannot read {CASE_HANDOFFS}"):
        tick(instance, tmp_path, CaseManagementResource(url=receiver.url()))
    assert receiver.requests == []


def test_an_unreadable_cursor_version_reads_every_partition(tmp_path):
    write_alerts(tmp_path, [alert(1)])
    write_alerts(tmp_path, [alert(2, DAY2)])
    path = f"{tmp_path}/tables/anomaly_alerts"
    table = DeltaTable(path)
    assert touched_partitions(path, table, 0) == {DAY2}
    assert touched_partitions(path, table, 1) == set()
    assert touched_partitions(path, table, 5) is None  # a version the table never had (re-created table)


# The pure parts.

def test_what_an_attempt_becomes():
    policy = RetryPolicy(base_seconds=30, max_seconds=100, max_attempts=4)
    assert after_post("a", DAY, 0, PostResult("DELIVERED", 200, case_id="C1"), 1000.0, policy) == (DELIVERED, None)
    assert after_post("a", DAY, 0, PostResult("REJECTED", 422), 1000.0, policy) == (REJECTED, None)
    delays = []
    for attempts in range(3):
        status, retry = after_post("a", DAY, attempts, PostResult(RETRYABLE, 503), 1000.0, policy)
        assert status == RETRY_SCHEDULED and retry.attempts == attempts + 1
        delays.append(retry.next_at - 1000.0)
    assert delays == [30, 60, 100]
    assert after_post("a", DAY, 3, PostResult(RETRYABLE, 503), 1000.0, policy) == (GAVE_UP, None)
    _, retry = after_post("a", DAY, 0, PostResult(RETRYABLE, 429, retry_after=75), 1000.0, policy)
    assert retry.next_at == 1075.0  # the receiver's Retry-After, longer than the backoff
    _, retry = after_post("a", DAY, 0, PostResult(RETRYABLE, 429, retry_after=9999), 1000.0, policy)
    assert retry.next_at == 1100.0  # capped
    assert [classify(s) for s in (200, 201, 204, 301, 400, 401, 404, 408, 409, 422, 429, 500, 503)] == [
        "DELIVERED", "DELIVERED", "DELIVERED", RETRYABLE, "REJECTED", "REJECTED", "REJECTED", RETRYABLE, "REJECTED", "REJECTED",
        RETRYABLE, RETRYABLE, RETRYABLE,
    ]


def test_earlier_attempts_resume_or_end_the_hand_off():
    policy = RetryPolicy(base_seconds=10, max_seconds=100, max_attempts=5)
    at = dt.datetime.fromtimestamp(1000.0, dt.timezone.utc)
    retry_rows = [{"status": RETRY_SCHEDULED, "attempt": 1, "attempted_at": at}, {"status": RETRY_SCHEDULED, "attempt": 2, "attempted_at": at + dt.timedelta(seconds=10)}]
    assert resumed_retry("a", DAY, retry_rows, policy) == Retry("a", DAY, 2, 1030.0)
    for final in (DELIVERED, REJECTED, GAVE_UP):
        assert resumed_retry("a", DAY, [*retry_rows, {"status": final, "attempt": 3, "attempted_at": at}], policy) is None
    assert resumed_retry("a", DAY, [], policy) is None


def test_cursor_round_trips_and_starts_over_when_unreadable():
    cursor = HandoffCursor(since=5.0, version=7, backlog=[DAY], retries=[Retry("a", DAY, 2, 99.0)], hold_until=98.0, unwritten=[{"alert_id": "b"}])
    assert HandoffCursor.parse(cursor.to_json(), 1e9) == cursor
    for raw in (None, "", "not json", "[]", '{"version": 3}'):
        assert HandoffCursor.parse(raw, 100_000.0) == HandoffCursor(since=100_000.0 - 24 * 3600)


def test_the_case_is_plain_json():
    case = case_payload(alert(12))
    assert json.loads(json.dumps(case)) == case
    assert case["amount_base"] == "1012.25" and case["event_time"] == f"{DAY}T10:12:00Z" and case["ingest_date"] == DAY
    assert set(case) >= {"alert_id", "transaction_id", "event_time", "account_id", "merchant_id", "amount_base", "risk_score", "risk_band", "reasons",
                         "primary_reason", "top_features", "model_name", "model_version", "raised_at", "ingest_date", "dagster_run_id", "source", "schema_version"}


def test_the_table_spec_and_the_sensor_default():
    assert case_handoffs_spec.key.to_user_string() == CASE_HANDOFFS
    assert case_handoffs_spec.group_name == "investigations" and case_handoffs_spec.kinds == {"delta"}
    assert case_handoff_sensor.default_status == DefaultSensorStatus.STOPPED


def test_the_sensor_loads_with_its_resources(tmp_path, monkeypatch):
    monkeypatch.delenv("CASE_MANAGEMENT_URL", raising=False)
    from dagster import Definitions

    Definitions.validate_loadable(Definitions(
        assets=[case_handoffs_spec], sensors=[case_handoff_sensor],
        resources={"case_management": case_management_from_env(), "lake": LakeResource(root=str(tmp_path))},
    ))
