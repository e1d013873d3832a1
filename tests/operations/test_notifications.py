"""The alerting sensor posts one webhook message per failed asset check and per failed run, never twice, retries
while the receiver is down, logs instead of posting without a webhook, records every attempt in
alert_notifications and never leaks the webhook URL.

Failures are real: tiny plain-Python assets with daily partitions and asset checks run in a real temporary Dagster
instance (SQLite, run-sharded: the storage the project's dagster.yaml uses), and messages go over HTTP to a real
receiver on loopback. No Spark."""

import datetime as dt
import json
import logging
import time
from urllib.parse import quote, quote_plus

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    EventLogEntry,
    EventLogRecord,
    asset,
    asset_check,
    build_sensor_context,
    define_asset_job,
    instance_for_test,
)
import yaml
from deltalake import DeltaTable

from partitions import daily_partitions
from resources.lake import LakeResource
from resources.masking import mask_error
from resources.notifier import Alert, NotifierResource, alert_payload, notifier_from_env, redact, safe_target
from compliance_assets.operations.alert_notifications import alert_notifications_spec
from compliance_assets.operations.notifications import DELIVERED, GAVE_UP, LOGGED_NO_WEBHOOK, NO_WEBHOOK_MESSAGE, RETRY_SCHEDULED, AlertCursor, Pending, RetryPolicy, after_attempt, alert_from_check, alerting_sensor, deliver, read_new_alerts
from tests.helpers import free_port
from tests.http_receiver import Receiver as HttpReceiver
from catalog import ALERT_NOTIFICATIONS

pytestmark = pytest.mark.filterwarnings("ignore::Warning")  # partitioned asset checks are a preview feature

DAY = "2026-04-03"
TOKEN = "SECRET-TOKEN-123"


# Tiny assets whose checks and runs fail for real.

@asset(partitions_def=daily_partitions)
def risk_scores_gold() -> None:
    return None


@asset_check(asset=risk_scores_gold, partitions_def=daily_partitions, description="Every risk_score is within [0, 1].")
def scores_in_unit_interval() -> AssetCheckResult:
    return AssetCheckResult(
        passed=False, severity=AssetCheckSeverity.ERROR, description="3 scores outside [0, 1]", metadata={"out_of_range_rows": 3, "max_score": 1.7},
    )


@asset(partitions_def=daily_partitions)
def transactions_silver() -> None:
    return None


@asset_check(asset=transactions_silver, partitions_def=daily_partitions)
def silver_rows_conserved() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


@asset(partitions_def=daily_partitions)
def ledger_extract() -> None:
    raise RuntimeError("ledger feed missing for the day")


# what a broken input file holds: a failed run's error quotes it (a parser's snippet, the bad record)
PLANTED_SECRET = "planted-s3cr3t-4d8c"
PLANTED_RECORD = f"TX-77;Erika Mustermann;DE89370400440532013000;{PLANTED_SECRET}"


@asset(partitions_def=daily_partitions)
def legacy_import() -> None:
    text = f"name: legacy\ncolumns: [{PLANTED_RECORD}\nsecret: {PLANTED_SECRET}\n"
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:  # the root cause (the YAML error) quotes the line it choked on
        raise ValueError(f"could not read the export: {PLANTED_RECORD!r}") from exc


@asset(partitions_def=daily_partitions)
def record_import() -> None:
    raise ValueError(f"could not parse line 7 of export.csv: {PLANTED_RECORD}\nwith token={PLANTED_SECRET} and 'Erika Mustermann, Hauptstrasse 1, Berlin'")


defs = Definitions(
    assets=[risk_scores_gold, transactions_silver, ledger_extract, legacy_import, record_import],
    asset_checks=[scores_in_unit_interval, silver_rows_conserved],
    jobs=[
        define_asset_job("nightly_scoring", selection=[risk_scores_gold, scores_in_unit_interval]),
        define_asset_job("nightly_silver", selection=[transactions_silver, silver_rows_conserved]),
        define_asset_job("ledger_reconciliation", selection=[ledger_extract]),
        define_asset_job("legacy_import_job", selection=[legacy_import]),
        define_asset_job("record_import_job", selection=[record_import]),
    ],
)


def run_job(instance, name: str, partition: str = DAY):
    return defs.resolve_job_def(name).execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)


# A real webhook receiver.

def Receiver(port: int = 0) -> HttpReceiver:
    """A webhook receiver on loopback whose URL carries the secret token in its path, like Slack's and Teams'."""
    return HttpReceiver(port, path=f"/hooks/{TOKEN}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def tick(instance, lake_root, notifier: NotifierResource, cursor=None, log_handler=None):
    """One evaluation; `log_handler` (e.g. caplog.handler) receives the sensor's log (context.log does not
    propagate to the root logger)."""
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": notifier, "lake": LakeResource(root=str(lake_root))})
    if log_handler is not None:
        context.log.addHandler(log_handler)
    result = alerting_sensor.evaluate_tick(context)
    return result.cursor, result.skip_message


def notifications(lake_root):
    return DeltaTable(f"{lake_root}/tables/{ALERT_NOTIFICATIONS}").to_pandas().sort_values(["recorded_at", "attempt"]).reset_index(drop=True)


# Through the sensor.

@pytest.mark.parametrize("kind", ["sqlite", "ephemeral"])
def test_a_failed_check_is_posted_exactly_once(kind, tmp_path, receiver):
    with (instance_for_test() if kind == "sqlite" else DagsterInstance.ephemeral()) as instance:
        notifier = NotifierResource(webhook_url=receiver.url(), dagster_base_url="http://dagster.example:3000/")
        cursor, _ = tick(instance, tmp_path, notifier)  # the sensor is switched on before anything failed
        assert receiver.posts == []

        assert not run_job(instance, "nightly_scoring").get_asset_check_evaluations()[0].passed
        cursor, message = tick(instance, tmp_path, notifier, cursor)
        assert len(receiver.posts) == 1, message
        path, body = receiver.posts[0]
        assert path == f"/hooks/{TOKEN}"
        alert = body["compliance_alert"]
        assert (alert["kind"], alert["asset"], alert["partition"], alert["check"], alert["severity"], alert["job"]) == (
            "asset_check", "risk_scores_gold", DAY, "scores_in_unit_interval", "ERROR", "nightly_scoring",
        )
        assert "`risk_scores_gold`" in body["text"] and DAY in body["text"] and "scores_in_unit_interval" in body["text"]
        assert alert["run_url"] == f"http://dagster.example:3000/runs/{alert['run_id']}" and alert["run_url"] in body["text"]
        assert "out_of_range_rows=3" in alert["description"] and "[0, 1]" in alert["description"]

        for _ in range(2):
            cursor, _ = tick(instance, tmp_path, notifier, cursor)
        assert len(receiver.posts) == 1

        assert run_job(instance, "nightly_silver").success  # a passing check posts nothing
        cursor, _ = tick(instance, tmp_path, notifier, cursor)
        assert len(receiver.posts) == 1

        rows = notifications(tmp_path)
        assert rows[["notification_id", "status", "attempt", "http_status"]].values.tolist() == [[alert["notification_id"], DELIVERED, 1, 200]]
        assert rows.loc[0, "event_date"] == dt.datetime.now(dt.timezone.utc).date()


def test_a_failed_run_is_posted_once_with_its_job(instance, tmp_path, receiver):
    notifier = NotifierResource(webhook_url=receiver.url())
    cursor, _ = tick(instance, tmp_path, notifier)
    result = run_job(instance, "ledger_reconciliation", "2026-04-04")
    assert not result.success
    for _ in range(3):
        cursor, _ = tick(instance, tmp_path, notifier, cursor)
    assert len(receiver.posts) == 1
    _, body = receiver.posts[0]
    alert = body["compliance_alert"]
    assert (alert["kind"], alert["job"], alert["run_id"], alert["partition"], alert["asset"]) == (
        "run_failure", "ledger_reconciliation", result.run_id, "2026-04-04", "ledger_extract",
    )
    assert "ledger feed missing for the day" in alert["error"]
    assert "`ledger_reconciliation`" in body["text"] and "Run FAILED" in body["text"]


@pytest.mark.parametrize("job, root_class", [("legacy_import_job", "ParserError"), ("record_import_job", "ValueError")])
def test_a_failed_run_quoting_its_input_reaches_the_webhook_masked(instance, tmp_path, receiver, job, root_class):
    """The run's error quotes a record and a secret (as a parser's error does): the webhook gets the exception class
    and the shape of the content, never the content."""
    result = run_job(instance, job)
    assert not result.success
    step_error = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error
    assert PLANTED_SECRET in step_error.to_string() or PLANTED_SECRET in (step_error.cause.to_string() if step_error.cause else ""), "the run's own error does hold it"
    tick(instance, tmp_path, NotifierResource(webhook_url=receiver.url()), AlertCursor(since=time.time() - 60).to_json())
    [(_, body)] = receiver.posts
    error = body["compliance_alert"]["error"]
    assert error.startswith(f"step {job.removesuffix('_job')}: ") and root_class in error
    assert "[masked: " in error
    everything = json.dumps(body) + notifications(tmp_path).to_csv()
    for piece in [PLANTED_RECORD, PLANTED_SECRET, "Erika", "Mustermann", "DE89370400440532013000", "Hauptstrasse"]:
        assert piece not in everything, piece


def test_mask_error_keeps_plain_messages_and_masks_content():
    assert mask_error("ledger feed missing for the day") == "ledger feed missing for the day"
    assert mask_error("Source mapping x.yaml is not valid YAML (line 3, column 1)") == "Source mapping x.yaml is not valid YAML (line 3, column 1)"
    masked = mask_error(f"bad line: {PLANTED_RECORD}")
    assert masked.startswith("bad line: [masked: XX-99;Xxxxx") and PLANTED_SECRET not in masked
    assert "hunter2" not in mask_error("password=hunter2 and https://u:hunter2@h.example/p?sig=hunter2")
    assert "erika@example.com" not in mask_error("mail erika@example.com") and "4111" not in mask_error("card 4111 1111 1111 1111")
    assert "Max Power lives in Springfield" not in mask_error("value 'Max Power lives in Springfield' is wrong")


def test_failures_before_the_sensor_started_are_sent_when_recent(instance, tmp_path, receiver):
    """A new (or cleared) cursor looks back 24 hours, so an alert raised while the sensor was off is not lost."""
    run_job(instance, "nightly_scoring")
    run_job(instance, "ledger_reconciliation")
    tick(instance, tmp_path, NotifierResource(webhook_url=receiver.url()))
    assert sorted(body["compliance_alert"]["kind"] for _, body in receiver.posts) == ["asset_check", "run_failure"]


def test_a_failed_check_of_a_run_in_flight_is_sent_before_the_run_ends(instance, tmp_path, receiver):
    """A run still STARTED (a long backfill) has its failed checks read with a per-run cursor; its end adds nothing."""
    result = run_job(instance, "nightly_scoring")
    since = time.time()  # alert only what follows: the run below, not the finished one above
    # the finished run's check evaluation, recorded again in a run that has not finished
    job_def = defs.resolve_job_def("nightly_scoring")
    run = instance.create_run_for_job(job_def=job_def, status=DagsterRunStatus.STARTED, tags={"dagster/partition": DAY})
    for record in instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records:
        instance.store_event(record.event_log_entry._replace(run_id=run.run_id, timestamp=time.time()))
    notifier = NotifierResource(webhook_url=receiver.url())
    cursor, _ = tick(instance, tmp_path, notifier, AlertCursor(since=since).to_json())
    assert [b["compliance_alert"]["run_id"] for _, b in receiver.posts] == [run.run_id]
    assert run.run_id in json.loads(cursor)["runs"]

    instance.report_run_failed(run)
    cursor, _ = tick(instance, tmp_path, notifier, cursor)
    assert [b["compliance_alert"]["kind"] for _, b in receiver.posts] == ["asset_check", "run_failure"]
    assert json.loads(cursor)["runs"] == {}


def test_reading_is_bounded_and_a_run_cut_short_resumes_without_repeats(instance):
    for day in ("2026-04-01", "2026-04-02", "2026-04-03"):
        run_job(instance, "nightly_scoring", day)
    run_job(instance, "ledger_reconciliation")
    cursor, per_call = AlertCursor(since=time.time() - 3600), []
    for _ in range(12):  # more calls than needed: the extra ones must find nothing
        alerts, cursor = read_new_alerts(instance, cursor, budget=2)  # one status change + one check evaluation per call
        per_call.append(alerts)
    seen = [a for alerts in per_call for a in alerts]
    assert sorted((a.kind, a.partition) for a in seen) == [
        ("asset_check", "2026-04-01"), ("asset_check", "2026-04-02"), ("asset_check", "2026-04-03"), ("run_failure", DAY),
    ]
    assert max(len(alerts) for alerts in per_call) == 1  # the budget did cut the reading short
    assert cursor.runs == {} and read_new_alerts(instance, cursor)[0] == []


def test_receiver_down_retries_with_backoff_then_delivers_once(instance, tmp_path):
    port = free_port()  # nothing listens here yet
    notifier = NotifierResource(webhook_url=f"http://127.0.0.1:{port}/hooks/{TOKEN}", retry_base_seconds=1, timeout_seconds=2)
    cursor, _ = tick(instance, tmp_path, notifier)
    run_job(instance, "nightly_scoring")

    cursor, message = tick(instance, tmp_path, notifier, cursor)
    assert "1 RETRY_SCHEDULED" in message and "1 pending" in message
    [pending] = AlertCursor.parse(cursor, time.time()).pending
    assert pending.attempts == 1

    receiver = Receiver(port)
    try:
        cursor, _ = tick(instance, tmp_path, notifier, cursor)  # the 1 s backoff has not elapsed
        assert receiver.posts == []
        time.sleep(max(0.0, pending.next_at - time.time()) + 0.05)
        cursor, message = tick(instance, tmp_path, notifier, cursor)
        assert len(receiver.posts) == 1 and "1 DELIVERED" in message
        for _ in range(2):
            cursor, _ = tick(instance, tmp_path, notifier, cursor)
        assert len(receiver.posts) == 1
        assert AlertCursor.parse(cursor, time.time()).pending == []
    finally:
        receiver.stop()

    rows = notifications(tmp_path)
    assert rows["status"].tolist() == [RETRY_SCHEDULED, DELIVERED]
    assert rows["attempt"].tolist() == [1, 2]
    assert rows["notification_id"].nunique() == 1
    assert rows["notification_id"][0] == receiver.posts[0][1]["compliance_alert"]["notification_id"]
    assert rows["http_status"].isna()[0] and rows["http_status"][1] == 200
    assert "ConnectionError" in rows["error"][0] and f"127.0.0.1:{port}" in rows["error"][0] and TOKEN not in rows["error"][0]


def test_without_a_webhook_alerts_are_logged_and_the_notice_given_once(instance, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    notifier = notifier_from_env()
    assert not notifier.configured
    with caplog.at_level(logging.INFO):
        cursor, _ = tick(instance, tmp_path, notifier, None, caplog.handler)  # the notice comes with the first tick
        run_job(instance, "nightly_scoring")
        run_job(instance, "ledger_reconciliation")
        for _ in range(3):
            cursor, _ = tick(instance, tmp_path, notifier, cursor, caplog.handler)
    assert caplog.text.count(NO_WEBHOOK_MESSAGE) == 1
    assert json.loads(cursor)["no_webhook_noticed"] is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Asset check FAILED" in r.getMessage()]
    assert len(warnings) == 1 and "scores_in_unit_interval" in warnings[0]
    rows = notifications(tmp_path)
    assert rows["status"].tolist() == [LOGGED_NO_WEBHOOK, LOGGED_NO_WEBHOOK]
    assert sorted(rows["kind"]) == ["asset_check", "run_failure"]


def test_the_webhook_url_never_leaks(instance, tmp_path, caplog):
    """Not in the table, the sensor's logs (urllib3's DEBUG lines included), the cursor or the resource's repr."""
    port = free_port()
    notifier = NotifierResource(webhook_url=f"http://127.0.0.1:{port}/hooks/{TOKEN}?sig={TOKEN}", retry_base_seconds=0.2, max_attempts=2)
    assert TOKEN not in repr(notifier)
    with caplog.at_level(logging.DEBUG):
        cursor, _ = tick(instance, tmp_path, notifier, None, caplog.handler)
        run_job(instance, "nightly_scoring")
        run_job(instance, "ledger_reconciliation")
        cursor, m1 = tick(instance, tmp_path, notifier, cursor, caplog.handler)  # refused: retry scheduled
        receiver = Receiver(port)
        try:
            time.sleep(0.3)
            cursor, m2 = tick(instance, tmp_path, notifier, cursor, caplog.handler)  # delivered
        finally:
            receiver.stop()
    assert "127.0.0.1" in caplog.text  # the logs do name the receiver
    assert TOKEN not in caplog.text and TOKEN not in cursor and TOKEN not in m1 + m2
    rows = notifications(tmp_path)
    assert set(rows["status"]) == {RETRY_SCHEDULED, DELIVERED}
    assert TOKEN not in rows.to_csv()


def test_an_alert_is_given_up_after_max_attempts(instance, tmp_path, caplog):
    notifier = NotifierResource(webhook_url=f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}", retry_base_seconds=0.01, max_attempts=2)
    cursor, _ = tick(instance, tmp_path, notifier)
    run_job(instance, "ledger_reconciliation")
    cursor, _ = tick(instance, tmp_path, notifier, cursor)
    time.sleep(0.05)
    with caplog.at_level(logging.ERROR):
        cursor, message = tick(instance, tmp_path, notifier, cursor, caplog.handler)
    assert "1 GAVE_UP" in message and "0 pending" in message
    assert any(r.levelno == logging.ERROR and "GAVE UP" in r.getMessage() for r in caplog.records)
    assert notifications(tmp_path)["status"].tolist() == [RETRY_SCHEDULED, GAVE_UP]


# The pure parts.

def an_alert(n: int = 1) -> Alert:
    return Alert(
        f"check:r:{n}", "asset_check", "r", "nightly_scoring", 1_775_000_000.0, "risk_scores_gold", DAY, "scores_in_unit_interval", "ERROR", "3 rows",
    )


def test_backoff_doubles_is_capped_and_gives_up():
    policy = RetryPolicy(base_seconds=30, max_seconds=100, max_attempts=4)
    item, delays = Pending(an_alert(), 0, 0.0), []
    for _ in range(3):
        status, item = after_attempt(item, False, 1000.0, policy)
        assert status == RETRY_SCHEDULED
        delays.append(item.next_at - 1000.0)
    assert delays == [30, 60, 100]
    assert after_attempt(item, False, 1000.0, policy) == (GAVE_UP, None)
    assert after_attempt(item, True, 1000.0, policy) == (DELIVERED, None)


def test_deliver_stops_posting_once_the_receiver_fails():
    calls = []

    def post(payload):
        calls.append(payload)
        return False, None, "ConnectionError"

    notifier = NotifierResource(webhook_url="http://hooks.example/x", retry_base_seconds=10)
    outcome = deliver([an_alert(1), an_alert(2), an_alert(3)], AlertCursor(since=0.0), 1000.0, notifier, post=post)
    assert len(calls) == 1
    assert [r["status"] for r in outcome.rows] == [RETRY_SCHEDULED]
    assert sorted((p.alert.notification_id, p.attempts, p.next_at) for p in outcome.pending) == [
        ("check:r:1", 1, 1010.0), ("check:r:2", 0, 1000.0), ("check:r:3", 0, 1000.0),
    ]


def test_deliver_waits_for_pending_alerts_that_are_not_due():
    notifier = NotifierResource(webhook_url="http://hooks.example/x")
    cursor = AlertCursor(since=0.0, pending=[Pending(an_alert(), 2, 2000.0)])
    outcome = deliver([], cursor, 1999.0, notifier, post=lambda payload: pytest.fail("posted too early"))
    assert outcome.rows == [] and outcome.pending == cursor.pending


def test_cursor_round_trips_and_starts_over_when_unreadable():
    cursor = AlertCursor(since=5.0, after=42, runs={"r": "abc"}, pending=[Pending(an_alert(), 3, 77.0)], no_webhook_noticed=True)
    assert AlertCursor.parse(cursor.to_json(), 1e9) == cursor
    assert deliver([an_alert()], cursor, 0.0, NotifierResource()).logs[0][1] != NO_WEBHOOK_MESSAGE  # already noticed
    for raw in (None, "", "not json", "[]", '{"after": 3}'):
        assert AlertCursor.parse(raw, 100_000.0) == AlertCursor(since=100_000.0 - 24 * 3600)


def test_payload_is_slack_and_teams_shaped():
    payload = alert_payload(an_alert(), "https://dagster.example/")
    assert set(payload) == {"text", "compliance_alert"}
    assert payload["text"] == (
        ":rotating_light: Asset check FAILED (ERROR): `risk_scores_gold` partition `2026-04-03` check `scores_in_unit_interval` "
        "— run r https://dagster.example/runs/r. 3 rows"
    )
    assert payload["compliance_alert"]["occurred_at"] == "2026-03-31T23:33:20Z"
    json.dumps(payload)


def test_alert_from_a_passed_or_unpartitioned_check():
    def record(passed, partition):
        evaluation = AssetCheckEvaluation(
            asset_key=AssetKey("risk_scores_gold"), check_name="c", passed=passed, metadata={}, severity=AssetCheckSeverity.WARN, partition=partition,
        )
        event = DagsterEvent(DagsterEventType.ASSET_CHECK_EVALUATION.value, "nightly_scoring", event_specific_data=evaluation)
        entry = EventLogEntry(
            error_info=None, level=logging.DEBUG, user_message="", run_id="r", timestamp=1.0, job_name="nightly_scoring", dagster_event=event,
        )
        return EventLogRecord(storage_id=7, event_log_entry=entry)

    assert alert_from_check(record(True, DAY)) is None
    alert = alert_from_check(record(False, None), {"dagster/partition": "2026-04-05"})
    assert (alert.notification_id, alert.partition, alert.severity) == ("check:r:7", "2026-04-05", "WARN")


def test_secrets_are_redacted_and_only_scheme_and_host_shown():
    url = f"https://user:pw@hooks.example.com:8443/services/{TOKEN}?token={TOKEN}"
    assert safe_target(url) == "https://hooks.example.com:8443"
    text = redact(f"failed {url} then /services/{TOKEN} and user:pw", url)
    assert TOKEN not in text and "pw" not in text
    # percent-encoded (a URL inside another URL or a form body), in upper or lower case, and the token on its own
    for form in (quote(url, safe=""), quote_plus(url), quote(f"/services/{TOKEN}", safe=""), quote(url, safe="").lower(), TOKEN):
        assert TOKEN not in redact(f"x {form} y", url) and form not in redact(f"x {form} y", url), form
    assert redact("nothing secret here", url) == "nothing secret here"


def test_the_posted_payload_is_redacted(receiver):
    url = receiver.url()
    notifier = NotifierResource(webhook_url=url)
    alert = Alert("run:r", "run_failure", "r", "j", 1_775_000_000.0, summary=f"failed posting to {quote(url, safe='')} ({TOKEN})")
    assert notifier.post(alert_payload(alert))[0]
    [(_, body)] = receiver.posts
    assert TOKEN not in json.dumps(body) and "%2Fhooks%2F" not in json.dumps(body)


def test_the_table_spec():
    assert alert_notifications_spec.key.to_user_string() == ALERT_NOTIFICATIONS
    assert alert_notifications_spec.group_name == "operations" and alert_notifications_spec.kinds == {"delta"}
