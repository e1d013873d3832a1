"""Two synthetic delivery days through reference data -> bronze -> silver / DLQ / dq_results on real
Spark + Delta (one run over both days, as a backfill runs them), read back with delta-rs and compared with
the generator's ground truth; then one day materialised again on its own."""

import datetime as dt

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from deltalake import DeltaTable

from compliance_assets.synthetic import SynthConfig, generate_days
from tests.conftest import make_resources
from tests.helpers import INGEST_ASSETS, INGEST_CHECKS, check_results, read_delta, stable_rows

DAY1, DAY2 = "2026-03-01", "2026-03-02"
EXPECTED_REASON = {
    "malformed_json": "MALFORMED_JSON",
    "negative_amount": "NON_POSITIVE_AMOUNT",
    "absurd_amount": "ABSURD_AMOUNT",
    "unknown_currency": "UNKNOWN_CURRENCY",
    "missing_required": "MISSING_REQUIRED_FIELD:{}",
    "wrong_type": "WRONG_TYPE:{}",
}
ALL_TABLES = ["kyc_profiles", "account_limits", "watchlists", "fx_rates", "merchant_profiles",
              "transactions_bronze", "transactions_silver", "transactions_dlq", "dq_results"]


def expected_reason(defect: str) -> str | None:
    kind, _, field = defect.partition(":")
    template = EXPECTED_REASON.get(kind)
    return template.format(field) if template else None


def run_days(lake, first, last=None):
    """One run over days first..last (a single-run backfill's tags), or of day `first` alone."""
    partition = {"tags": {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}} if last else {"partition_key": first}
    return materialize(
        [*INGEST_ASSETS, *INGEST_CHECKS],
        resources=make_resources(lake),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
        **partition,
    )


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    config = SynthConfig(seed=11, events_per_day=3000)
    generate_days(config, root / "landing", [dt.date.fromisoformat(DAY1), dt.date.fromisoformat(DAY2)])
    return root, {f"{DAY1}..{DAY2}": run_days(root, DAY1, DAY2)}


@pytest.fixture(scope="module")
def truth(lake):
    root, _ = lake
    frame = pd.read_csv(root / "landing" / "truth" / f"{DAY2}.csv", dtype=str, keep_default_na=False)
    frame = frame[frame["file"] != ""].copy()  # transactions missing from the stream have no line
    frame["line"] = frame["line"].astype(int)
    return frame


def test_every_asset_materialises_and_its_checks_pass(lake):
    _, results = lake
    for days, result in results.items():
        assert result.success, days
        materialised = {(e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()}
        assert materialised == {(table, day) for table in ALL_TABLES for day in (DAY1, DAY2)}
        checks = check_results(result)
        assert len(checks) == sum(len(c.check_keys) for c in INGEST_CHECKS)
        assert all(checks.values()), {k: v for k, v in checks.items() if not v}


def test_every_table_is_a_delta_table_partitioned_by_event_date(lake):
    root, _ = lake
    for table in ALL_TABLES:
        dt_ = DeltaTable(f"{root}/tables/{table}")
        assert dt_.metadata().partition_columns == ["event_date"], table
        days = set(read_delta(root, table)["event_date"].astype(str))
        assert DAY2 in days, table


def test_bronze_holds_every_delivered_line(lake, truth):
    root, _ = lake
    bronze = read_delta(root, "transactions_bronze", event_date=DAY2)
    assert len(bronze) == len(truth)
    got = set(zip(bronze["source_file"].str.split("/").str[-1], bronze["source_line"]))
    assert got == set(zip(truth["file"].str.split("/").str[-1], truth["line"]))


def test_each_bad_record_lands_in_the_dlq_with_its_reason_code(lake, truth):
    root, _ = lake
    dlq = read_delta(root, "transactions_dlq", event_date=DAY2)
    dlq["file"] = dlq["source_file"].str.split("/").str[-1]
    truth = truth.assign(file=truth["file"].str.split("/").str[-1], expected=truth["defect"].map(expected_reason))
    merged = truth.merge(dlq, left_on=["file", "line"], right_on=["file", "source_line"], how="outer", indicator=True)
    should_reject = merged["expected"].notna()
    # every rejected-kind defect is in the DLQ with exactly its reason code ...
    rejected = merged[should_reject]
    assert len(rejected) > 0 and (rejected["_merge"] == "both").all()
    assert [list(codes) for codes in rejected["reason_codes"]] == [[code] for code in rejected["expected"]]
    # ... and nothing else is
    assert (merged.loc[~should_reject, "_merge"] == "left_only").all()
    kinds = {d.split(":")[0] for d in truth["defect"] if expected_reason(d)}
    assert kinds == set(EXPECTED_REASON), "the generator should emit every rejectable defect kind"


def test_counts_are_conserved_and_duplicates_dropped_once(lake, truth):
    root, _ = lake
    bronze = read_delta(root, "transactions_bronze", event_date=DAY2)
    silver = read_delta(root, "transactions_silver", ingest_date=DAY2)
    dlq = read_delta(root, "transactions_dlq", event_date=DAY2)
    dq = read_delta(root, "dq_results", event_date=DAY2)
    duplicates = int(dq.loc[dq["rule_id"] == "transaction_id.unique", "failed"].sum())
    assert duplicates == (truth["defect"] == "duplicate").sum() > 0
    assert len(bronze) == len(silver) + len(dlq) + duplicates
    assert silver["transaction_id"].is_unique
    clean_ids = set(truth.loc[truth["defect"].isin(["", "late_arrival"]), "transaction_id"])
    assert set(silver["transaction_id"]) == clean_ids


def test_dq_results_report_each_rule_with_pass_rate_and_severity(lake, truth):
    root, _ = lake
    dq = read_delta(root, "dq_results", event_date=DAY2).set_index("reason_code")
    assert {"checked", "failed", "pass_rate", "severity"} <= set(dq.columns)
    assert dq.loc["MALFORMED_JSON", "failed"] == truth["defect"].eq("malformed_json").sum()
    assert dq.loc["MALFORMED_JSON", "checked"] == len(truth)
    assert dq.loc["UNKNOWN_CURRENCY", "severity"] == "critical"
    row = dq.loc["NON_POSITIVE_AMOUNT"]
    assert row["pass_rate"] == pytest.approx(1 - row["failed"] / row["checked"])


def test_late_arrivals_land_in_their_own_event_date(lake, truth):
    root, _ = lake
    late_ids = set(truth.loc[truth["defect"] == "late_arrival", "transaction_id"])
    assert late_ids
    silver = read_delta(root, "transactions_silver", ingest_date=DAY2)
    late = silver[silver["transaction_id"].isin(late_ids)]
    assert len(late) == len(late_ids)
    assert (late["event_date"].astype(str) < DAY2).all() and late["is_late_arrival"].all()
    assert not silver.loc[~silver["transaction_id"].isin(late_ids), "is_late_arrival"].any()


def test_silver_is_enriched_fx_normalised_and_masked(lake, truth):
    root, _ = lake
    silver = read_delta(root, "transactions_silver", ingest_date=DAY2)
    assert (silver["base_currency"] == "EUR").all()
    eur = silver[silver["currency"] == "EUR"]
    assert (eur["amount_base"] == eur["amount"]).all()
    foreign = silver[silver["currency"] != "EUR"]
    assert len(foreign) and foreign["fx_rate_to_base"].notna().all()
    assert ((foreign["amount"].astype(float) * foreign["fx_rate_to_base"]).round(2) - foreign["amount_base"].astype(float)).abs().max() < 0.011
    assert silver["home_country"].notna().all() and silver["reporting_threshold"].notna().all()
    # PII: names and free text never reach silver in clear
    raw = read_delta(root, "transactions_bronze", event_date=DAY2)["payload"].str.cat(sep="\n")
    for column in ("description", "counterparty_name"):
        values = silver[column].dropna()
        assert len(values) and values.str.startswith("pii_").all()
        assert not any(v in raw for v in values.head(50))


def test_behaviour_features_expose_the_labelled_scenarios(lake, truth):
    root, _ = lake
    silver = read_delta(root, "transactions_silver", ingest_date=DAY2).merge(truth[["transaction_id", "scenario"]].drop_duplicates("transaction_id"), on="transaction_id")
    by = silver.groupby("scenario")
    assert (silver["txn_count_1h"] <= silver["txn_count_24h"]).all()
    assert (silver["txn_count_24h"] <= silver["txn_count_7d"]).all() and (silver["txn_count_7d"] <= silver["txn_count_30d"]).all()
    # history from the previous day is used: some accounts have 30-day counts beyond today's rows
    today_counts = silver.groupby("account_id").size()
    assert (silver.set_index("account_id")["txn_count_30d"] > today_counts.reindex(silver["account_id"]).values).any()
    assert by.get_group("impossible_travel")["travel_speed_kmh"].max() > 1000
    assert by.get_group("amount_spike")["amount_to_typical"].astype(float).min() >= 10
    assert by.get_group("watchlisted_counterparty")["watchlist_hit"].all()
    assert not by.get_group("")["watchlist_hit"].any()
    assert by.get_group("structuring")["just_below_reporting_threshold"].all()
    assert by.get_group("velocity_burst")["txn_count_1h"].max() >= 8
    assert by.get_group("")["amount_to_typical"].astype(float).median() < 3


def test_rematerialising_a_partition_is_idempotent_and_leaves_others_untouched(lake):
    root, _ = lake
    keys = {"transactions_bronze": "ingest_id", "transactions_silver": "transaction_id", "transactions_dlq": "ingest_id",
            "dq_results": "rule_id", "kyc_profiles": "account_id", "fx_rates": "currency"}
    day_column = {"transactions_silver": "ingest_date"}

    def snapshot(day):
        return {t: stable_rows(read_delta(root, t, **{day_column.get(t, "event_date"): day}), k) for t, k in keys.items()}

    def day1_files():
        return {t: sorted(f for f in DeltaTable(f"{root}/tables/{t}").file_uris() if f"event_date={DAY1}" in f) for t in keys if t != "transactions_silver"}

    before2, before1, files1 = snapshot(DAY2), snapshot(DAY1), day1_files()
    assert run_days(root, DAY2).success
    after2, after1 = snapshot(DAY2), snapshot(DAY1)
    for table in keys:
        pd.testing.assert_frame_equal(before2[table], after2[table], obj=f"{table} {DAY2}")
        pd.testing.assert_frame_equal(before1[table], after1[table], obj=f"{table} {DAY1}")
    assert day1_files() == files1
