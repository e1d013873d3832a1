"""One export covering many days (a source mapping with `split_by`): read once per run, each record in the
bronze partition of its own date, only the run's days written, unreadable dates kept (on the file's first
day, rejected into the DLQ), and the counts that prove nothing was lost: per day, and per file once every
day of the export is loaded."""

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, RunConfig, materialize

from compliance_assets.ingest.bronze import BronzeConfig, transactions_bronze
from compliance_assets.ingest.checks import silver_rows_conserved, split_exports_add_up
from compliance_assets.ingest.silver import validate_transactions
from compliance_assets.ingest.reference_data import reference_assets
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.mapping_files import SourceMappingError, load_mapping
from compliance_assets.transforms.source_mapping import export_days, read_mapped_export
from resources.lake import LakeResource
from tests.conftest import make_resources
from tests.helpers import check_results, read_delta

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "card_export"


def _load(mappings: Path, text: str, landing: Path):
    mappings.mkdir(parents=True, exist_ok=True)
    (mappings / "mapping.yaml").write_text(text)
    return load_mapping("mapping.yaml", landing=str(landing), folder=mappings)


def _read(spark, mapping) -> dict[str, dict]:
    """The split export's bronze rows by transaction id."""
    rows = read_mapped_export(spark, mapping, None).collect()
    return {json.loads(r.payload)["transaction_id"]: r.asDict() for r in rows}


def test_the_card_example_splits_its_export_by_utc_event_date(spark, tmp_path):
    landing = tmp_path / "landing"
    (landing / "card_export").mkdir(parents=True)
    shutil.copy(EXAMPLE / "export" / "transactions.csv", landing / "card_export" / "transactions.csv")
    mapping = load_mapping("card_export/mapping.yaml", landing=str(landing))  # the repository's examples/ folder
    assert mapping.split_by == "event_time" and "{date" not in mapping.path

    export = read_mapped_export(spark, mapping, None)
    rows = {json.loads(r.payload)["transaction_id"]: r.asDict() for r in export.collect()}
    lines = (EXAMPLE / "export" / "transactions.csv").read_text().splitlines()[1:]
    assert len(rows) == len(lines) == 10
    for line in lines:
        tx, when = line.split(",")[:2]
        row = rows[f"CARD-{tx}"]
        if when.startswith("2018-"):
            assert str(row["event_date"]) == when[:10] and row["split_day_read"], tx
            assert json.loads(row["payload"])["event_time"].startswith(when[:10]), "the payload's event time says the same day"
        else:  # '02.04.2018 11:20:45': unreadable with the mapping's format -> the file's first day
            assert str(row["event_date"]) == "2018-04-01" and not row["split_day_read"]
    per_day = {"2018-04-01": 5, "2018-04-02": 3, "2018-04-03": 2}  # 23:59:59 and 00:00:00 on their own days
    for row in rows.values():
        assert row["source_file_records"] == per_day[str(row["event_date"])] and row["source_file_total_records"] == 10
    assert export_days(export) == {"per_day": per_day, "records": 10, "undated": 1}


HEAD = 'name: valuta\nformat: csv\npath: "{path}"\noptions: {{delimiter: ";"}}\nsplit_by: {split}\ncolumns:\n'
COLUMNS = (
    '  transaction_id: REF\n  event_time: {column: BOOKED, format: "dd.MM.yyyy HH:mm:ss", timezone: "Europe/Berlin"}\n'
    '  account_id: ACC\n  amount: {column: AMT, decimal_comma: true}\n  currency: {constant: EUR}\n'
)
EXPORT = "REF;BOOKED;VALUTA;ACC;AMT\nR1;02.03.2026 00:30:00;03.03.2026;1;1,00\nR2;01.03.2026 23:30:00;xx;2;2,00\nR3;04.03.2026 12:00:00;02.03.2026;3;3,00\n"


def test_event_time_splits_in_utc_and_a_named_column_by_its_own_date(spark, tmp_path):
    landing = tmp_path / "landing"
    (landing / "valuta").mkdir(parents=True)
    (landing / "valuta" / "export.csv").write_text(EXPORT)
    by_time = _read(spark, _load(tmp_path / "m1", HEAD.format(path="valuta/*.csv", split="event_time") + COLUMNS, landing))
    # Berlin (CET) 00:30 on 03-02 is 23:30 UTC on 03-01: converted exactly as the payload's event_time
    assert {k: str(r["event_date"]) for k, r in by_time.items()} == {"R1": "2026-03-01", "R2": "2026-03-01", "R3": "2026-03-04"}
    assert json.loads(by_time["R1"]["payload"])["event_time"] == "2026-03-01T23:30:00.000Z"

    split = '{column: VALUTA, format: "dd.MM.yyyy"}'
    by_column = _read(spark, _load(tmp_path / "m2", HEAD.format(path="valuta/*.csv", split=split) + COLUMNS, landing))
    # the unreadable 'xx' goes to the file's first readable day; its record is otherwise as mapped
    assert {k: str(r["event_date"]) for k, r in by_column.items()} == {"R1": "2026-03-03", "R2": "2026-03-02", "R3": "2026-03-02"}
    assert [k for k, r in by_column.items() if not r["split_day_read"]] == ["R2"]
    assert {k: r["source_file_records"] for k, r in by_column.items()} == {"R1": 1, "R2": 2, "R3": 2}


def test_an_export_that_cannot_be_split_or_does_not_add_up_is_refused(spark, tmp_path):
    landing = tmp_path / "landing"
    (landing / "valuta").mkdir(parents=True)
    (landing / "valuta" / "good.csv").write_text(EXPORT)
    (landing / "valuta" / "undated.csv").write_text("REF;BOOKED;VALUTA;ACC;AMT\nU1;02.03.2026 10:00:00;;1;1,00\n")
    mapping = _load(tmp_path / "m", HEAD.format(path="valuta/*.csv", split='{column: VALUTA, format: "dd.MM.yyyy"}') + COLUMNS, landing)
    with pytest.raises(SourceMappingError, match=r"No record of valuta/undated.csv has a readable split date"):
        export_days(read_mapped_export(spark, mapping, None))
    # the file's days must add up to its records counted from its raw bytes (here a line short)
    short = spark.createDataFrame(
        [("x/a.csv", dt.date(2026, 3, 2), 3, True), ("x/a.csv", dt.date(2026, 3, 3), 3, True)],
        "source_file string, event_date date, source_file_total_records long, split_day_read boolean",
    )
    with pytest.raises(SourceMappingError, match=r"x/a.csv: its days hold 2 records but the file has 3 by its raw bytes"):
        export_days(short)


# End to end: a card export over three days, backfilled in two runs: bronze for the last two days in one
# run (one read), then the first day through bronze and silver, which completes the export.
DAYS = ["2026-03-02", "2026-03-03", "2026-03-04"]
PER_DAY = {DAYS[0]: 24, DAYS[1]: 7, DAYS[2]: 4}  # readable records per day (different, so a swap shows)
UNREADABLE = "9999"  # written among DAYS[1]'s records; lands on the file's first day, DAYS[0]


def _card_export(path: Path) -> list[str]:
    """The public card dataset's shape over DAYS (sorted by time, as it comes), with one unreadable TX_DATETIME."""
    lines, tx = ["TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT"], 0
    for day, n in PER_DAY.items():
        start = dt.datetime.fromisoformat(day)
        for i in range(n):
            when = start + dt.timedelta(seconds=i * (86399 // (n - 1)))  # 00:00:00 ... 23:59:59
            lines.append(f"{tx},{when:%Y-%m-%d %H:%M:%S},{1 + tx % 40},{1 + tx % 20},{10 + tx}.{tx % 100:02d}")
            tx += 1
        if day == DAYS[1]:
            lines.append(f"{UNREADABLE},03/03/2026 10:00,5,5,12.50")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def card_lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("split_export")
    # the reference data (KYC, FX, ...) of the day silver runs for; not its native deliveries
    generate_day(SynthConfig(seed=5, events_per_day=20), root / "landing", dt.date.fromisoformat(DAYS[0]))
    shutil.rmtree(root / "landing" / "transactions")
    lines = _card_export(root / "landing" / "card_export" / "transactions.csv")
    mappings = root / "mappings"
    mappings.mkdir()
    # channel and country as constants: valid whether or not the contract still requires them
    text = (EXAMPLE / "mapping.yaml").read_text() + "  channel:\n    constant: CARD_PRESENT\n  country:\n    constant: BE\n"
    (mappings / "card.yaml").write_text(text)
    resources = {**make_resources(root), "lake": LakeResource(root=str(root), source_mappings_dir=str(mappings))}
    mapped = RunConfig(ops={"transactions_bronze": BronzeConfig(source_mapping="card.yaml")})

    def backfill(assets, first: str, last: str):
        return materialize(
            assets, resources=resources, instance=DagsterInstance.ephemeral(), raise_on_error=False, run_config=mapped,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        )

    later = backfill([transactions_bronze, split_exports_add_up], DAYS[1], DAYS[2])
    partial = read_delta(root, "transactions_bronze")
    first = backfill([*reference_assets, transactions_bronze, validate_transactions, silver_rows_conserved, split_exports_add_up], DAYS[0], DAYS[0])
    return root, lines, later, partial, first


def _evaluation(result, name):
    return next(e for e in result.get_asset_check_evaluations() if e.asset_check_key.name == name)


def test_one_run_over_a_range_writes_only_its_days_from_one_read(card_lake):
    _, _, later, partial, _ = card_lake
    assert later.success
    materialized = [e.partition for e in later.get_asset_materialization_events() if e.asset_key.to_user_string() == "transactions_bronze"]
    assert sorted(materialized) == DAYS[1:]
    counts = partial.groupby(partial["event_date"].astype(str)).size().to_dict()
    assert counts == {DAYS[1]: PER_DAY[DAYS[1]], DAYS[2]: PER_DAY[DAYS[2]]}, "only the run's days, each with its own records"
    assert partial["ingested_at"].nunique() == 1, "both days came from one read of the export"
    pending = _evaluation(later, "split_exports_add_up")
    assert not pending.passed and pending.severity == AssetCheckSeverity.WARN
    assert pending.metadata["records_not_loaded"].value == PER_DAY[DAYS[0]] + 1  # the first day's, with the unreadable one


def test_once_every_day_is_loaded_the_days_add_up_to_the_file(card_lake):
    root, lines, _, partial, first = card_lake
    assert first.success
    bronze = read_delta(root, "transactions_bronze")
    assert len(bronze) == len(lines) - 1 and bronze["ingest_id"].is_unique, "every record of the file is in bronze, once"
    assert (bronze["event_date"].astype(str) == DAYS[0]).sum() == PER_DAY[DAYS[0]] + 1
    later = bronze[bronze["event_date"].astype(str) != DAYS[0]]
    assert sorted(later["ingest_id"]) == sorted(partial["ingest_id"]) and set(later["ingested_at"]) == set(partial["ingested_at"]), "the other days are untouched"
    per_day_records = bronze.groupby(bronze["event_date"].astype(str))["source_file_records"].max()
    assert int(per_day_records.sum()) == len(lines) - 1 and set(bronze["source_file_total_records"]) == {len(lines) - 1}
    passed = check_results(first)
    assert passed[("transactions_bronze", "split_exports_add_up")] and passed[("transactions_silver", "silver_rows_conserved")]


def test_the_split_day_goes_through_silver_and_the_unreadable_record_to_the_dlq(card_lake):
    root = card_lake[0]
    silver, dlq = read_delta(root, "transactions_silver"), read_delta(root, "transactions_dlq")
    assert len(silver) + len(dlq) == PER_DAY[DAYS[0]] + 1
    assert set(silver["ingest_date"].astype(str)) == set(silver["event_date"].astype(str)) == {DAYS[0]}, "a record's event date is its partition"
    rejected = dlq[dlq["transaction_id"] == f"CARD-{UNREADABLE}"]
    assert len(rejected) == 1 and str(rejected["event_date"].iloc[0]) == DAYS[0]
    assert "INVALID_FORMAT:event_time" in list(rejected["reason_codes"].iloc[0])
