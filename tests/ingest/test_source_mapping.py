"""Bring-your-own data: a foreign CSV export ingested through a YAML source mapping, the clear errors a
wrong mapping gives, and the refusals that keep an untrusted mapping path (run config or the run tag
`source_mapping`, which anyone who can launch a backfill sets) from reading anything outside the mappings
folder and the landing area, or from copying a file's contents into the run's event log."""

import dataclasses
import datetime as dt
import os
import shutil
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunConfig, materialize

from compliance_assets.ingest.bronze import BronzeConfig, transactions_bronze
from compliance_assets.synthetic import SynthConfig, generate_day
from compliance_assets.transforms.mapping_files import DEFAULT_MAPPINGS_DIR, SOURCE_MAPPINGS_ENV, SourceMappingError, data_pattern, load_mapping
from compliance_assets.transforms.source_mapping import read_mapped_delivery
from resources.lake import LakeResource
from tests.conftest import make_resources
from tests.helpers import INGEST_ASSETS, read_delta

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "legacy_core_banking"
DAY = "2026-03-02"
EXPORT = f"txn_export_{DAY.replace('-', '')}.csv"

# content of files a hostile mapping path points at: none of it may reach bronze or the event log
PLANTED_SECRET = "PLANTED-s3cr3t-7f1e9a2b"
PLANTED_LINES = [
    "BUCHUNGS_REF;BUCHUNGSZEIT;KONTO_NR;HAENDLER_NR;GEGENKONTO;BETRAG;WAEHRUNG;KANAL;LAND;MCC;KENNZEICHEN;VERWENDUNGSZWECK",
    f"LC-9001;02.03.2026 09:15:00;1;1;;1.234,56;EUR;KP;DE;5411;;{PLANTED_SECRET}",
    "LC-9002;02.03.2026 10:00:00;2;1;;99,00;EUR;KP;DE;5411;;Erika Mustermann DE89370400440532013000",
]


def land_example(landing: Path) -> None:
    """The example's exports where its mapping's data path points: <landing>/legacy_core/exports/."""
    shutil.copytree(EXAMPLE / "exports", landing / "legacy_core" / "exports", dirs_exist_ok=True)


def resources(lake: Path, mappings: Path | None = None) -> dict:
    res = make_resources(lake)
    res["lake"] = LakeResource(root=str(lake), source_mappings_dir=str(mappings) if mappings else "")
    return res


def run(lake, mapping, assets=INGEST_ASSETS, mappings: Path | None = None, via: str = "config", instance=None):
    """Materialise with the mapping given through run config or the run tag `source_mapping`."""
    return materialize(
        assets,
        partition_key=DAY,
        resources=resources(lake, mappings),
        instance=instance or DagsterInstance.ephemeral(),
        run_config=RunConfig(ops={"transactions_bronze": BronzeConfig(source_mapping=str(mapping))}) if via == "config" else None,
        tags={"source_mapping": str(mapping)} if via == "tag" else None,
        raise_on_error=False,
    )


def bronze_error(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == "transactions_bronze")
    return failure.event_specific_data.error.to_string()


def event_log_texts(instance, run_id: str) -> list[str]:
    """Everything the run's event log holds, as text: each entry's repr and every error's message and stack."""
    texts = []

    def errors_of(value, depth=0):
        if value is None or depth > 4:
            return
        if hasattr(value, "to_string") and hasattr(value, "cls_name"):
            texts.append(value.to_string())
            return
        for name in ("error", "error_info", "event_specific_data", "first_step_failure_event"):
            errors_of(getattr(value, name, None), depth + 1)

    for entry in instance.all_logs(run_id):
        texts.append(str(entry))
        texts.append(entry.user_message or "")
        errors_of(entry.error_info)
        if entry.dagster_event is not None:
            texts.append(entry.dagster_event.message or "")
            errors_of(entry.dagster_event.event_specific_data)
    return texts


def assert_refused_without_content(result, instance, expected: str, content_lines: list[str]) -> None:
    assert not result.success
    assert expected in bronze_error(result)
    texts = event_log_texts(instance, result.run_id)
    everything = "\n".join(texts)
    assert expected in everything, "the scan covers the error messages"  # so the checks below can fail
    for line in [*content_lines, PLANTED_SECRET]:
        for piece in [line, *line.split(";")]:
            if len(piece) >= 8:
                assert piece not in everything, f"file content in the event log: {piece!r}"


@pytest.fixture(scope="module")
def mapped_lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("byod")
    generate_day(SynthConfig(seed=3, events_per_day=200), root / "landing", dt.date.fromisoformat(DAY))
    land_example(root / "landing")
    result = run(root, "legacy_core_banking/mapping.yaml")  # relative to the default mappings folder, examples/
    return root, result


def test_foreign_csv_is_mapped_onto_the_contract(mapped_lake):
    root, result = mapped_lake
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} >= {"transactions_bronze", "transactions_silver"}
    bronze = read_delta(root, "transactions_bronze", event_date=DAY)
    assert set(bronze["source"]) == {"legacy_core"} and len(bronze) == 5
    assert bronze["source_payload"].str.contains("BUCHUNGS_REF").all(), "the original row is kept as evidence"
    assert set(bronze["source_file"]) == {f"exports/{EXPORT}"}
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


def test_the_default_mappings_folder_is_the_repository_examples():
    assert DEFAULT_MAPPINGS_DIR == EXAMPLE.parent and DEFAULT_MAPPINGS_DIR.is_absolute()
    mapping = load_mapping(str(EXAMPLE / "mapping.yaml"), landing="/data/landing")  # absolute inside the folder: accepted
    assert mapping.path == "/data/landing/legacy_core/exports/txn_export_{date:%Y%m%d}.csv"
    assert mapping.path_for(dt.date(2026, 3, 2)).endswith(f"legacy_core/exports/{EXPORT}")


def _mapping(folder: Path, text: str, name: str = "mapping.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _load(path: Path, landing: Path | str | None = None):
    return load_mapping(path, landing=str(landing or path.parent / "landing"), folder=path.parent)


GOOD_HEAD = 'name: bad_source\nformat: csv\npath: "exports/x_{date}.csv"\ncolumns:\n'
REQUIRED = "  transaction_id: ID\n  event_time: TS\n  account_id: ACC\n  amount: AMT\n  currency: CCY\n  channel: CH\n  country: CTRY\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD_HEAD + REQUIRED + "  amout: AMT2\n", "maps unknown contract fields [amout]"),
        (GOOD_HEAD + REQUIRED.replace("  currency: CCY\n", ""), "does not map required contract fields ['currency']"),
        (GOOD_HEAD.replace("csv", "xlsx") + REQUIRED, "at 'format': must be one of csv, parquet, json (enum)"),
        (GOOD_HEAD.replace("x_{date}", "x") + REQUIRED, "at 'path': does not have the required form"),
        (GOOD_HEAD + REQUIRED + "  mcc_code: {column: MCC, zero_pad: 0}\n", "at 'columns/mcc_code/zero_pad': must be at least 1 (minimum)"),
        (GOOD_HEAD + REQUIRED + "  mcc_code: {column: MCC, constant: 5411}\n", "at 'columns/mcc_code': matches none (or more than one) of the allowed forms"),
        (GOOD_HEAD + REQUIRED + "  mcc_code: {colum: MCC}\n", "at 'columns/mcc_code': has key(s) that are not allowed here; allowed: column, constant"),
        ("name: [unclosed\n", "is not valid YAML (line 2, column 1)"),
        ("- just\n- a list\n", "is not a source mapping: its top level is a list"),
        ("", "is not a source mapping: its top level is empty"),
        ("base: &b {x: 1}\ncopy: *b\n", "uses a YAML alias (*name); aliases are not allowed in a mapping: line 2"),
        # one export split into days (split_by): its path is the export itself
        ("split_by: event_time\n" + GOOD_HEAD + REQUIRED, "with split_by its path names the export itself"),
        ("split_by: booking_time\n" + GOOD_HEAD.replace("x_{date}", "x") + REQUIRED, "at 'split_by': must be event_time (const)"),
        ("split_by: {column: D, fmt: x}\n" + GOOD_HEAD.replace("x_{date}", "x") + REQUIRED, "at 'split_by': has key(s) that are not allowed here; allowed: column, format"),
    ],
)
def test_a_wrong_mapping_gives_a_clear_message(tmp_path, text, message):
    with pytest.raises(SourceMappingError) as err:
        _load(_mapping(tmp_path, text))
    assert message in str(err.value)


def test_a_repeated_yaml_key_is_refused_with_its_line_but_not_its_content(tmp_path):
    text = GOOD_HEAD + REQUIRED + "  description: FIRST_COLUMN_XYZ\n  description: SECOND_COLUMN_XYZ\n"
    with pytest.raises(SourceMappingError) as err:
        _load(_mapping(tmp_path, text))
    assert "repeats a key" in str(err.value) and "line 13" in str(err.value)
    assert "COLUMN_XYZ" not in str(err.value)
    _load(_mapping(tmp_path, GOOD_HEAD + REQUIRED + "  description: SECOND_COLUMN_XYZ\n"))  # once is fine


def _values(n: int) -> str:
    return GOOD_HEAD + REQUIRED.replace("  channel: CH\n", "  channel:\n    column: CH\n    values:\n" + "".join(f"      C{i}: CARD_PRESENT\n" for i in range(n)))


def test_an_oversized_values_table_is_refused(tmp_path):
    assert len(_load(_mapping(tmp_path, _values(1000))).columns["channel"]["values"]) == 1000
    started = time.monotonic()
    with pytest.raises(SourceMappingError) as err:
        _load(_mapping(tmp_path, _values(1001)))
    assert "at 'columns/channel/values': has more than 1000 entries (at most 1000 allowed) (maxProperties)" in str(err.value)
    assert time.monotonic() - started < 10


def test_an_oversized_mapping_file_is_refused_unread(tmp_path):
    with pytest.raises(SourceMappingError) as err:
        _load(_mapping(tmp_path, _values(20_000)))
    assert "larger than 256 KiB" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        # a file that is not YAML at all: the YAML error's snippet would quote the line
        "\n".join(PLANTED_LINES[:1] + [f"key: [{PLANTED_SECRET}", *PLANTED_LINES[1:]]) + "\n",
        # plain text (YAML reads it as one long string): the schema error would quote all of it
        "\n".join(PLANTED_LINES) + "\n",
        # YAML keys, not a mapping's: the schema errors would quote the values
        f"name: {PLANTED_SECRET}\nformat: {PLANTED_LINES[1]}\npath: {PLANTED_LINES[2]}\ncolumns: {PLANTED_SECRET}\npassword: {PLANTED_SECRET}\n",
    ],
    ids=["broken_yaml", "text", "other_yaml"],
)
def test_errors_never_quote_the_file(tmp_path, text):
    with pytest.raises(SourceMappingError) as err:
        _load(_mapping(tmp_path, text))
    message = str(err.value)
    assert "mapping.yaml" in message
    for piece in [PLANTED_SECRET, *PLANTED_LINES, *PLANTED_LINES[2].split(";")]:
        if len(piece) >= 8:
            assert piece not in message, message
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__), "the parser's error (its snippet) is not chained"


def test_a_mapping_naming_absent_source_columns_says_which(spark, tmp_path):
    land_example(tmp_path / "landing")
    text = (EXAMPLE / "mapping.yaml").read_text().replace("currency: WAEHRUNG", "currency: CURRENCY_CODE")
    mapping = _load(_mapping(tmp_path / "mappings", text), tmp_path / "landing")
    with pytest.raises(SourceMappingError) as err:
        read_mapped_delivery(spark, mapping, DAY, None).count()
    assert "[CURRENCY_CODE]" in str(err.value) and "BUCHUNGS_REF" in str(err.value)


def test_a_wrong_mapping_fails_the_bronze_run_with_that_message(spark, tmp_path):
    bad = _mapping(tmp_path / "mappings", GOOD_HEAD + REQUIRED + "  amout: AMT2\n")
    result = run(tmp_path / "lake", bad, [transactions_bronze], mappings=tmp_path / "mappings")
    assert not result.success
    assert "maps unknown contract fields [amout]" in bronze_error(result)


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_lines_sources_map_to_the_same_payloads_as_csv(spark, tmp_path, fmt):
    import json

    import pandas as pd

    landing = tmp_path / "landing"
    land_example(landing)
    exports = landing / "legacy_core" / "exports"
    csv_mapping = _load(_mapping(tmp_path / "mappings", (EXAMPLE / "mapping.yaml").read_text()), landing)
    frame = pd.read_csv(exports / EXPORT, sep=";", dtype=str, keep_default_na=False)
    if fmt == "parquet":
        frame.to_parquet(exports / EXPORT.replace(".csv", ".parquet"), index=False)
    else:
        (exports / EXPORT.replace(".csv", ".jsonl")).write_text("".join(json.dumps(record) + "\n" for record in frame.to_dict(orient="records")))
    text = (EXAMPLE / "mapping.yaml").read_text().replace("format: csv", f"format: {fmt}").replace(".csv", ".parquet" if fmt == "parquet" else ".jsonl")
    other = _load(_mapping(tmp_path / "mappings", text.replace("name: legacy_core", f"name: legacy_{fmt}"), "other.yaml"), landing)

    def payloads(mapping):
        rows = read_mapped_delivery(spark, mapping, DAY, None).select("payload").collect()
        return sorted(json.dumps(json.loads(r.payload), sort_keys=True) for r in rows)

    assert len(payloads(other)) == 5
    assert payloads(other) == payloads(csv_mapping)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_headers_with_spaces_symbols_and_backticks_work(spark, tmp_path, fmt):
    import json

    import pandas as pd

    landing = tmp_path / "landing"
    (landing / "odd").mkdir(parents=True)
    header = ["Ref #", "Booked at", "Account", "Amount (EUR)", "Curr.", "Kanal/Channel", "Land", "Note `x`.y", "Kunde's [ref]"]
    rows = [["R-1", "2026-03-02 09:15:00", "ACC1", "12.50", "EUR", "CARD_PRESENT", "DE", "a", "K1"]]
    file = landing / "odd" / f"odd_{DAY}.{fmt}"
    if fmt == "csv":
        file.write_text("".join(",".join(r) + "\n" for r in [header, *rows]))
    elif fmt == "parquet":
        pd.DataFrame(rows, columns=header).to_parquet(file, index=False)
    else:
        file.write_text("".join(json.dumps(dict(zip(header, r))) + "\n" for r in rows))
    text = (
        f'name: odd_source\nformat: {fmt}\npath: "odd/odd_{{date}}.{fmt}"\ncolumns:\n'
        '  transaction_id: "Ref #"\n  event_time: "Booked at"\n  account_id: Account\n  amount: "Amount (EUR)"\n'
        '  currency: "Curr."\n  channel: "Kanal/Channel"\n  country: Land\n  description: "Note `x`.y"\n  counterparty_id: "Kunde\'s [ref]"\n'
    )
    mapping = _load(_mapping(tmp_path / "mappings", text), landing)
    [row] = read_mapped_delivery(spark, mapping, DAY, None).collect()
    payload = json.loads(row.payload)
    assert payload["amount"] == 12.5 and payload["transaction_id"] == "R-1" and payload["description"] == "a" and payload["counterparty_id"] == "K1"
    assert json.loads(row.source_payload)["Amount (EUR)"] == "12.50"


# Untrusted paths: the mapping file and its data.

@pytest.fixture
def hostile(tmp_path):
    """A lake, an allowed mappings folder, and files outside both with planted content."""
    lake, mappings, outside = tmp_path / "lake", tmp_path / "mappings", tmp_path / "outside"
    (lake / "landing").mkdir(parents=True)
    mappings.mkdir()
    outside.mkdir()
    (outside / EXPORT).write_text("\n".join(PLANTED_LINES) + "\n")
    return lake, mappings, outside


def _example_with_path(path: str) -> str:
    return (EXAMPLE / "mapping.yaml").read_text().replace('path: "legacy_core/exports/txn_export_{date:%Y%m%d}.csv"', f'path: "{path}"')


def _no_bronze(lake: Path) -> None:
    assert not (lake / "tables" / "transactions_bronze").exists(), "nothing was ingested"


@pytest.mark.parametrize("via", ["config", "tag"])
@pytest.mark.parametrize(
    "data_path, expected",
    [
        ("../../outside/txn_export_{date:%Y%m%d}.csv", "has a '..' segment"),
        ("{..,x}/{..,x}/outside/txn_export_{date:%Y%m%d}.csv", "has a '..' segment"),
        ("{date:..}/{date:..}/outside/txn_export_{date:%Y%m%d}.csv", "has a '..' segment"),
        ("ABSOLUTE/txn_export_{date:%Y%m%d}.csv", "is outside the landing area"),
    ],
    ids=["dotdot", "dotdot_in_glob", "dotdot_from_date_format", "absolute"],
)
def test_a_data_path_outside_the_landing_area_is_refused(spark, hostile, via, data_path, expected):
    lake, mappings, outside = hostile
    mapping = _mapping(mappings, _example_with_path(data_path.replace("ABSOLUTE", str(outside))))
    instance = DagsterInstance.ephemeral()
    result = run(lake, mapping.name, [transactions_bronze], mappings=mappings, via=via, instance=instance)
    assert_refused_without_content(result, instance, expected, PLANTED_LINES)
    assert "landing area" in bronze_error(result)
    _no_bronze(lake)


def test_the_data_path_is_checked_again_once_the_day_is_in(spark, hostile):
    lake, mappings, outside = hostile
    landing = str(lake / "landing")
    good = _load(_mapping(mappings, (EXAMPLE / "mapping.yaml").read_text()), landing)
    # a mapping whose date format spells '..' (load refuses it; built by hand here): the read refuses it too
    sneaky = dataclasses.replace(good, path=f"{landing}/{{date:..}}/{{date:..}}/outside/txn_export_{{date:%Y%m%d}}.csv")
    assert os.path.exists(os.path.normpath(sneaky.path_for(dt.date(2026, 3, 2))))
    with pytest.raises(SourceMappingError, match="has a '..' segment"):
        read_mapped_delivery(spark, sneaky, DAY, None)


@pytest.mark.parametrize("via", ["config", "tag"])
@pytest.mark.parametrize("kind", ["broken_yaml", "text"])
def test_a_file_that_is_not_a_mapping_is_refused_without_its_content(spark, hostile, via, kind):
    lake, mappings, _ = hostile
    lines = [*PLANTED_LINES, f"key: [{PLANTED_SECRET}"] if kind == "broken_yaml" else PLANTED_LINES
    (mappings / "notes.txt").write_text("\n".join(lines) + "\n")
    instance = DagsterInstance.ephemeral()
    result = run(lake, "notes.txt", [transactions_bronze], mappings=mappings, via=via, instance=instance)
    expected = "is not valid YAML (line 4" if kind == "broken_yaml" else "is not a source mapping"
    assert_refused_without_content(result, instance, expected, lines)
    _no_bronze(lake)


@pytest.mark.parametrize("via", ["config", "tag"])
@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_mapping_outside_the_mappings_folder_is_refused_unread(spark, hostile, via, how):
    lake, mappings, outside = hostile
    land_example(lake / "landing")
    target = _mapping(outside, (EXAMPLE / "mapping.yaml").read_text() + f"# {PLANTED_SECRET}\n")  # a valid mapping, but not in the folder
    if how == "absolute":
        path = str(target)
    elif how == "dotdot":
        path = "../outside/mapping.yaml"
    else:
        (mappings / "link.yaml").symlink_to(target)
        path = "link.yaml"
    instance = DagsterInstance.ephemeral()
    result = run(lake, path, [transactions_bronze], mappings=mappings, via=via, instance=instance)
    assert_refused_without_content(result, instance, f"is outside the mappings folder {os.path.realpath(mappings)}", target.read_text().splitlines())
    assert SOURCE_MAPPINGS_ENV in bronze_error(result)
    _no_bronze(lake)


def test_the_repository_example_is_refused_when_the_mappings_folder_is_elsewhere(hostile):
    lake, mappings, _ = hostile
    with pytest.raises(SourceMappingError, match=SOURCE_MAPPINGS_ENV):
        load_mapping(EXAMPLE / "mapping.yaml", landing=str(lake / "landing"), folder=mappings)


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_symlink_in_the_landing_area_pointing_outside_is_refused(spark, hostile, link):
    lake, mappings, outside = hostile
    exports = lake / "landing" / "legacy_core" / "exports"
    if link == "file":
        exports.mkdir(parents=True)
        (exports / EXPORT).symlink_to(outside / EXPORT)
    else:
        exports.parent.mkdir(parents=True)
        exports.symlink_to(outside, target_is_directory=True)
    mapping = _mapping(mappings, (EXAMPLE / "mapping.yaml").read_text())
    instance = DagsterInstance.ephemeral()
    result = run(lake, mapping, [transactions_bronze], mappings=mappings, instance=instance)
    assert_refused_without_content(result, instance, "resolves outside the landing area", PLANTED_LINES)
    _no_bronze(lake)


def test_a_symlink_inside_the_landing_area_is_followed(spark, hostile):
    lake, mappings, _ = hostile
    stash = lake / "landing" / "stash"
    land_example(stash)
    (lake / "landing" / "legacy_core").symlink_to(stash / "legacy_core", target_is_directory=True)
    mapping = _load(_mapping(mappings, (EXAMPLE / "mapping.yaml").read_text()), lake / "landing")
    assert read_mapped_delivery(spark, mapping, DAY, None).count() == 5


def test_uri_landing_areas_are_checked_by_prefix():
    landing = "abfss://lake@acct.dfs.core.windows.net/landing"
    assert data_pattern("legacy/x_{date}.csv", landing) == f"{landing}/legacy/x_{{date}}.csv"
    assert data_pattern(f"{landing}/legacy/x_{{date}}.csv", landing) == f"{landing}/legacy/x_{{date}}.csv"
    for path in (
        "../tables/x_{date}.csv",
        f"{landing}/../tables/x_{{date}}.csv",
        f"{landing}-other/x_{{date}}.csv",
        "abfss://other@acct.dfs.core.windows.net/landing/x_{date}.csv",
        "/etc/x_{date}",
        "legacy/{..,x}/x_{date}.csv",
    ):
        with pytest.raises(SourceMappingError, match="landing area"):
            data_pattern(path, landing)
    local = os.path.realpath("/tmp")
    with pytest.raises(SourceMappingError, match="is a URI"):
        data_pattern("file:///etc/x_{date}", local)
