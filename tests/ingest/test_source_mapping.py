"""Bring-your-own data: a foreign CSV export ingested through a YAML source mapping, and the clear
errors a wrong mapping gives."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunConfig, materialize

from compliance_assets.ingest.bronze import BronzeConfig
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.source_mapping import SourceMappingError, load_mapping, read_mapped_delivery
from tests.conftest import make_resources
from tests.helpers import INGEST_ASSETS, read_delta

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "legacy_core_banking"
DAY = "2026-03-02"


def run(lake, mapping: Path):
    return materialize(
        INGEST_ASSETS,
        partition_key=DAY,
        resources=make_resources(lake),
        instance=DagsterInstance.ephemeral(),
        run_config=RunConfig(ops={"transactions_bronze": BronzeConfig(source_mapping=str(mapping))}),
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def mapped_lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("byod")
    generate_day(SynthConfig(seed=3, events_per_day=200), root / "landing", dt.date.fromisoformat(DAY))
    result = run(root, EXAMPLE / "mapping.yaml")
    return root, result


def test_foreign_csv_is_mapped_onto_the_contract(mapped_lake):
    root, result = mapped_lake
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} >= {"transactions_bronze", "transactions_silver"}
    bronze = read_delta(root, "transactions_bronze", event_date=DAY)
    assert set(bronze["source"]) == {"legacy_core"} and len(bronze) == 5
    assert bronze["source_payload"].str.contains("BUCHUNGS_REF").all(), "the original row is kept as evidence"
    silver = read_delta(root, "transactions_silver", ingest_date=DAY).set_index("transaction_id")
    assert sorted(silver.index) == ["LC-0001", "LC-0002", "LC-0003"]
    first = silver.loc["LC-0001"]
    assert str(first["amount"]) == "1234.56" and first["account_id"] == "ACC00000001" and first["merchant_id"] == "MER000001"
    assert first["event_time"].isoformat().startswith("2026-03-02T08:15:00")  # 09:15 Berlin (CET) in UTC
    assert first["channel"] == "CARD_PRESENT"
    assert list(silver.loc["LC-0002", "risk_flags"]) == ["NEW_DEVICE", "VPN"]
    assert silver.loc["LC-0002", "channel"] == "TRANSFER" and silver.loc["LC-0002", "counterparty_id"] == "CP0000042"
    assert silver.loc["LC-0003", "event_time"].isoformat().startswith("2026-03-02T22:45:00")


def test_unconvertible_foreign_values_go_to_the_dlq_with_reasons(mapped_lake):
    root, _ = mapped_lake
    dlq = read_delta(root, "transactions_dlq", event_date=DAY).set_index("transaction_id")
    assert sorted(dlq.index) == ["LC-0004", "LC-0005"]
    assert list(dlq.loc["LC-0004", "reason_codes"]) == ["WRONG_TYPE:amount"]
    assert list(dlq.loc["LC-0005", "reason_codes"]) == ["UNKNOWN_CHANNEL"]
    assert set(dlq["source_line"]) == {5, 6}  # header is line 1


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


GOOD_HEAD = 'name: bad_source\nformat: csv\npath: "exports/x_{date}.csv"\ncolumns:\n'
REQUIRED = "  transaction_id: ID\n  event_time: TS\n  account_id: ACC\n  amount: AMT\n  currency: CCY\n  channel: CH\n  country: CTRY\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD_HEAD + REQUIRED + "  amout: AMT2\n", "maps unknown contract fields ['amout']"),
        (GOOD_HEAD + REQUIRED.replace("  currency: CCY\n", ""), "does not map required contract fields ['currency']"),
        (GOOD_HEAD.replace("csv", "xlsx") + REQUIRED, "at 'format': 'xlsx' is not one of"),
        (GOOD_HEAD.replace("x_{date}", "x") + REQUIRED, "at 'path'"),
        ("name: [unclosed\n", "is not valid YAML"),
    ],
)
def test_a_wrong_mapping_gives_a_clear_message(tmp_path, text, message):
    with pytest.raises(SourceMappingError) as err:
        load_mapping(_mapping(tmp_path, text))
    assert message in str(err.value)


def test_a_mapping_naming_absent_source_columns_says_which(spark, tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "src")
    text = (EXAMPLE / "mapping.yaml").read_text().replace("currency: WAEHRUNG", "currency: CURRENCY_CODE")
    mapping = load_mapping(_mapping(tmp_path / "src", text))
    with pytest.raises(SourceMappingError) as err:
        read_mapped_delivery(spark, mapping, DAY, None).count()
    assert "['CURRENCY_CODE']" in str(err.value) and "BUCHUNGS_REF" in str(err.value)


def test_a_wrong_mapping_fails_the_bronze_run_with_that_message(spark, tmp_path):
    bad = _mapping(tmp_path, GOOD_HEAD + REQUIRED + "  amout: AMT2\n")
    result = run(tmp_path / "lake", bad)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == "transactions_bronze")
    assert "maps unknown contract fields ['amout']" in failure.event_specific_data.error.to_string()


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_lines_sources_map_to_the_same_payloads_as_csv(spark, tmp_path, fmt):
    import json

    import pandas as pd

    shutil.copytree(EXAMPLE, tmp_path / "src")
    csv_mapping = load_mapping(tmp_path / "src" / "mapping.yaml")
    frame = pd.read_csv(tmp_path / "src" / "exports" / "txn_export_20260302.csv", sep=";", dtype=str, keep_default_na=False)
    if fmt == "parquet":
        frame.to_parquet(tmp_path / "src" / "exports" / "txn_export_20260302.parquet", index=False)
    else:
        (tmp_path / "src" / "exports" / "txn_export_20260302.jsonl").write_text(
            "".join(json.dumps(record) + "\n" for record in frame.to_dict(orient="records"))
        )
    text = (tmp_path / "src" / "mapping.yaml").read_text().replace("format: csv", f"format: {fmt}").replace(".csv", ".parquet" if fmt == "parquet" else ".jsonl")
    other = load_mapping(_mapping(tmp_path / "src", text.replace("name: legacy_core", f"name: legacy_{fmt}")))

    def payloads(mapping):
        rows = read_mapped_delivery(spark, mapping, DAY, None).select("payload").collect()
        return sorted(json.dumps(json.loads(r.payload), sort_keys=True) for r in rows)

    assert len(payloads(other)) == 5
    assert payloads(other) == payloads(csv_mapping)
