"""alert_dispositions on a real lake: investigators' decision files -> contract -> append-only history or DLQ;
decisions as training labels respecting their decision time; alert precision; the CLI."""

import datetime as dt
import json

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from dagster import DagsterInstance, load_asset_checks_from_modules, materialize

from compliance_assets.investigations import dispositions, precision
from compliance_assets.investigations.dispositions_cli import main as cli
from compliance_assets.investigations.decision_files import check_file
from compliance_assets.investigations.dispositions import record_alert_dispositions
from compliance_assets.investigations.precision import alert_precision
from compliance_assets.ml.features_training import labels_as_of, ml_features_training
from compliance_assets.ml.model_features import MERCHANT_FEATURES, MODEL_FEATURES
from tests.conftest import make_resources
from tests.helpers import SCORED_DAYS as SCORED
from tests.helpers import check_results, read_delta

FIRST, SECOND = "2026-04-06", "2026-04-08"  # receipt days of the decision files
DISPOSITION_ASSETS = [record_alert_dispositions, *load_asset_checks_from_modules([dispositions])]
PRECISION_ASSETS = [alert_precision, *load_asset_checks_from_modules([precision])]
HEADER = "alert_id,decision,investigator,decided_at,note\n"


def run(lake, assets, key):
    return materialize(assets, partition_key=key, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), raise_on_error=False)


def drop(lake, day: str, name: str, text: str) -> None:
    folder = lake / "drops" / "dispositions" / day
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_decision_files_are_checked_against_the_contract_record_by_record():
    csv = HEADER + "\n".join([
        "ALR-0123456789abcdef01234567,confirm,alice,2026-04-06T10:00:00Z,structuring pattern",  # lower-case decision: normalised
        "ALR-0123456789abcdef01234567,APPROVE,alice,2026-04-06T10:00:00Z,",  # not a decision
        "ALR-0123456789abcdef01234567,DISMISS,,2026-04-06T10:00:00Z,",  # no investigator
        "ALR-0123456789abcdef01234567,DISMISS,bob,2026-04-06 10:00,",  # no offset: not RFC 3339
        "not-an-alert,DISMISS,bob,2026-04-06T10:00:00+02:00,",
    ]) + "\n"
    decisions, rejected, read = check_file("d.csv", csv.encode())
    assert read == 5 and len(decisions) == 1 and len(rejected) == 4
    assert decisions[0].decision == "CONFIRM" and decisions[0].note == "structuring pattern"
    assert [r.reason_codes for r in rejected] == [("INVALID_DECISION",), ("MISSING_FIELD",), ("INVALID_TIMESTAMP",), ("INVALID_ALERT_ID",)]
    assert [r.source_row for r in rejected] == [2, 3, 4, 5]
    # JSON: a list or {"dispositions": [...]}; an unexpected field is refused, an offset is converted to UTC
    doc = {"dispositions": [
        {"alert_id": "ALR-0123456789abcdef01234567", "decision": "ESCALATE", "investigator": "carol", "decided_at": "2026-04-06T12:00:00+02:00"},
        {"alert_id": "ALR-0123456789abcdef01234567", "decision": "DISMISS", "investigator": "carol", "decided_at": "2026-04-06T12:00:00Z", "score": 1},
    ]}
    decisions, rejected, read = check_file("d.json", json.dumps(doc).encode())
    assert read == 2 and decisions[0].decided_at == dt.datetime(2026, 4, 6, 10, tzinfo=dt.timezone.utc)
    assert rejected[0].reason_codes == ("UNEXPECTED_FIELD",)
    # a file that cannot be read is one rejected record, not a crash
    assert [r.reason_codes for r in check_file("d.json", b"{not json")[1]] == [("UNREADABLE_FILE",)]
    assert [r.reason_codes for r in check_file("d.xlsx", b"PK\x03\x04")[1]] == [("UNSUPPORTED_FILE_TYPE",)]


def test_dismissed_then_confirmed_alert_ends_confirmed_with_both_decisions_kept(lake, spark):
    alerts = read_delta(lake, "anomaly_alerts").sort_values("alert_id").reset_index(drop=True)
    a, b = alerts.iloc[0], alerts.iloc[1]
    # labels of these two come only from decisions: remove any outcome the generator delivered for them
    DeltaTable.forPath(spark, str(lake / "tables" / "transaction_outcomes")).delete(F.col("transaction_id").isin(a.transaction_id, b.transaction_id))
    dismissed_at, confirmed_at = "2026-04-06T10:00:00Z", "2026-04-08T09:30:00Z"
    drop(lake, FIRST, "batch1.csv", HEADER + "\n".join([
        f"{a.alert_id},DISMISS,alice,{dismissed_at},looks like payroll",
        "ALR-ffffffffffffffffffffffff,CONFIRM,alice,2026-04-06T10:05:00Z,",  # well-formed but no such alert
        f"{b.alert_id},CONFIRM,alice,2026-03-01T00:00:00Z,",  # before the transaction happened
        f"{b.alert_id},CONFIRM,alice,2099-01-01T00:00:00Z,",  # in the future
        f"{b.alert_id},MAYBE,alice,2026-04-06T10:00:00Z,",
    ]) + "\n")
    first = run(lake, DISPOSITION_ASSETS, FIRST)
    assert first.success and all(check_results(first).values()), check_results(first)
    history = read_delta(lake, "alert_dispositions")
    dlq = read_delta(lake, "alert_dispositions_dlq")
    assert list(history.alert_id) == [a.alert_id] and list(history.decision) == ["DISMISS"]
    assert history.transaction_id[0] == a.transaction_id and pd.Timestamp(history.event_time[0]) == pd.Timestamp(a.event_time)
    assert sorted(code for codes in dlq.reason_codes for code in codes) == sorted(["UNKNOWN_ALERT", "DECIDED_BEFORE_TRANSACTION", "DECIDED_IN_FUTURE", "INVALID_DECISION"])
    assert len(history) + len(dlq) == 5  # nothing lost

    # the next day: the confirmation, a resubmission of the dismissal (idempotent) and an escalation of b
    drop(lake, SECOND, "batch2.json", json.dumps([
        {"alert_id": a.alert_id, "decision": "confirm", "investigator": "bob", "decided_at": confirmed_at, "note": "second review: mule account"},
        {"alert_id": a.alert_id, "decision": "DISMISS", "investigator": "alice", "decided_at": dismissed_at, "note": "looks like payroll"},
        {"alert_id": b.alert_id, "decision": "ESCALATE", "investigator": "bob", "decided_at": "2026-04-08T10:00:00Z"},
    ]))
    second = run(lake, DISPOSITION_ASSETS, SECOND)
    assert second.success and all(check_results(second).values()), check_results(second)
    meta = second.asset_materializations_for_node("record_alert_dispositions")[0].metadata
    assert meta["records_read"].value == 3 and meta["already_recorded"].value == 1 and meta["dagster/row_count"].value == 2
    history = read_delta(lake, "alert_dispositions").sort_values("decided_at")
    mine = history[history.alert_id == a.alert_id]
    assert list(mine.decision) == ["DISMISS", "CONFIRM"] and list(mine.investigator) == ["alice", "bob"]  # both kept, in order

    # the label follows the decision in force at each cut-off: dismissed (0) in between, confirmed (1) after
    def label(cutoff):
        rows = labels_as_of(spark, make_resources(lake)["lake"], cutoff).where(f"transaction_id = '{a.transaction_id}'").collect()
        return rows[0].label if rows else None

    assert label(dt.datetime(2026, 4, 6, 9)) is None
    assert label(dt.datetime(2026, 4, 7)) == 0
    assert label(dt.datetime(2026, 4, 9)) == 1
    escalated = labels_as_of(spark, make_resources(lake)["lake"]).where(f"transaction_id = '{b.transaction_id}'").count()
    assert escalated == 0  # an escalation is not an outcome

    # re-materialising both days changes nothing, and the history has only ever been appended to
    before = read_delta(lake, "alert_dispositions").sort_values("disposition_id").reset_index(drop=True)
    for day in (FIRST, SECOND):
        again = run(lake, DISPOSITION_ASSETS, day)
        assert again.success and all(check_results(again).values())
    after = read_delta(lake, "alert_dispositions").sort_values("disposition_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert len(read_delta(lake, "alert_dispositions_dlq")) == 4

    # precision of the delivery day of a's alert: a confirmed, b escalated (not in the ratio)
    day_of_a = str(pd.Timestamp(a.ingest_date).date())
    result = run(lake, PRECISION_ASSETS, day_of_a)
    assert result.success and all(check_results(result).values())
    rows = read_delta(lake, "alert_precision", event_date=day_of_a)
    day_rows = rows[(rows.window == "day") & (rows.dimension == "scenario")]
    day_alerts = alerts[alerts.ingest_date.astype(str) == day_of_a]
    expected_scenarios = day_alerts.primary_reason.str.split(":").str[0].value_counts().to_dict()
    assert day_rows.set_index("value")["alerts"].to_dict() == expected_scenarios
    scenario_a = a.primary_reason.split(":")[0]
    row = day_rows[day_rows.value == scenario_a].iloc[0]
    decided_here = {a.alert_id: "CONFIRM"} | ({b.alert_id: "ESCALATE"} if b.ingest_date == a.ingest_date and b.primary_reason.split(":")[0] == scenario_a else {})
    assert row.confirmed == 1 and row.dismissed == 0 and row.precision == 1.0
    assert row.escalated == list(decided_here.values()).count("ESCALATE") and row.undecided == row.alerts - len(decided_here)
    rule_rows = rows[(rows.window == "day") & (rows.dimension == "rule")].set_index("value")
    assert all(rule_rows.loc[r, "confirmed"] >= 1 for r in a.reasons)


def test_a_decision_dated_after_a_transaction_never_changes_its_training_features(lake, spark, monkeypatch):
    """Point in time at decision-time granularity: a confirmation at noon changes no feature of a transaction before noon."""
    # no label delay, so a confirmation decided before a day counts in that day's merchant features at once
    monkeypatch.setenv("MERCHANT_LABEL_DELAY_DAYS", "0")
    early_day, day = SCORED
    alerts = read_delta(lake, "anomaly_alerts", ingest_date=early_day).sort_values("alert_id")
    alerts = alerts[alerts.merchant_id.notna()]
    later, earlier = alerts.iloc[: len(alerts) // 2], alerts.iloc[len(alerts) // 2 :]
    assert len(later) >= 2 and len(earlier) >= 2
    # the later-confirmed transactions' labels come only from the decisions: drop any outcome the generator delivered
    DeltaTable.forPath(spark, str(lake / "tables" / "transaction_outcomes")).delete(F.col("transaction_id").isin(*later.transaction_id))

    def features():
        assert run(lake, [ml_features_training], day).success
        return read_delta(lake, "ml_features_training", ingest_date=day).set_index("transaction_id").sort_index()

    baseline = features()
    # confirmed at noon of `day`: after every transaction of early_day and after part of `day`'s
    drop(lake, day, "late.csv", HEADER + "".join(f"{r.alert_id},CONFIRM,alice,{day}T12:00:00Z,\n" for r in later.itertuples()))
    assert run(lake, DISPOSITION_ASSETS, day).success
    after_late = features()
    # an outcome counts from its decision time on, to the second: no transaction before noon changes
    noon = pd.Timestamp(f"{day} 12:00:00", tz="UTC")
    before = pd.to_datetime(baseline.event_time, utc=True) < noon
    assert before.sum() > 100
    pd.testing.assert_frame_equal(baseline[before][list(MODEL_FEATURES)], after_late[before][list(MODEL_FEATURES)])
    # the label itself counts from its decision time on: training with an earlier cut-off does not see it
    labels = labels_as_of(spark, make_resources(lake)["lake"]).where(F.col("transaction_id").isin(*later.transaction_id)).toPandas()
    assert (labels.label == 1).all() and len(labels) == len(later) and (labels.label_decision_time == pd.Timestamp(f"{day} 12:00:00")).all()
    assert labels_as_of(spark, make_resources(lake)["lake"], dt.datetime.fromisoformat(f"{day}T12:00:00")).where(F.col("transaction_id").isin(*later.transaction_id)).count() == 0

    # control: the same kind of decision dated before `day` does change the merchants' features of `day`
    drop(lake, early_day, "early.csv", HEADER + "".join(f"{r.alert_id},CONFIRM,alice,{early_day}T23:59:59Z,\n" for r in earlier.itertuples()))
    assert run(lake, DISPOSITION_ASSETS, early_day).success
    after_early = features()
    merchants = set(earlier.merchant_id)
    # against the features after the noon confirmations (which change later transactions of their own merchants); null = null
    now, before_early = after_early[list(MERCHANT_FEATURES)], after_late[list(MERCHANT_FEATURES)]
    changed = ((now != before_early) & ~(now.isna() & before_early.isna())).any(axis=1)
    assert changed.any() and set(after_early[changed].merchant_id) <= merchants


def test_the_cli_drops_decisions_for_the_asset_and_shows_an_alerts_history(lake, monkeypatch, capsys):
    monkeypatch.setenv("FILE_DROPS_ROOT", str(lake / "drops"))
    monkeypatch.setenv("LAKE_ROOT", str(lake))
    alert = read_delta(lake, "anomaly_alerts").sort_values("alert_id").iloc[5]
    assert cli(["decide", alert.alert_id, "--decision", "dismiss", "--investigator", "dana", "--decided-at", "2026-04-06T08:00:00Z", "--day", FIRST]) == 0
    assert cli(["decide", alert.alert_id, "--decision", "confirm", "--investigator", "erik", "--decided-at", "2026-04-06T09:00:00Z", "--note", "SAR filed", "--day", FIRST]) == 0
    # refused at the command line: not RFC 3339 (nothing is written)
    assert cli(["decide", alert.alert_id, "--decision", "confirm", "--investigator", "erik", "--decided-at", "yesterday", "--day", FIRST]) == 2
    assert "INVALID_TIMESTAMP" in capsys.readouterr().err
    bad = lake / "bad.csv"
    bad.write_text(HEADER + f"{alert.alert_id},MAYBE,erik,2026-04-06T09:00:00Z,\n")
    assert cli(["submit", str(bad), "--strict", "--day", FIRST]) == 2
    assert len(list((lake / "drops" / "dispositions" / FIRST).iterdir())) == 2
    assert run(lake, DISPOSITION_ASSETS, FIRST).success
    capsys.readouterr()
    assert cli(["history", alert.alert_id]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["DISMISS", "CONFIRM"]
    assert "superseded" in lines[0] and "current" in lines[1] and "SAR filed" in lines[1]
