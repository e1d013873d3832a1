"""transaction_outcomes: a day's confirmed labels land in Delta exactly as delivered, idempotently;
a day without a file is empty; a malformed file fails with a clear message."""

import datetime as dt

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from compliance_assets.ml.outcomes import TABLE, outcome_checks, transaction_outcomes
from compliance_assets.synthetic import SynthConfig, generate_day
from tests.conftest import make_resources
from tests.helpers import check_results, read_delta, stable_rows

DAY, EMPTY_DAY = "2026-03-02", "2026-03-03"


def run(lake, day):
    return materialize(
        [transaction_outcomes, *outcome_checks], partition_key=day, resources=make_resources(lake),
        instance=DagsterInstance.ephemeral(), raise_on_error=False,
    )


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
    written = read_delta(lake, TABLE, event_date=DAY)
    assert len(written) == len(delivered) > 0
    assert set(written["label"].unique()) <= {0, 1} and written["label"].sum() > 0
    merged = delivered.merge(written, on="transaction_id", suffixes=("_csv", ""))
    assert len(merged) == len(delivered)
    assert (merged["label_csv"].astype(int) == merged["label"]).all()
    assert (pd.to_datetime(merged["decision_time"], utc=True) == pd.to_datetime(merged["decision_time_csv"], utc=True)).all()

    assert run(lake, DAY).success
    assert stable_rows(read_delta(lake, TABLE, event_date=DAY), "transaction_id").equals(stable_rows(written, "transaction_id"))


def test_a_day_without_a_file_is_empty_and_leaves_other_days(lake):
    assert run(lake, DAY).success
    before = read_delta(lake, TABLE, event_date=DAY)
    result = run(lake, EMPTY_DAY)
    assert result.success
    assert len(read_delta(lake, TABLE, event_date=EMPTY_DAY)) == 0
    assert len(read_delta(lake, TABLE, event_date=DAY)) == len(before)


def test_a_malformed_file_fails_with_a_clear_message(lake, tmp_path):
    landing = tmp_path / "landing" / "outcomes"
    landing.mkdir(parents=True)
    (landing / f"{DAY}.csv").write_text("transaction_id,label,decision_time\nTX1,1,2026-03-02T10:00:00Z\nTX2,yes,2026-03-02T11:00:00Z\n")
    result = run(tmp_path, DAY)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "1 rows do not match the transaction_outcomes contract" in error and "TX2,yes" in error
