"""transaction_outcomes: a day's confirmed labels land in Delta exactly as delivered, idempotently, with
columns matched by header name; a day without a file, or with a header-only one, is an empty partition
(the table's first write too); a malformed file fails with a clear message that quotes no row."""

import datetime as dt

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from compliance_assets.ml.outcomes import outcome_checks, transaction_outcomes
from compliance_assets.synthetic import SynthConfig, generate_day
from tests.conftest import make_resources
from tests.helpers import check_results, read_delta, stable_rows
from catalog import OUTCOMES

DAY, EMPTY_DAY = "2026-03-02", "2026-03-03"


def run(lake, day, instance=None):
    return materialize(
        [transaction_outcomes, *outcome_checks], partition_key=day, resources=make_resources(lake),
        instance=instance or DagsterInstance.ephemeral(), raise_on_error=False,
    )


def row_count(result) -> int:
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata["dagster/row_count"].value


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    generate_day(SynthConfig(seed=5, events_per_day=3000), root / "landing", dt.date.fromisoformat(DAY))
    return root


def test_outcomes_land_as_delivered_and_rematerialise_identically(lake):
    first = run(lake, DAY)
    assert first.success
    assert all(check_results(first).values()) and len(check_results(first)) == 2
    delivered = pd.read_csv(lake / "landing" / "outcomes" / f"{DAY}.csv", dtype=str)
    written = read_delta(lake, OUTCOMES, event_date=DAY)
    assert len(written) == len(delivered) > 0
    assert set(written["label"].unique()) <= {0, 1} and written["label"].sum() > 0
    merged = delivered.merge(written, on="transaction_id", suffixes=("_csv", ""))
    assert len(merged) == len(delivered)
    assert (merged["label_csv"].astype(int) == merged["label"]).all()
    assert (pd.to_datetime(merged["decision_time"], utc=True) == pd.to_datetime(merged["decision_time_csv"], utc=True)).all()

    assert run(lake, DAY).success
    assert stable_rows(read_delta(lake, OUTCOMES, event_date=DAY), "transaction_id").equals(stable_rows(written, "transaction_id"))


def test_a_day_without_a_file_is_empty_and_leaves_other_days(lake):
    assert run(lake, DAY).success
    before = read_delta(lake, OUTCOMES, event_date=DAY)
    result = run(lake, EMPTY_DAY)
    assert result.success
    assert len(read_delta(lake, OUTCOMES, event_date=EMPTY_DAY)) == 0
    assert len(read_delta(lake, OUTCOMES, event_date=DAY)) == len(before)


@pytest.mark.parametrize("content", [None, "transaction_id,label,decision_time\n"], ids=["no-file", "header-only"])
def test_an_empty_day_on_a_new_lake_is_an_empty_partition(spark, tmp_path, content):
    if content is not None:
        (tmp_path / "landing" / "outcomes").mkdir(parents=True)
        (tmp_path / "landing" / "outcomes" / f"{EMPTY_DAY}.csv").write_text(content)
    # the table's first write has no rows: Delta records no numOutputRows for it
    result = run(tmp_path, EMPTY_DAY)
    assert result.success
    assert all(check_results(result).values()) and len(check_results(result)) == 2
    assert row_count(result) == 0
    assert len(read_delta(tmp_path, OUTCOMES, event_date=EMPTY_DAY)) == 0
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["days_without_file"].value == (EMPTY_DAY if content is None else "none")


def test_columns_are_matched_by_header_name_and_quoted_fields_read_as_rfc4180(spark, tmp_path):
    landing = tmp_path / "landing" / "outcomes"
    landing.mkdir(parents=True)
    (landing / f"{DAY}.csv").write_text(
        'decision_time,"label",transaction_id\r\n2026-03-02T10:00:00Z,1,"TX,""1"""\r\n"2026-03-03T11:30:00Z",0,TX2\r\n'
    )
    result = run(tmp_path, DAY)
    assert result.success
    written = read_delta(tmp_path, OUTCOMES, event_date=DAY).sort_values("transaction_id")
    assert written["transaction_id"].tolist() == ['TX,"1"', "TX2"]
    assert written["label"].tolist() == [1, 0]
    assert pd.to_datetime(written["decision_time"], utc=True).tolist() == [pd.Timestamp("2026-03-02T10:00:00Z"), pd.Timestamp("2026-03-03T11:30:00Z")]
    assert row_count(result) == 2


def test_a_malformed_file_fails_with_a_clear_message_that_quotes_no_row(spark, tmp_path):
    landing = tmp_path / "landing" / "outcomes"
    landing.mkdir(parents=True)
    (landing / f"{DAY}.csv").write_text("transaction_id,label,decision_time\nTX1,1,2026-03-02T10:00:00Z\nTX2,yes,2026-03-02T11:00:00Z\n")
    instance = DagsterInstance.ephemeral()
    result = run(tmp_path, DAY, instance)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "1 of 2 rows do not match the transaction_outcomes contract" in error
    assert "line 3: label is not a bigint (masked: 'XX9,xxx,9999-99-99X99:99:99X')" in error
    logged = "\n".join(repr(entry) for entry in instance.all_logs(result.run_id))
    assert "TX2" not in logged and ",yes," not in logged
