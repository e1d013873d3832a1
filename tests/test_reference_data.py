"""Reference-data files: RFC 4180 CSV with columns matched by header name, errors that name columns and
lines but never quote a row, an empty partition for a header-only file, snapshots loaded for the days that
have a file (each day served by the newest one on or before it), and contract checks that stop the
assets reading the table in the same run."""

import csv
import datetime as dt

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from compliance_assets.ingest.reference_data import LOOKBACK_DAYS, build_reference_checks, reference_assets, reference_checks, serving_snapshots
from compliance_assets.synthetic import SynthConfig, generate_day
from contracts import load_contract
from tests.conftest import make_resources
from tests.helpers import INGEST_ASSETS, check_results, read_delta

DAY = "2026-05-04"
ASSETS = {a.key.to_user_string(): a for a in reference_assets}
KYC_COLUMNS = list(load_contract("kyc_profiles")["properties"])
WATCHLIST_COLUMNS = list(load_contract("watchlists")["properties"])
# names with a comma and quotes, quotes without a comma (stored with its quotes before), a line break, non-ASCII
KYC_ROWS = [
    ["ACC00000001", 'Smith, "Bob" Jr.', "DE", "52.52", "13.405", "LOW", "true", "RETAIL", "120.5", "2020-01-01", ""],
    ["ACC00000002", 'Ann "Nan" Lee', "FR", "48.8566", "2.3522", "HIGH", "false", "SME", "99", "2021-02-03", "2026-05-01"],
    ["ACC00000003", "Line\nbreak Ltd", "NL", "-1.5", "-170.25", "MEDIUM", "true", "CORPORATE", "1000", "2019-05-06", ""],
    ["ACC00000004", "Zoë Ångström, \"Zed\"", "SE", "59.3293", "18.0686", "LOW", "false", "RETAIL", "45.25", "2018-07-08", "2026-04-30"],
]
EXPECTED_KYC = {
    "account_id": ["ACC00000001", "ACC00000002", "ACC00000003", "ACC00000004"],
    "customer_name": ['Smith, "Bob" Jr.', 'Ann "Nan" Lee', "Line\nbreak Ltd", 'Zoë Ångström, "Zed"'],
    "home_country": ["DE", "FR", "NL", "SE"],
    "home_latitude": [52.52, 48.8566, -1.5, 59.3293],
    "home_longitude": [13.405, 2.3522, -170.25, 18.0686],
    "risk_rating": ["LOW", "HIGH", "MEDIUM", "LOW"],
    "pep_flag": [True, False, True, False],
    "segment": ["RETAIL", "SME", "CORPORATE", "RETAIL"],
    "typical_amount": [120.5, 99.0, 1000.0, 45.25],
    "account_opened_date": [dt.date(2020, 1, 1), dt.date(2021, 2, 3), dt.date(2019, 5, 6), dt.date(2018, 7, 8)],
    "last_activity_date": [None, dt.date(2026, 5, 1), None, dt.date(2026, 4, 30)],
}
SWAPPED = [{"home_latitude": "home_longitude", "home_longitude": "home_latitude"}.get(c, c) for c in KYC_COLUMNS]


def write_csv(path, columns, rows, contract_columns=KYC_COLUMNS):
    """A CSV file as Python's csv module writes it (RFC 4180 quoting, CRLF line ends) with the header
    `columns`; `rows` are in `contract_columns` order (a column outside it gets "x")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[dict(zip(contract_columns, row)).get(c, "x") for c in columns] for row in rows])


def reference_file(lake, table, day=DAY):
    return lake / "landing" / "reference" / table / f"{day}.csv"


def run(lake, table, day=DAY):
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [ASSETS[table], *build_reference_checks(table)], partition_key=day, resources=make_resources(lake),
        instance=instance, raise_on_error=False,
    )
    return result, instance


def run_range(lake, table, first, last):
    """One run over days first..last (a single-run backfill's tags)."""
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [ASSETS[table], *build_reference_checks(table)], resources=make_resources(lake), instance=instance, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    return result, instance


def failure_text(result) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.get_step_failure_events())


def everything_logged(result, instance) -> str:
    """Every event and log message the run stored (what the UI and the event log show)."""
    return "\n".join(repr(entry) for entry in instance.all_logs(result.run_id))


def materialization_metadata(result, table) -> dict:
    """The metadata of the run's materialisation (a range run records one event per day, all alike)."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(table)]
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


@pytest.mark.parametrize("columns", [KYC_COLUMNS, SWAPPED, list(reversed(KYC_COLUMNS))], ids=["contract-order", "lat-lon-swapped", "reversed"])
def test_an_rfc4180_file_loads_every_value_exactly_into_its_own_column(spark, tmp_path, columns):
    write_csv(reference_file(tmp_path, "kyc_profiles"), columns, KYC_ROWS)
    result, _ = run(tmp_path, "kyc_profiles")
    assert result.success, failure_text(result)
    assert check_results(result) == {("kyc_profiles", "kyc_profiles_matches_contract"): True, ("kyc_profiles", "kyc_profiles_keys_unique"): True}
    written = read_delta(tmp_path, "kyc_profiles", event_date=DAY).sort_values("account_id").reset_index(drop=True)
    for column, expected in EXPECTED_KYC.items():
        values = [None if v is None or v != v else v for v in written[column].tolist()]  # NaN/NaT -> None
        assert values == expected, column
    assert set(written["source_file"]) == {f"{DAY}.csv"}
    assert materialization_metadata(result, "kyc_profiles")["dagster/row_count"] == len(KYC_ROWS)


@pytest.mark.parametrize(
    "columns, expected",
    [
        ([c for c in KYC_COLUMNS if c != "account_id"], "missing columns ['account_id']"),  # a required column
        ([*KYC_COLUMNS, "nickname"], "unknown columns ['nickname']"),
    ],
    ids=["missing", "unknown"],
)
def test_a_header_without_a_contract_column_or_with_an_unknown_one_is_a_clear_error(spark, tmp_path, columns, expected):
    write_csv(reference_file(tmp_path, "kyc_profiles"), columns, KYC_ROWS)
    result, instance = run(tmp_path, "kyc_profiles")
    assert not result.success
    text = failure_text(result)
    assert "the header does not match the kyc_profiles contract" in text and expected in text
    assert "Smith" not in everything_logged(result, instance) and "Lee" not in everything_logged(result, instance)
    assert not (tmp_path / "tables" / "kyc_profiles").exists()


def test_malformed_rows_are_counted_and_located_without_quoting_them(spark, tmp_path):
    bad_value = ["ACC00000005", "Zelda Quux", "DE", "north", *KYC_ROWS[0][4:]]
    short = ["ACC00000006", "Zelda Quux", "DE"]
    path = reference_file(tmp_path, "kyc_profiles")
    write_csv(path, KYC_COLUMNS, KYC_ROWS)
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([bad_value, short])
    result, instance = run(tmp_path, "kyc_profiles")
    assert not result.success
    text = failure_text(result)
    # header on line 1, rows on lines 2-3, the name with a line break on 4-5, a row on 6, the bad ones on 7 and 8
    assert "2 of 6 rows do not match the kyc_profiles contract" in text
    assert "line 7: home_latitude is not a double" in text and "line 8: 3 fields where the header has 11" in text
    assert "masked: 'XXX99999999,Xxxxx Xxxx,XX'" in text
    logged = everything_logged(result, instance)
    assert "Zelda" not in logged and "Quux" not in logged and "north" not in logged
    assert not (tmp_path / "tables" / "kyc_profiles").exists()


def test_a_header_only_file_is_an_empty_partition(spark, tmp_path):
    previous = (dt.date.fromisoformat(DAY) - dt.timedelta(days=1)).isoformat()
    write_csv(reference_file(tmp_path, "watchlists"), WATCHLIST_COLUMNS, [], WATCHLIST_COLUMNS)
    # the table's first write has no rows (Delta records no numOutputRows for it)
    first, _ = run(tmp_path, "watchlists")
    assert first.success, failure_text(first)
    assert all(check_results(first).values()) and len(check_results(first)) == 2
    assert len(read_delta(tmp_path, "watchlists", event_date=DAY)) == 0
    assert materialization_metadata(first, "watchlists")["dagster/row_count"] == 0

    rows = [["CP000001", "COUNTERPARTY", "SANCTIONS_EU", 'Acme, "Holdings"', "2024-01-02"], ["MER000002", "MERCHANT", "OFAC_SDN", "", "2023-03-04"]]
    write_csv(reference_file(tmp_path, "watchlists", previous), WATCHLIST_COLUMNS, rows, WATCHLIST_COLUMNS)
    assert run(tmp_path, "watchlists", previous)[0].success
    # an empty write on a table that has other days: Delta makes no commit, the count is still 0
    again, _ = run(tmp_path, "watchlists")
    assert again.success
    assert materialization_metadata(again, "watchlists")["dagster/row_count"] == 0
    assert len(read_delta(tmp_path, "watchlists", event_date=DAY)) == 0
    kept = read_delta(tmp_path, "watchlists", event_date=previous).sort_values("entity_id")
    assert kept["entity_name"].tolist() == ['Acme, "Holdings"', None]


def test_a_range_loads_only_the_delivered_snapshots_and_names_the_days_without_one(spark, tmp_path):
    day = dt.date.fromisoformat(DAY)
    before, second = (day - dt.timedelta(days=LOOKBACK_DAYS + 3)).isoformat(), (day + dt.timedelta(days=1)).isoformat()
    last = (day + dt.timedelta(days=LOOKBACK_DAYS + 2)).isoformat()
    entry = ["ACC00000009", "ACCOUNT", "INTERNAL_BLOCKLIST", "", "2025-12-01"]
    write_csv(reference_file(tmp_path, "watchlists", before), WATCHLIST_COLUMNS, [entry], WATCHLIST_COLUMNS)
    write_csv(reference_file(tmp_path, "watchlists", second), WATCHLIST_COLUMNS, [entry, ["CP000001", "COUNTERPARTY", "SANCTIONS_EU", "", "2024-01-02"]], WATCHLIST_COLUMNS)

    result, instance = run_range(tmp_path, "watchlists", DAY, last)
    assert result.success, failure_text(result)
    assert all(check_results(result).values())
    # the range's first day holds the newest earlier file; then only the days that have a file of their own
    written = read_delta(tmp_path, "watchlists")
    assert written.groupby(written["event_date"].astype(str))["source_file"].agg(lambda f: sorted(set(f))).to_dict() == {
        DAY: [f"{before}.csv"], second: [f"{second}.csv"],
    }
    metadata = materialization_metadata(result, "watchlists")
    third = (day + dt.timedelta(days=2)).isoformat()
    assert metadata["days_without_file"] == f"{DAY}, {third}..{last}" and metadata["snapshots_written"] == 2
    assert metadata["dagster/row_count"] == 3 and metadata["days_without_snapshot"] == "none"
    # the first day is served by a snapshot older than LOOKBACK_DAYS, and so is the range's last day
    assert metadata["days_served_by_stale_snapshot"] == f"{DAY}, {last}"
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == 30]
    assert any("no file" in w and f"{third}..{last}" in w and f"{before}.csv" in w for w in warnings), warnings
    assert any("more than 31 days old" in w for w in warnings), warnings

    # re-materialising the range replaces exactly its days: a file taken back takes its rows with it
    reference_file(tmp_path, "watchlists", second).unlink()
    again, _ = run_range(tmp_path, "watchlists", DAY, last)
    assert again.success
    assert set(read_delta(tmp_path, "watchlists")["event_date"].astype(str)) == {DAY}

    # a range before any file: nothing serves it, which the log and the metadata say
    early, early_instance = run_range(tmp_path, "watchlists", "2026-01-01", "2026-01-02")
    assert early.success
    assert materialization_metadata(early, "watchlists")["days_without_snapshot"] == "2026-01-01..2026-01-02"
    assert any("no snapshot on or before 2026-01-01..2026-01-02" in e.user_message for e in early_instance.all_logs(early.run_id) if e.level == 30)


def test_each_day_is_served_by_the_newest_snapshot_on_or_before_it():
    served = serving_snapshots(["2026-05-01", "2026-05-04"], ["2026-04-30", "2026-05-01", "2026-05-03", "2026-05-04", "2026-06-30"])
    assert served == {"2026-04-30": None, "2026-05-01": "2026-05-01", "2026-05-03": "2026-05-01", "2026-05-04": "2026-05-04", "2026-06-30": "2026-05-04"}


def test_a_watchlist_breaking_its_contract_stops_silver_in_the_same_run(spark, tmp_path):
    generate_day(SynthConfig(seed=5, events_per_day=300), tmp_path / "landing", dt.date.fromisoformat(DAY))
    path = reference_file(tmp_path, "watchlists")
    with open(path, newline="", encoding="utf-8") as f:
        entries = list(csv.DictReader(f))
    entries[0]["list_name"] = "SANCTIONS_MARS"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=WATCHLIST_COLUMNS)
        writer.writeheader()
        writer.writerows(entries)

    result = materialize([*INGEST_ASSETS, *reference_checks], partition_key=DAY, resources=make_resources(tmp_path), instance=DagsterInstance.ephemeral(), raise_on_error=False)
    checks = check_results(result)
    assert checks[("watchlists", "watchlists_matches_contract")] is False
    assert checks[("kyc_profiles", "kyc_profiles_matches_contract")] is True
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"watchlists", "kyc_profiles", "transactions_bronze"} <= materialised
    assert not materialised & {"transactions_silver", "transactions_dlq", "dq_results"}
    assert not (tmp_path / "tables" / "transactions_silver").exists()
