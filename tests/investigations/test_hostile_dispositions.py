"""Hostile and broken decision input: one bad record or one unreadable file never fails a day of dispositions;
each ends in alert_dispositions_dlq (a broken file as one masked UNREADABLE_FILE row) while the day's valid
decisions are recorded; ids cannot collide; the CLI refuses a receipt day no run reads; an empty delivery is an
empty day."""

import datetime as dt
import hashlib
import json

import pytest
from dagster import DagsterInstance, materialize
from pyspark.sql import Row

from compliance_assets.investigations.dispositions_cli import main as cli
from compliance_assets.investigations.decision_files import Decision, check_file, check_record
from compliance_assets.investigations.labels import SCHEMA
from resources.masking import masked_excerpt
from tests.conftest import make_resources
from tests.helpers import check_results, read_delta
from tests.investigations.test_dispositions import DISPOSITION_ASSETS, FIRST, HEADER, SECOND, drop, run

SECRET = "Secretname"  # stands for a name, account or note that must not leak from a file that cannot be parsed
ALERT = "ALR-0123456789abcdef01234567"
DEEP_JSON = '{"investigator": "' + SECRET + '", "note": ' + "[" * 100_000 + "]" * 100_000 + "}"
HUGE_CSV = HEADER + f"{ALERT},CONFIRM,alice,2026-04-06T10:00:00Z,{SECRET} " + "x" * 131_073 + "\n"
# two different decisions whose fields joined with "|" were one string, so one hash, under the old ids
COLLIDING = [
    {"decision": "CONFIRM", "investigator": "alice", "decided_at": "2026-04-06T10:00:00Z", "note": "2026-04-06T11:00:00+00:00|ok"},
    {"decision": "CONFIRM", "investigator": "alice|2026-04-06T10:00:00+00:00", "decided_at": "2026-04-06T11:00:00Z", "note": "ok"},
]


def legacy_id(d: Decision) -> str:
    """The id before issue 20: the fields joined with "|"."""
    key = "|".join([d.alert_id, d.decision, d.investigator, d.decided_at.isoformat(), d.note or ""])
    return "DSP-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def decision(alert_id: str, **fields) -> Decision:
    out = check_record({"alert_id": alert_id, **fields}, "t.json", 1)
    assert isinstance(out, Decision), out
    return out


@pytest.mark.parametrize(
    "name, data, detail",
    [
        ("deep.json", DEEP_JSON.encode(), "nested too deeply"),
        ("huge.csv", HUGE_CSV.encode(), "field larger than field limit (131072)"),
        ("latin1.csv", (HEADER + f"{ALERT},CONFIRM,{SECRET} Müller,2026-04-06T10:00:00Z,\n").encode("latin-1"), "not UTF-8"),
        ("broken.json", f'[{{"investigator": "{SECRET}", '.encode(), "invalid JSON"),
        ("bigint.json", (f'[{{"investigator": "{SECRET}", "note": ' + "7" * 5000 + "}]").encode(), "invalid JSON"),
    ],
)
def test_a_file_that_cannot_be_parsed_is_one_masked_unreadable_file_record(name, data, detail):
    decisions, rejected, read = check_file(name, data)
    assert decisions == [] and read == 1 and len(rejected) == 1
    r = rejected[0]
    assert r.reason_codes == ("UNREADABLE_FILE",) and r.source_row is None and detail in r.detail
    assert r.raw == masked_excerpt(data) and len(r.raw) <= 41
    assert SECRET not in r.raw and SECRET not in r.detail and len(r.detail) < 300


def test_a_timestamp_python_cannot_convert_or_a_record_too_deep_to_check_is_a_rejected_record():
    for decided_at in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-04-06T23:59:60Z"):
        out = check_record({"alert_id": ALERT, "decision": "CONFIRM", "investigator": "alice", "decided_at": decided_at}, "t.json", 3)
        assert not isinstance(out, Decision) and out.reason_codes == ("INVALID_TIMESTAMP",) and out.source_row == 3, out
        assert out.alert_id == ALERT and decided_at in out.detail
    # the UTC midnight of year 1 itself converts: a decision (the lake check rejects it as before the transaction)
    assert isinstance(check_record({"alert_id": ALERT, "decision": "CONFIRM", "investigator": "a", "decided_at": "0001-01-01T00:00:00Z"}, "t.json", 1), Decision)
    nested: list = []
    for _ in range(100_000):
        nested = [nested]
    out = check_record({"alert_id": ALERT, "decision": "CONFIRM", "investigator": "alice", "decided_at": "2026-04-06T10:00:00Z", "note": nested}, "t.json", 1)
    assert not isinstance(out, Decision) and out.reason_codes == ("INVALID_TYPE",) and '"note": "<list>"' in out.raw
    # text Spark cannot store (an unpaired surrogate, valid in JSON) is refused, not passed on to crash the write
    unpaired = json.loads('"al\\ud800ice"')
    out = check_record({"alert_id": ALERT, "decision": "CONFIRM", "investigator": unpaired, "decided_at": "2026-04-06T10:00:00Z"}, "t.json", 1)
    assert not isinstance(out, Decision) and out.reason_codes == ("INVALID_FIELD",) and "investigator" in out.detail


def test_disposition_ids_hash_an_unambiguous_encoding():
    a, b = (decision(ALERT, **fields) for fields in COLLIDING)
    assert legacy_id(a) == legacy_id(b)  # the collision this guards against
    assert a.disposition_id != b.disposition_id
    fields = {"alert_id": ALERT, "decided_at": "2026-04-06T10:00:00+00:00", "decision": "CONFIRM", "investigator": "alice", "note": "2026-04-06T11:00:00+00:00|ok"}
    assert a.disposition_id == "DSP-" + hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    # a missing note and no note are one decision; the same decision with an offset is the same decision
    plain = {"decision": "DISMISS", "investigator": "bob", "decided_at": "2026-04-06T12:00:00+02:00"}
    assert decision(ALERT, **plain).disposition_id == decision(ALERT, **plain, note=" ").disposition_id == decision(ALERT, **{**plain, "decided_at": "2026-04-06T10:00:00Z"}).disposition_id


@pytest.mark.parametrize("day", ["2026-12-4", "tomorrow", "2026-02-30", "+2026-04-06", "future"])
def test_the_cli_refuses_a_receipt_day_no_run_reads_and_writes_nothing(day, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FILE_DROPS_ROOT", str(tmp_path / "drops"))
    if day == "future":
        day = (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)).isoformat()
    export = tmp_path / "export.csv"
    export.write_text(HEADER + f"{ALERT},CONFIRM,alice,2026-04-06T10:00:00Z,\n")
    for args in (["decide", ALERT, "--decision", "confirm", "--investigator", "alice"], ["submit", str(export)]):
        with pytest.raises(SystemExit) as exit_:
            cli([*args, "--day", day])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --day" in err and ("YYYY-MM-DD" in err or "calendar date" in err or "in the future" in err), err
    assert not (tmp_path / "drops").exists()
    # control: the same commands with a valid day write one file each into the day's folder
    assert cli(["decide", ALERT, "--decision", "confirm", "--investigator", "alice", "--decided-at", "2026-04-06T10:00:00Z", "--day", FIRST]) == 0
    assert cli(["submit", str(export), "--day", FIRST]) == 0
    assert len(list((tmp_path / "drops" / "dispositions" / FIRST).iterdir())) == 2


def test_bad_records_and_unreadable_files_go_to_the_dlq_while_the_days_valid_decisions_are_recorded(lake, spark):
    alerts = read_delta(lake, "anomaly_alerts").sort_values("alert_id").reset_index(drop=True)
    a, b, c, d, e = (alerts.alert_id[i] for i in range(5))
    drop(lake, FIRST, "valid.csv", HEADER + f"{a},CONFIRM,alice,2026-04-06T09:00:00Z,mule\n{b},DISMISS,bob,2026-04-06T09:05:00Z,\n")
    drop(lake, FIRST, "one_bad_time.json", json.dumps([
        {"alert_id": c, "decision": "ESCALATE", "investigator": "carol", "decided_at": "2026-04-06T09:10:00Z"},
        {"alert_id": c, "decision": "CONFIRM", "investigator": "carol", "decided_at": "0001-01-01T00:00:00+01:00"},
    ]))
    drop(lake, FIRST, "deep.json", DEEP_JSON)
    drop(lake, FIRST, "huge.csv", HUGE_CSV)
    drop(lake, FIRST, "colliding.json", json.dumps([{"alert_id": d, **fields} for fields in COLLIDING]))
    first = run(lake, DISPOSITION_ASSETS, FIRST)
    assert first.success and all(check_results(first).values()), check_results(first)
    meta = first.asset_materializations_for_node("record_alert_dispositions")[0].metadata
    assert meta["files"].value == 5 and meta["records_read"].value == 8 and meta["dagster/row_count"].value == 5 and meta["rejected"].value == 3

    history = read_delta(lake, "alert_dispositions")
    assert sorted(history.alert_id) == sorted([a, b, c, d, d])
    assert sorted(history[history.alert_id == d].investigator) == ["alice", "alice|2026-04-06T10:00:00+00:00"]
    assert history.disposition_id.str.fullmatch("DSP-[0-9a-f]{64}").all() and history.disposition_id.is_unique
    dlq = read_delta(lake, "alert_dispositions_dlq").sort_values("source_file").reset_index(drop=True)
    assert [(f.split("/")[-1], list(codes)) for f, codes in zip(dlq.source_file, dlq.reason_codes)] == [
        ("deep.json", ["UNREADABLE_FILE"]), ("huge.csv", ["UNREADABLE_FILE"]), ("one_bad_time.json", ["INVALID_TIMESTAMP"]),
    ]
    assert dlq.source_row.isna().tolist() == [True, True, False] and dlq.alert_id[2] == c
    unreadable = dlq[dlq.source_row.isna()]
    assert (unreadable.raw.str.len() <= 41).all() and not unreadable.raw.str.contains(SECRET).any()
    assert not unreadable.reason_detail.str.contains(SECRET).any() and (unreadable.reason_detail.str.len() < 300).all()

    # a decision recorded under the old "|"-joined id is not recorded again under the new one
    legacy = decision(e, decision="DISMISS", investigator="dana", decided_at="2026-04-06T09:30:00Z", note="payroll")
    transaction_id, event_time = alerts.loc[alerts.alert_id == e, ["transaction_id", "event_time"]].iloc[0]
    old_row = Row(
        disposition_id=legacy_id(legacy), alert_id=e, transaction_id=transaction_id, event_time=event_time.to_pydatetime(),
        decision="DISMISS", investigator="dana", decided_at=legacy.decided_at, note="payroll", source_file="old.csv", source_row=1,
        received_day=dt.date.fromisoformat(FIRST), recorded_at=dt.datetime(2026, 4, 6, 12), dagster_run_id="before-issue-20",
    )
    spark.createDataFrame([old_row], SCHEMA).write.format("delta").mode("append").save(str(lake / "tables" / "alert_dispositions"))
    drop(lake, SECOND, "resubmitted.csv", HEADER + f"{e},dismiss,dana,2026-04-06T11:30:00+02:00,payroll\n{e},CONFIRM,dana,2026-04-08T08:00:00Z,\n")
    second = run(lake, DISPOSITION_ASSETS, SECOND)
    assert second.success and all(check_results(second).values()), check_results(second)
    meta = second.asset_materializations_for_node("record_alert_dispositions")[0].metadata
    assert meta["already_recorded"].value == 1 and meta["dagster/row_count"].value == 1
    assert sorted(read_delta(lake, "alert_dispositions", alert_id=e).decision) == ["CONFIRM", "DISMISS"]

    # re-materialising the hostile day adds nothing and keeps its DLQ rows
    again = run(lake, DISPOSITION_ASSETS, FIRST)
    assert again.success and all(check_results(again).values())
    assert len(read_delta(lake, "alert_dispositions")) == 5 + 1 + 1 and len(read_delta(lake, "alert_dispositions_dlq")) == 3


def test_an_empty_delivery_or_a_day_without_a_folder_is_an_empty_day(tmp_path, spark):
    lake = tmp_path / "lake"  # no alerts needed: nothing is decided
    drop(lake, FIRST, "header_only.csv", HEADER)
    drop(lake, FIRST, "empty.json", "[]")
    drop(lake, FIRST, "wrapped.json", '{"dispositions": []}')
    for day, files in ((FIRST, 3), (SECOND, 0)):  # the first write creates the (empty) tables, the second appends to them
        result = materialize(DISPOSITION_ASSETS, partition_key=day, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), raise_on_error=False)
        assert result.success and all(check_results(result).values()), check_results(result)
        assert len(check_results(result)) == 2
        meta = {e.materialization.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
        assert meta["alert_dispositions"]["files"].value == files and meta["alert_dispositions"]["records_read"].value == 0
        assert meta["alert_dispositions"]["dagster/row_count"].value == 0 and meta["alert_dispositions_dlq"]["dagster/row_count"].value == 0
    assert len(read_delta(lake, "alert_dispositions")) == 0 and len(read_delta(lake, "alert_dispositions_dlq")) == 0
