"""A range of delivery days validated in one run gives exactly the rows of runs of its days one by one:
silver (behaviour features included), the DLQ and dq_results, with late arrivals that reach back into
earlier days of the range, a transaction delivered again on a later day, a day without its KYC and FX
files (served by the snapshots before it) and history older than a day's own run reads."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, load_asset_checks_from_modules, materialize

from compliance_assets.ingest import checks, silver
from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.reference_data import reference_assets
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.features import HISTORY_DAYS
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS
from tests.conftest import make_resources
from tests.helpers import check_results, read_delta, stable_rows

# sparse accounts (most skip days) and many late arrivals and duplicates
CONFIG = SynthConfig(
    seed=31, events_per_day=240, n_accounts=300, n_merchants=100, late_arrival=0.05, duplicate=0.02, rows_per_file=120,
    malformed_json=0.01, missing_required=0.01, unknown_currency=0.01,
)
SPAN = DEFAULT_LATENESS_DAYS + HISTORY_DAYS  # the event dates a day's own run reads back
OLD = dt.date(2026, 2, 1)
# the range starts SPAN - 1 days after OLD: its first two days still read OLD's rows, its last day no longer does
RANGE = [OLD + dt.timedelta(days=SPAN - 1 + i) for i in range(3)]
FIRST, MIDDLE, LAST = (str(d) for d in RANGE)
RANGE_TAGS = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
VOLATILE = {"processed_at", "rejected_at", "dagster_run_id"}
SILVER_CHECKS = load_asset_checks_from_modules([checks, silver])


def run(lake: Path, assets: list, **kwargs):
    result = materialize(assets, resources=make_resources(lake), instance=DagsterInstance.ephemeral(), raise_on_error=False, **kwargs)
    assert result.success, [e.event_specific_data.error.to_string() for e in result.get_step_failure_events()]
    return result


def redeliver_a_late_record(landing: Path, from_day: str, to_day: str) -> str:
    """Append a late record of `from_day`'s delivery to `to_day`'s (delivered twice); its transaction_id."""
    truth = pd.read_csv(landing / "truth" / f"{from_day}.csv", dtype=str, keep_default_na=False)
    late = truth[truth["defect"] == "late_arrival"].iloc[0]
    line = (landing / "transactions" / late["file"]).read_text().splitlines()[int(late["line"]) - 1]
    assert json.loads(line)["transaction_id"] == late["transaction_id"]
    with open(sorted((landing / "transactions" / f"event_date={to_day}").glob("part-*.jsonl"))[-1], "a") as f:
        f.write(line + "\n")
    return late["transaction_id"]


@pytest.fixture(scope="module")
def lakes(spark, tmp_path_factory):
    """(day-by-day lake, range lake, the redelivered transaction id): the same history (OLD, one run), then
    RANGE's reference data and bronze, then silver day by day in one lake and in one run in the other."""
    by_day = tmp_path_factory.mktemp("by_day")
    landing = by_day / "landing"
    for day in [OLD, *RANGE]:
        generate_day(CONFIG, landing, day)
    redelivered = redeliver_a_late_record(landing, FIRST, LAST)
    for table in ("kyc_profiles", "fx_rates"):  # MIDDLE is served by FIRST's snapshots
        (landing / "reference" / table / f"{MIDDLE}.csv").unlink()
    ingest = [*reference_assets, transactions_bronze]
    run(by_day, [*ingest, validate_transactions], partition_key=str(OLD))
    run(by_day, ingest, tags=RANGE_TAGS)
    in_range = tmp_path_factory.mktemp("in_range") / "lake"
    shutil.copytree(by_day, in_range)
    for day in RANGE:
        run(by_day, [validate_transactions], partition_key=str(day))
    result = run(in_range, [validate_transactions, *SILVER_CHECKS], tags=RANGE_TAGS)
    assert all(check_results(result).values()), check_results(result)
    return by_day, in_range, redelivered


def tables(lake: Path) -> dict[str, pd.DataFrame]:
    def rows(table: str, day_column: str, key: list[str]) -> pd.DataFrame:
        df = read_delta(lake, table)
        df = df[df[day_column].astype(str).isin([FIRST, MIDDLE, LAST])]
        return stable_rows(df.drop(columns=[c for c in df.columns if c in VOLATILE]), key)

    return {
        "transactions_silver": rows("transactions_silver", "ingest_date", ["ingest_id"]),
        "transactions_dlq": rows("transactions_dlq", "event_date", ["ingest_id"]),
        "dq_results": rows("dq_results", "event_date", ["event_date", "rule_id"]),
    }


def test_a_range_in_one_run_equals_its_days_run_one_by_one(lakes):
    by_day, in_range, _ = lakes
    expected, got = tables(by_day), tables(in_range)
    assert len(expected["transactions_silver"]) > 500 and len(expected["transactions_dlq"]) > 0
    for table in expected:
        pd.testing.assert_frame_equal(got[table], expected[table], obj=table, check_exact=True)


def test_the_data_holds_what_makes_a_range_differ_from_its_days(lakes):
    """Each case fails the equality above when the range pass ignores it."""
    by_day, _, redelivered = lakes
    silver = read_delta(by_day, "transactions_silver")
    silver["ingest"], silver["event"] = silver["ingest_date"].astype(str), silver["event_date"].astype(str)
    in_range = silver[silver["ingest"] >= FIRST]
    # late arrivals delivered on a later day of the range, before earlier-delivered rows of their account in event time
    late = in_range[in_range["is_late_arrival"] & (in_range["ingest"] > FIRST)]
    earlier = in_range.merge(late[["account_id", "event_time", "ingest"]], on="account_id", suffixes=("", "_late"))
    assert ((earlier["ingest"] < earlier["ingest_late"]) & (earlier["event_time"] > earlier["event_time_late"])).any()
    # the redelivered transaction is in silver once, from its first delivery, and counted a duplicate on the last day
    assert silver.loc[silver["transaction_id"] == redelivered, "ingest"].tolist() == [FIRST]
    dq = read_delta(by_day, "dq_results", event_date=LAST).set_index("rule_id")
    assert dq.loc["transaction_id.unique", "failed"] >= 1
    # rows of the last day whose account was last seen on OLD: their own run no longer reads OLD, so no previous transaction
    old_accounts = set(silver.loc[silver["ingest"] == str(OLD), "account_id"])
    last_day = silver[silver["ingest"] == LAST]
    first_seen = last_day.sort_values("event_time").groupby("account_id").head(1)
    quiet = first_seen[first_seen["account_id"].isin(old_accounts) & ~first_seen["account_id"].isin(silver.loc[(silver["ingest"] > str(OLD)) & (silver["ingest"] < LAST), "account_id"])]
    assert len(quiet) > 0 and quiet["seconds_since_prev_txn"].isna().all()
    # ... while the middle day still reads OLD's rows (the boundary day of its window)
    middle = silver[silver["ingest"] == MIDDLE].sort_values("event_time").groupby("account_id").head(1)
    middle = middle[middle["account_id"].isin(old_accounts) & ~middle["account_id"].isin(silver.loc[silver["ingest"] == FIRST, "account_id"])]
    assert middle["seconds_since_prev_txn"].notna().any()


def test_rematerialising_one_day_of_a_range_changes_nothing(lakes):
    _, in_range, _ = lakes
    before = tables(in_range)
    run(in_range, [validate_transactions], partition_key=MIDDLE)
    after = tables(in_range)
    for table in before:
        pd.testing.assert_frame_equal(after[table], before[table], obj=table, check_exact=True)
