"""The Azure Blob side of the file drops against a real Azurite server (scripts/azurite.sh): the
resource's file and Delta round trips (account key, SAS token, and the local folder for comparison),
ledger_files landing a dropped system-of-record file byte for byte, and regulatory_exports writing
Delta tables to Blob, read back with delta-rs on options built here, not by the code under test."""

import datetime as dt
import decimal
import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from azure.storage.blob import AccountSasPermissions, BlobServiceClient, ResourceTypes, generate_account_sas
from dagster import DagsterInstance, asset, materialize
from deltalake import DeltaTable, write_deltalake

from resources.file_drops import BlobFileDrops, FileDropResource, LocalFileDrops, file_drops_from_env

REPO = Path(__file__).resolve().parents[2]
# Azurite's well-known development account (public, documented; not a secret)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DAY = "2026-04-01"
AZURE_ENV = ("AZURE_AUTH", "AZURE_BLOB_ACCOUNT_URL", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "FILE_DROPS_ROOT", "FILE_DROPS_CONTAINER", "FILE_DROPS_PREFIX")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """Azurite's blob endpoint on a free loopback port, data in a temp folder; stopped at the end."""
    env = {**os.environ, "AZURITE_BLOB_PORT": str(free_port()), "AZURITE_DATA": str(tmp_path_factory.mktemp("azurite"))}
    script = ["bash", str(REPO / "scripts" / "azurite.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        again = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=60)  # idempotent
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr
        yield f"http://127.0.0.1:{env['AZURITE_BLOB_PORT']}/{ACCOUNT}"
    finally:
        subprocess.run([*script, "stop"], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def container(azurite):
    """A fresh container, through the SDK (not the code under test)."""
    name = f"drops-{uuid.uuid4().hex[:12]}"
    with BlobServiceClient(azurite, credential=KEY) as service:
        service.create_container(name)
    return name


def independent_options(url: str) -> dict:
    return {"account_name": ACCOUNT, "account_key": KEY, "endpoint": url, "allow_http": "true"}


def upload(url: str, container: str, name: str, data: bytes) -> None:
    with BlobServiceClient(url, credential=KEY) as service:
        service.get_blob_client(container, name).upload_blob(data, overwrite=True)


@pytest.fixture
def blob_drops(monkeypatch, azurite, container) -> FileDropResource:
    """The profile's way in: file_drops_from_env() with the account URL and key in the environment."""
    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_BLOB_ACCOUNT_URL", azurite)
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    monkeypatch.setenv("FILE_DROPS_CONTAINER", container)
    drops = file_drops_from_env()
    assert isinstance(drops, BlobFileDrops)
    assert KEY not in repr(drops)  # the resource config holds the variable's name, not the key
    return drops


def run(assets, key, resources, **kwargs):
    return materialize(assets, partition_key=key, resources=resources, instance=DagsterInstance.ephemeral(), **kwargs)


def failure_text(result) -> str:
    """The step failure's messages (with their causes) of a failed materialize()."""
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(error.message)
            error = error.cause
        if event.step_failure_data.user_failure_data:
            texts.append(event.step_failure_data.user_failure_data.description or "")
    return "\n".join(texts)


def spark_resources(lake_root: Path, drops: FileDropResource) -> dict:
    from resources.lake import LakeResource
    from resources.spark import build_spark_resource

    return {"spark": build_spark_resource(), "lake": LakeResource(root=str(lake_root)), "file_drops": drops}


# --- the resource itself: same behaviour for the folder, account-key Blob and SAS Blob -----------------


@asset
def drop_roundtrip(file_drops: FileDropResource) -> dict:
    """Exercises the interface inside a run (where the EnvVar secrets are resolved)."""
    file_drops.write_bytes("inbound/a.csv", b"x,y\n1,2\n")
    file_drops.write_bytes("inbound/a.csv", b"x,y\n3,4\n")  # replace
    file_drops.write_bytes("inbound/sub/b.bin", bytes(range(256)))
    try:
        file_drops.read_bytes("inbound/missing.csv")
        missing = "no error"
    except FileNotFoundError as err:
        missing = str(err)
    try:
        file_drops.write_bytes("../outside", b"")
        escaped = True
    except ValueError:
        escaped = False
    options = file_drops.delta_storage_options()
    write_deltalake(file_drops.delta_uri("exports/t"), pa.table({"d": ["2026-04-01"] * 2, "v": [1, 2]}), mode="overwrite", partition_by=["d"], storage_options=options)
    return {
        "names": file_drops.list_names("inbound"),
        "a": file_drops.read_bytes("inbound/a.csv"),
        "b": file_drops.read_bytes("inbound/sub/b.bin"),
        "exists": (file_drops.exists("inbound/a.csv"), file_drops.exists("inbound/nope")),
        "missing": missing,
        "escaped": escaped,
        "uri": file_drops.uri("inbound/a.csv"),
        "delta_uri": file_drops.delta_uri("exports/t"),
        "options_repr": repr(options),
    }


@pytest.mark.parametrize("kind", ["local", "blob_key", "blob_sas"])
def test_file_drop_roundtrip(kind, monkeypatch, tmp_path, azurite):
    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    secret = None
    if kind == "local":
        monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))  # default: <LAKE_ROOT>/drops
    else:
        name = f"rt-{uuid.uuid4().hex[:12]}"
        with BlobServiceClient(azurite, credential=KEY) as service:
            service.create_container(name)
        monkeypatch.setenv("AZURE_BLOB_ACCOUNT_URL", azurite)
        monkeypatch.setenv("FILE_DROPS_CONTAINER", name)
        monkeypatch.setenv("FILE_DROPS_PREFIX", "team-a")
        if kind == "blob_key":
            secret = KEY
            monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
        else:
            secret = generate_account_sas(
                ACCOUNT, KEY, ResourceTypes(service=True, container=True, object=True),
                AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
                expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
            )
            monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", secret)
    drops = file_drops_from_env()
    assert isinstance(drops, LocalFileDrops if kind == "local" else BlobFileDrops)

    out = materialize([drop_roundtrip], resources={"file_drops": drops}, instance=DagsterInstance.ephemeral()).output_for_node("drop_roundtrip")

    assert out["names"] == ["inbound/a.csv", "inbound/sub/b.bin"]
    assert out["a"] == b"x,y\n3,4\n" and out["b"] == bytes(range(256))
    assert out["exists"] == (True, False)
    assert not out["escaped"]
    assert "inbound/missing.csv" in out["missing"]
    if kind == "local":
        root = tmp_path / "lake" / "drops"
        assert (root / "inbound" / "a.csv").read_bytes() == b"x,y\n3,4\n"
        assert out["uri"] == str(root / "inbound" / "a.csv") and str(root) in out["missing"]
        table = DeltaTable(str(root / "exports" / "t"))
    else:
        # where it is, through the SDK: under the prefix in the container
        with BlobServiceClient(azurite, credential=KEY) as service:
            assert service.get_blob_client(name, "team-a/inbound/a.csv").download_blob().readall() == b"x,y\n3,4\n"
        assert out["uri"] == f"{azurite}/{name}/team-a/inbound/a.csv"
        assert f"{azurite}/{name}/team-a/inbound/missing.csv" in out["missing"]
        assert out["delta_uri"] == f"az://{name}/team-a/exports/t"
        for text in (out["uri"], out["missing"], out["options_repr"]):
            assert secret not in text and "sig=" not in text
        table = DeltaTable(out["delta_uri"], storage_options=independent_options(azurite))
    assert sorted(table.to_pandas()["v"]) == [1, 2]


def test_file_drops_from_env_follows_the_lakes_identity(monkeypatch):
    """AZURE_AUTH=service_principal / managed_identity (the lake's settings): DefaultAzureCredential for the SDK,
    no key for delta-rs (it reads AZURE_CLIENT_* itself), even when an account key is in the environment."""
    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "acct")
    monkeypatch.setenv("AZURE_AUTH", "service_principal")
    monkeypatch.setenv("AZURE_STORAGE_KEY", "planted-key")
    drops = file_drops_from_env()
    assert drops.blob.credential.credential_type == "default_azure_credential"
    assert drops.blob.account_url == "https://acct.blob.core.windows.net"
    assert drops.delta_storage_options() == {"account_name": "acct"}
    assert drops.uri("system_of_record/x.csv") == "https://acct.blob.core.windows.net/drops/system_of_record/x.csv"
    assert drops.delta_uri("exports/t") == "az://drops/exports/t"


def test_file_drops_from_env_refuses_a_remote_lake_without_blob_settings(monkeypatch):
    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LAKE_ROOT", "abfss://lake@acct.dfs.core.windows.net/prod")
    with pytest.raises(Exception, match="FILE_DROPS_ROOT"):
        file_drops_from_env()


# --- ledger_files: the system-of-record file from Blob into the landing area ---------------------------


def test_ledger_file_lands_from_blob_byte_for_byte(spark, tmp_path, azurite, container, blob_drops):
    from compliance_assets.ingest.ledger_drops import ledger_files
    from compliance_assets.reporting.reconciliation import ledger_rows
    from compliance_assets.synthetic.config import SynthConfig
    from compliance_assets.synthetic.writer import generate_day
    from resources.lake import LakeResource

    generate_day(SynthConfig(seed=5, events_per_day=300, rows_per_file=300), tmp_path / "landing", dt.date.fromisoformat(DAY))
    dropped = (tmp_path / "landing" / "system_of_record" / f"{DAY}.csv").read_bytes()
    upload(azurite, container, f"system_of_record/{DAY}.csv", dropped)
    lake = tmp_path / "lake"
    resources = spark_resources(lake, blob_drops)
    folder = lake / "landing" / "system_of_record"

    result = run([ledger_files], DAY, resources)
    assert result.success
    assert (folder / f"{DAY}.csv").read_bytes() == dropped
    assert sorted(os.listdir(folder)) == [f"{DAY}.csv"]  # no staging folder, no .crc side file
    rows = dropped.count(b"\n") - 1
    meta = result.asset_materializations_for_node("ledger_files")[0].metadata
    assert meta["dagster/row_count"].value == rows and meta["bytes"].value == len(dropped)
    assert meta["source"].value == f"{azurite}/{container}/system_of_record/{DAY}.csv"
    assert all(KEY not in str(v.value) for v in meta.values())
    assert ledger_rows(spark, LakeResource(root=str(lake)), DAY).count() == rows  # what reconciliation reads

    # a re-run replaces the day's file with the drop's current content
    changed = dropped.replace(b"\n", b"\r\n", 1)  # same rows, different bytes (CRLF header line)
    upload(azurite, container, f"system_of_record/{DAY}.csv", changed)
    assert run([ledger_files], DAY, resources).success
    assert (folder / f"{DAY}.csv").read_bytes() == changed

    # the next day was never dropped: a clear failure naming where it looked, nothing landed
    missing_day = "2026-04-02"
    failed = run([ledger_files], missing_day, resources, raise_on_error=False)
    assert not failed.success
    assert f"{azurite}/{container}/system_of_record/{missing_day}.csv" in failure_text(failed)
    assert not (folder / f"{missing_day}.csv").exists()

    # a broken drop (a negative amount, a duplicate booking) fails on the contract and lands nothing
    broken_day = "2026-04-03"
    lines = dropped.decode().splitlines()
    header, first, second = lines[0], lines[1].split(","), lines[2]
    first[header.split(",").index("amount")] = "-5.00"
    upload(azurite, container, f"system_of_record/{broken_day}.csv", "\n".join([header, ",".join(first), second, second, *lines[3:]]).encode() + b"\n")
    failed = run([ledger_files], broken_day, resources, raise_on_error=False)
    assert not failed.success
    text = failure_text(failed)
    assert "amount.exclusiveMinimum: 1 rows" in text and "transaction_id: 1 duplicates" in text and "nothing was landed" in text
    assert sorted(os.listdir(folder)) == [f"{DAY}.csv"]

    # a file in another shape (columns reordered) is refused before anything is read by Spark
    cols = header.split(",")
    upload(azurite, container, f"system_of_record/{broken_day}.csv", (",".join(reversed(cols)) + "\n").encode())
    failed = run([ledger_files], broken_day, resources, raise_on_error=False)
    assert not failed.success and "does not match the system_of_record contract's columns" in failure_text(failed)


# --- regulatory_exports: gold and the current snapshot as Delta tables on Blob ------------------------


def write_minimal_lake(spark, lake: Path) -> None:
    """Small gold, silver and alerts tables with the real column types: three rows delivered on DAY (one a
    late arrival of the day before), one delivered the next day (not part of DAY's export). Spark types
    turned into Arrow's as Spark's own toArrow does, written by delta-rs: a handful of rows, not worth
    three Spark Delta writes on a cold JVM."""
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    from catalog import GOLD
    from compliance_assets.ml.gold import GOLD_COLUMNS
    from compliance_assets.ml.scoring import TOP_FEATURE_TYPE
    from contracts.spark import struct_type

    contract = struct_type("risk_scores")
    gold_schema = T.StructType([T.StructField(c, TOP_FEATURE_TYPE if c == "top_features" else contract[c].dataType) for c in GOLD_COLUMNS])
    ts = lambda d, h: dt.datetime.fromisoformat(f"{d}T{h:02d}:00:00")  # noqa: E731
    day, prev, nxt = dt.date(2026, 4, 1), dt.date(2026, 3, 31), dt.date(2026, 4, 2)
    txns = [  # id, event day, delivery day, hour, amount, currency, score, band, alerted
        ("T1", day, day, 9, "120.50", "EUR", 0.02, "LOW", False),
        ("T2", day, day, 10, "9800.00", "USD", 0.97, "HIGH", True),
        ("T3", prev, day, 23, "15.00", "GBP", 0.40, "MEDIUM", False),
        ("T4", nxt, nxt, 8, "42.00", "EUR", 0.10, "LOW", False),
    ]
    gold = [
        (t, ts(e, h), f"ACC{i:08d}", s, b, [{"feature": "amount_to_typical", "value": 3.5, "contribution": 0.21}, {"feature": "hour", "value": None, "contribution": -0.05}] if b != "LOW" else None,
         "risk_model", "3", "run-3", "dagster-run", "PASS", ts(i_d, 5), None, e, i_d)
        for i, (t, e, i_d, h, a, c, s, b, _) in enumerate(txns)
    ]

    def save(rows, schema, table):
        schema = T.DataType.fromDDL(schema) if isinstance(schema, str) else schema  # parsed by the JVM of `spark`
        records = [dict(zip(schema.names, row)) for row in rows]
        write_deltalake(str(lake / "tables" / table), pa.Table.from_pylist(records, schema=to_arrow_schema(schema, timezone="UTC")), partition_by=["event_date"])

    save(gold, gold_schema, GOLD)
    silver_schema = "transaction_id string, event_time timestamp, event_date date, ingest_date date, amount decimal(18,2), currency string, amount_base decimal(18,2)"
    silver = [(t, ts(e, h), e, i_d, decimal.Decimal(a), c, decimal.Decimal(a)) for t, e, i_d, h, a, c, *_ in txns]
    save(silver, silver_schema, "transactions_silver")
    alerts_schema = "alert_id string, transaction_id string, event_time timestamp, reasons array<string>, event_date date, ingest_date date"
    alerts = [(f"A-{t}", t, ts(e, h), ["HIGH_RISK_SCORE"], e, i_d) for t, e, i_d, h, *_, alerted in txns if alerted]
    save(alerts, alerts_schema, "anomaly_alerts")


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order, nested cells as tuples, columns by name: comparable across readers."""
    out = df.copy()
    for column in out.columns:
        if out[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, (str, bytes))).any():
            out[column] = out[column].map(lambda v: None if v is None else tuple(tuple(sorted(x.items())) if isinstance(x, dict) else x for x in v))
    return out[sorted(out.columns)].sort_values(["transaction_id", "event_time"]).reset_index(drop=True)


def test_regulatory_exports_to_blob_are_idempotent_and_follow_the_current_snapshot(spark, tmp_path, azurite, container, blob_drops):
    from compliance_assets.reporting.exports import regulatory_exports
    from compliance_assets.reporting.snapshots import regulatory_snapshots

    lake = tmp_path / "lake"
    write_minimal_lake(spark, lake)
    resources = spark_resources(lake, blob_drops)
    gold_uri, snap_uri = f"az://{container}/exports/risk_scores_gold", f"az://{container}/exports/regulatory_snapshots"

    # before the day has a snapshot: a clear failure, nothing exported
    early = run([regulatory_exports], DAY, resources, raise_on_error=False)
    assert not early.success and f"No regulatory_snapshots snapshot for {DAY}" in failure_text(early)
    with BlobServiceClient(azurite, credential=KEY) as service:
        assert not list(service.get_container_client(container).list_blobs(name_starts_with="exports/"))

    assert run([regulatory_snapshots], DAY, resources).success  # snapshot version 1, by the real asset
    options = independent_options(azurite)
    source_gold = DeltaTable(str(lake / "tables" / "risk_scores_gold")).to_pandas()
    source_gold = source_gold[source_gold["ingest_date"].astype(str) == DAY]
    assert sorted(source_gold["transaction_id"]) == ["T1", "T2", "T3"]

    def source_snapshot(version: int) -> pd.DataFrame:
        df = DeltaTable(str(lake / "tables" / "regulatory_snapshots")).to_pandas()
        return df[(df["period"] == DAY) & (df["snapshot_version"] == version)]

    exported = run([regulatory_exports], DAY, resources)
    assert exported.success
    meta = exported.asset_materializations_for_node("regulatory_exports")[0].metadata
    assert meta["gold_rows"].value == 3 and meta["snapshot_rows"].value == 3 and meta["snapshot_version"].value == 1
    assert meta["gold_export"].value == f"{azurite}/{container}/exports/risk_scores_gold"
    assert all(KEY not in str(v.value) for v in meta.values())

    gold_1 = DeltaTable(gold_uri, storage_options=options)
    assert gold_1.metadata().partition_columns == ["ingest_date"]
    gold_rows_1 = canonical(gold_1.to_pandas())
    pd.testing.assert_frame_equal(gold_rows_1, canonical(source_gold))
    snap_rows_1 = canonical(DeltaTable(snap_uri, storage_options=options).to_pandas())
    pd.testing.assert_frame_equal(snap_rows_1, canonical(source_snapshot(1)))
    # the manifest entry travels as a file through the Blob resource; read back with the SDK, it names version 1 and its hash
    with BlobServiceClient(azurite, credential=KEY) as service:
        blobs = service.get_container_client(container)
        manifest = json.loads(blobs.download_blob(f"exports/snapshot_manifests/regulatory_snapshots_{DAY}.json").readall())
        assert not list(blobs.list_blobs(name_starts_with="exports/reports/"))  # the day was not reconciled: no report
    source_manifest = DeltaTable(str(lake / "tables" / "regulatory_snapshot_manifest")).to_pandas().query("snapshot_table == 'regulatory_snapshots' and period == @DAY and snapshot_version == 1").iloc[0]
    assert manifest["snapshot_version"] == 1 and manifest["sha256"] == source_manifest.sha256 and manifest["row_count"] == 3

    # a superseding snapshot version, then the day exported again: its partitions are replaced (a new
    # commit each), gold with the same rows, the snapshot with version 2 instead of version 1
    superseded = run([regulatory_snapshots], DAY, resources, run_config={"ops": {"regulatory_snapshots": {"config": {"supersede_reason": "test"}}}})
    assert superseded.success
    # the day is reconciled now (one report row, the report's real schema): its report is exported as CSV
    from compliance_assets.reporting.reconciliation import REPORT_SCHEMA, deadline_for

    now = dt.datetime(2026, 4, 2, 3, 0)
    report_row = (dt.date.fromisoformat(DAY), "EUR", "MATCHED", True, 3, decimal.Decimal("60.00"), now, deadline_for(DAY), "run", now)
    spark.createDataFrame([report_row], REPORT_SCHEMA).write.format("delta").mode("overwrite").partitionBy("event_date").save(str(lake / "tables" / "reconciliation_report"))
    assert run([regulatory_exports], DAY, resources).success
    with BlobServiceClient(azurite, credential=KEY) as service:
        csv = service.get_container_client(container).download_blob(f"exports/reports/reconciliation_report_{DAY}.csv").readall().decode()
    assert csv.splitlines()[0].startswith("event_date,currency,category") and ",EUR,MATCHED,True,3,60.00," in csv
    gold_2 = DeltaTable(gold_uri, storage_options=options)
    assert gold_2.version() == gold_1.version() + 1
    pd.testing.assert_frame_equal(canonical(gold_2.to_pandas()), gold_rows_1)
    snap_rows_2 = canonical(DeltaTable(snap_uri, storage_options=options).to_pandas())
    assert set(snap_rows_2["snapshot_version"]) == {2}
    pd.testing.assert_frame_equal(snap_rows_2, canonical(source_snapshot(2)))
    content = [c for c in snap_rows_1.columns if c not in ("snapshot_version", "snapshot_created_at", "dagster_run_id")]
    pd.testing.assert_frame_equal(snap_rows_2[content], snap_rows_1[content])  # same content, superseding version


# --- the lake's landing area on abfss:// (the landing sensor lists it without a JVM) -------------------


def test_the_landing_sensor_sees_completed_deliveries_in_an_abfss_landing_area(monkeypatch, azurite, container):
    from dagster import RunRequest, build_sensor_context

    from resources.lake import LakeResource
    from compliance_assets.ingest.landing_sensor import landing_delivery_sensor

    for var in AZURE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_AUTH", "account_key")
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    monkeypatch.setenv("AZURE_BLOB_ACCOUNT_URL", azurite)  # Azurite instead of <account>.dfs.core.windows.net
    folder = "lake/landing/transactions"
    for name in (f"event_date={DAY}/part-0.jsonl", f"event_date={DAY}/_SUCCESS", "event_date=2026-04-02/part-0.jsonl", "event_date=junk/_SUCCESS"):
        upload(azurite, container, f"{folder}/{name}", b"{}\n")
    lake = LakeResource(root=f"abfss://{container}@{ACCOUNT}.dfs.core.windows.net/lake")

    markers = lake.landing_markers("transactions")
    assert set(markers) == {f"event_date={DAY}", "event_date=junk"} and lake.landing_markers("no_such_folder") == {}
    requests = landing_delivery_sensor(build_sensor_context(resources={"lake": lake}))
    assert [(type(r), r.partition_key) for r in requests] == [(RunRequest, DAY)]
    assert requests[0].run_key == f"{DAY}@{int(markers[f'event_date={DAY}'])}"
