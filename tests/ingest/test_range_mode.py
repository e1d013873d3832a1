"""A range of delivery days validated in one pass gives exactly the rows of runs of its days one by one.

On tiny frames: the range's behaviour features equal those of each day's own features over what that
day's run reads, with late records reaching back into earlier days and history older than a later day
reads. Through Dagster: silver (features included), the DLQ and dq_results of a range run equal those
of day runs, with late arrivals, a transaction delivered again on a later day and a day without its KYC
and FX files (served by the snapshots before it). Materialising one day of a range again:
tests/ingest/test_daily_ingest.py.
"""

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from compliance_assets.ingest.bronze import transactions_bronze
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.transforms.features import HISTORY_SCHEMA
from compliance_assets.ingest.reference_data import reference_assets
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.features import HISTORY_DAYS, behaviour_features
from compliance_assets.transforms.pipeline import DEFAULT_LATENESS_DAYS, CheckedBatch, window_features
from tests.conftest import make_resources
from tests.helpers import read_delta, stable_rows

SPAN = DEFAULT_LATENESS_DAYS + HISTORY_DAYS  # the event dates a day's own run reads back
OLD = dt.date(2026, 1, 1)
D1, D2, D3 = (OLD + dt.timedelta(days=SPAN + i) for i in range(3))  # D1 still reads OLD's rows, D2 and D3 no longer do
CURRENT = "transaction_id string, account_id string, event_time timestamp, event_date date, ingest_date date, amount_base decimal(18,2), latitude double, longitude double, delivery_latitude double, delivery_longitude double"


def txn(tid: str, account: str, day: dt.date, hour: int, delivered: dt.date, located: bool = True) -> tuple:
    at = dt.datetime.combine(day, dt.time(hour))
    lat, lon = (48.0 + hour / 10, 11.0 + hour / 10) if located else (None, None)
    return (tid, account, at, day, delivered, Decimal(f"{10 + hour}.50"), lat, lon, lat, lon)


HISTORY = [
    txn("A0", "A", OLD, 10, OLD),  # A's only earlier row: D2 no longer reads it
    txn("C0", "C", OLD, 9, OLD), txn("C1", "C", OLD + dt.timedelta(days=20), 12, OLD + dt.timedelta(days=20), located=False),
    txn("E0", "E", OLD, 10, OLD), txn("E1", "E", OLD + dt.timedelta(days=5), 9, OLD + dt.timedelta(days=5), located=False),
]
ROWS = [
    txn("A1", "A", D2, 8, D2, located=False), txn("A2", "A", D2, 9, D2),
    # B: a late record delivered on D3 comes before the rows B delivered on D1 and D2
    txn("B1", "B", D1, 10, D1), txn("B2", "B", D2, 11, D2), txn("B3", "B", D1, 9, D3), txn("B4", "B", D3, 12, D3),
    txn("C2", "C", D1, 8, D1), txn("C3", "C", D2, 7, D2, located=False),
    # E: on D2 the previous transaction (E1) is read, the previous located one (E0) no longer is
    txn("E2", "E", D2, 10, D2), txn("E3", "E", D2, 11, D2, located=False),
]


def test_range_features_equal_each_days_own_features(spark):
    current = spark.createDataFrame(ROWS, CURRENT)
    history = spark.createDataFrame([r[:5] + r[5:8] for r in HISTORY], HISTORY_SCHEMA)  # silver rows delivered before D1
    every = current.select(*HISTORY_SCHEMA.fieldNames()).unionByName(history)
    expected = None
    for day in (D1, D2, D3):
        # what a run of `day` alone reads: the rows delivered before it, from the event dates of its history window
        read = every.where((every.ingest_date < day) & (every.event_date >= day - dt.timedelta(days=SPAN)))
        features = behaviour_features(current.where(current.ingest_date == day), read)
        expected = features if expected is None else expected.unionByName(features)
    batch = CheckedBatch(current, [], str(D1), DEFAULT_LATENESS_DAYS, str(D3))

    def table(frame) -> pd.DataFrame:
        return frame.toPandas()[sorted(frame.columns)].sort_values("transaction_id").reset_index(drop=True)

    want = table(expected)
    pd.testing.assert_frame_equal(table(window_features(current, history, batch)), want, check_exact=True)
    # the cases above are what a plain pass over the range gets wrong
    plain = table(behaviour_features(current, history))
    differs = [t for t, a, b in zip(want["transaction_id"], want.fillna(-1).to_dict("records"), plain.fillna(-1).to_dict("records")) if a != b]
    assert {"A1", "A2", "B1", "B2", "E2"} <= set(differs), differs


# sparse accounts (most skip days) and many late arrivals, duplicates and rejects
CONFIG = SynthConfig(
    seed=31, events_per_day=240, n_accounts=300, n_merchants=100, late_arrival=0.05, duplicate=0.02, rows_per_file=120,
    malformed_json=0.01, missing_required=0.01, unknown_currency=0.01,
)
FIRST, LAST = "2026-03-10", "2026-03-11"
RANGE_TAGS = {"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST}
VOLATILE = {"processed_at", "rejected_at", "dagster_run_id"}


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
    """(day-by-day lake, range lake, the redelivered transaction id): the same reference data and bronze
    (one run), then silver day by day in one lake and in one run in the other."""
    by_day = tmp_path_factory.mktemp("by_day")
    landing = by_day / "landing"
    for day in (FIRST, LAST):
        generate_day(CONFIG, landing, dt.date.fromisoformat(day))
    redelivered = redeliver_a_late_record(landing, FIRST, LAST)
    for table in ("kyc_profiles", "fx_rates"):  # LAST is served by FIRST's snapshots
        (landing / "reference" / table / f"{LAST}.csv").unlink()
    run(by_day, [*reference_assets, transactions_bronze], tags=RANGE_TAGS)
    in_range = tmp_path_factory.mktemp("in_range") / "lake"
    shutil.copytree(by_day, in_range)
    for day in (FIRST, LAST):
        run(by_day, [validate_transactions], partition_key=day)
    run(in_range, [validate_transactions], tags=RANGE_TAGS)
    return by_day, in_range, redelivered


def tables(lake: Path) -> dict[str, pd.DataFrame]:
    def rows(table: str, key: list[str]) -> pd.DataFrame:
        df = read_delta(lake, table)
        return stable_rows(df.drop(columns=[c for c in df.columns if c in VOLATILE]), key)

    return {
        "transactions_silver": rows("transactions_silver", ["ingest_id"]),
        "transactions_dlq": rows("transactions_dlq", ["ingest_id"]),
        "dq_results": rows("dq_results", ["event_date", "rule_id"]),
    }


def test_a_range_in_one_run_equals_its_days_run_one_by_one(lakes):
    by_day, in_range, _ = lakes
    expected, got = tables(by_day), tables(in_range)
    assert len(expected["transactions_silver"]) > 400 and len(expected["transactions_dlq"]) > 0
    for table in expected:
        pd.testing.assert_frame_equal(got[table], expected[table], obj=table, check_exact=True)


def test_the_data_holds_what_makes_a_range_differ_from_its_days(lakes):
    """Each case fails the equality above when the range pass ignores it."""
    by_day, _, redelivered = lakes
    silver = read_delta(by_day, "transactions_silver")
    silver["ingest"] = silver["ingest_date"].astype(str)
    # late arrivals delivered on the last day, before rows of their account delivered on the first day in event time
    late = silver[silver["is_late_arrival"] & (silver["ingest"] == LAST)]
    earlier = silver[silver["ingest"] == FIRST].merge(late[["account_id", "event_time"]], on="account_id", suffixes=("", "_late"))
    assert (earlier["event_time"] > earlier["event_time_late"]).any()
    # the redelivered transaction is in silver once, from its first delivery, and counted a duplicate on the last day
    assert silver.loc[silver["transaction_id"] == redelivered, "ingest"].tolist() == [FIRST]
    dq = read_delta(by_day, "dq_results", event_date=LAST).set_index("rule_id")
    assert dq.loc["transaction_id.unique", "failed"] >= 1
    # the last day's KYC is the first day's snapshot (the generator's last_activity_date moves daily)
    kyc = read_delta(by_day, "kyc_profiles")
    assert set(kyc["event_date"].astype(str)) == {FIRST}
    on_last = silver[silver["ingest"] == LAST].merge(kyc[["account_id", "last_activity_date"]], on="account_id", suffixes=("", "_kyc"))
    assert (on_last["last_activity_date"] == on_last["last_activity_date_kyc"]).all()
