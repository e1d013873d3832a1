"""The deployment profile switch, the azure profile's Spark settings for ADLS Gen2, and secrets: planted secret
values never reach the stored definitions, the event log, run tags, metadata or compute logs."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resources.azure import REDACTION_REGEX, hadoop_version
from tests.helpers import SPARK_ENV

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "complianceacct"
HOST = f"{ACCOUNT}.dfs.core.windows.net"
PLANTED = {
    "AZURE_STORAGE_KEY": "PLANTED-storage-key-7f3a9c",
    "AZURE_CLIENT_SECRET": "PLANTED-client-secret-51be02",
    "EVENTHUBS_CONNECTION_STRING": "Endpoint=sb://local.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=PLANTED-eh-key-c0ffee",
    "PII_HASH_SALT": "PLANTED-pii-salt-9d41e7",
    "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hooks/PLANTED-webhook-token-aa01",
}
SECRET_MARKERS = ["PLANTED-storage-key-7f3a9c", "PLANTED-client-secret-51be02", "PLANTED-eh-key-c0ffee", "PLANTED-pii-salt-9d41e7", "PLANTED-webhook-token-aa01"]


def azure_env(auth: str) -> dict[str, str]:
    env = {
        "DEPLOYMENT_PROFILE": "azure", "LAKE_ROOT": f"abfss://lake@{HOST}/compliance", "MLFLOW_TRACKING_URI": "databricks",
        "AZURE_STORAGE_ACCOUNT": ACCOUNT, "AZURE_AUTH": auth, "AZURE_TENANT_ID": "11111111-2222-3333-4444-555555555555",
        "AZURE_CLIENT_ID": "66666666-7777-8888-9999-000000000000", "SPARK_MASTER": "spark://spark-master:7077", **PLANTED,
    }
    return env


@pytest.fixture
def azure_profile(monkeypatch):
    def apply(auth: str):
        for key, value in azure_env(auth).items():
            monkeypatch.setenv(key, value)
    return apply


def test_the_local_profile_is_the_default_and_an_unknown_profile_is_refused(monkeypatch):
    from resources import build_resources
    from resources.profiles import current_profile

    monkeypatch.delenv("DEPLOYMENT_PROFILE", raising=False)
    assert current_profile() == "local"
    local = build_resources()
    assert "hadoop-azure" not in local["spark"].spark_config["spark.jars.packages"] and local["spark"].secret_hadoop_env == {}
    monkeypatch.setenv("DEPLOYMENT_PROFILE", "aws")
    with pytest.raises(ValueError, match="expected one of local, azure"):
        current_profile()


def test_the_azure_profile_names_every_missing_setting_without_values(monkeypatch):
    from resources import build_resources

    for key in ("LAKE_ROOT", "MLFLOW_TRACKING_URI", "EVENTHUBS_CONNECTION_STRING", "KAFKA_BOOTSTRAP_SERVERS", "PII_HASH_SALT", "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DEPLOYMENT_PROFILE", "azure")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", PLANTED["AZURE_CLIENT_SECRET"])
    with pytest.raises(ValueError) as error:
        build_resources()
    message = str(error.value)
    for name in ("LAKE_ROOT", "MLFLOW_TRACKING_URI", "EVENTHUBS_CONNECTION_STRING", "PII_HASH_SALT", "AZURE_STORAGE_ACCOUNT", "AZURE_TENANT_ID"):
        assert name in message
    assert PLANTED["AZURE_CLIENT_SECRET"] not in message


@pytest.mark.parametrize(
    "auth, expected, secret",
    [
        ("service_principal", {"auth.type": "OAuth", "oauth.provider.type": "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider",
                               "oauth2.client.id": "66666666-7777-8888-9999-000000000000",
                               "oauth2.client.endpoint": "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/token"},
         {f"fs.azure.account.oauth2.client.secret.{HOST}": "AZURE_CLIENT_SECRET"}),
        ("managed_identity", {"auth.type": "OAuth", "oauth.provider.type": "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider",
                              "oauth2.msi.tenant": "11111111-2222-3333-4444-555555555555"}, {}),
        ("account_key", {"auth.type": "SharedKey"}, {f"fs.azure.account.key.{HOST}": "AZURE_STORAGE_KEY"}),
    ],
)
def test_the_azure_profile_renders_the_abfs_settings_of_each_auth_mode_without_secrets(azure_profile, auth, expected, secret):
    from resources import build_resources

    azure_profile(auth)
    resources = build_resources()
    conf = resources["spark"].spark_config
    for suffix, value in expected.items():
        key = f"spark.hadoop.fs.azure.account.{suffix}.{HOST}"
        assert conf[key] == value, key
    assert conf["spark.master"] == "spark://spark-master:7077" and conf["spark.redaction.regex"] == REDACTION_REGEX
    assert f"org.apache.hadoop:hadoop-azure:{hadoop_version()}" in conf["spark.jars.packages"].split(",")
    assert resources["spark"].secret_hadoop_env == secret
    assert resources["lake"].table_path("risk_scores_gold") == f"abfss://lake@{HOST}/compliance/tables/risk_scores_gold"
    rendered = json.dumps(conf) + json.dumps(resources["spark"].secret_hadoop_env)
    assert not [m for m in SECRET_MARKERS if m in rendered]


def test_the_stored_definitions_of_the_azure_profile_hold_no_secret(azure_profile, monkeypatch):
    """What Dagster stores with every run and shows in the UI (the repository and job snapshots with every
    resource's configuration) names the secrets' variables, never their values."""
    from dagster import Definitions
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from compliance_assets import definitions
    from resources import build_resources

    azure_profile("account_key")  # the storage key is then also the ADLS2 drops' credential
    monkeypatch.setenv("FILE_DROPS_FILESYSTEM", "drops")
    defs = Definitions(
        assets=definitions.defs.assets, asset_checks=definitions.defs.asset_checks, jobs=definitions.defs.jobs,
        sensors=definitions.defs.sensors, schedules=definitions.defs.schedules, resources=build_resources(), executor=definitions.defs.executor,
    )
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "AZURE_STORAGE_KEY" in snapshot and "PII_HASH_SALT" in snapshot and "EVENTHUBS_CONNECTION_STRING" in snapshot  # the names are there
    assert not [m for m in SECRET_MARKERS if m in snapshot]


def test_a_spark_session_with_hadoop_azure_resolves_abfss_and_reads_its_secret_from_the_environment(tmp_path):
    """Its own JVM (a subprocess): the azure profile's packages and settings, the abfss scheme bound to ABFS."""
    script = tmp_path / "abfs.py"
    script.write_text(
        "import json, os\n"
        "from resources import build_resources\n"
        "from resources.spark import start_session\n"
        "r = build_resources()['spark']\n"
        "conf = dict(r.spark_config, **{'spark.master': 'local[1]', 'spark.driver.memory': '1g'})\n"
        "s = start_session(conf, r.secret_hadoop_env)\n"
        "h = s.sparkContext._jsc.hadoopConfiguration()\n"
        "cls = s._jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass('abfss', h).getName()\n"
        f"key = 'fs.azure.account.oauth2.client.secret.{HOST}'\n"
        "print(json.dumps({'class': cls, 'secret_set': h.get(key) == os.environ['AZURE_CLIENT_SECRET'],\n"
        f"  'auth': h.get('fs.azure.account.auth.type.{HOST}'), 'jars': [j for j in s.sparkContext.getConf().get('spark.jars', '').split(',') if 'hadoop-azure' in j]}}))\n"
    )
    env = {**os.environ, **azure_env("service_principal"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["class"] == "org.apache.hadoop.fs.azurebfs.SecureAzureBlobFileSystem"
    assert result["secret_set"] and result["auth"] == "OAuth"
    assert result["jars"] and result["jars"][0].endswith(f"hadoop-azure-{hadoop_version()}.jar")
    assert not [m for m in SECRET_MARKERS if m in out.stdout + out.stderr]


def test_planted_secrets_never_reach_the_event_log_tags_metadata_or_compute_logs(tmp_path):
    """A real run (daily ingest of a small day through the dagster CLI, its own Dagster instance) with planted
    values in every secret the run's resources hold; then every file of the instance (SQLite run and event
    storage, compute logs) and the Delta logs of the lake are searched for them."""
    from compliance_assets.synthetic.config import SynthConfig
    from compliance_assets.synthetic.writer import generate_day

    day = "2026-04-01"
    lake, home = tmp_path / "lake", tmp_path / "dagster_home"
    home.mkdir()
    generate_day(SynthConfig(seed=3, events_per_day=300, rows_per_file=300), lake / "landing", dt.date.fromisoformat(day))
    env = {
        **os.environ, **PLANTED, "DEPLOYMENT_PROFILE": "local", "LAKE_ROOT": str(lake), "DAGSTER_HOME": str(home), "MLFLOW_HOME": str(tmp_path / "mlruns"),
        **SPARK_ENV, "KAFKA_SASL_PASSWORD": PLANTED["EVENTHUBS_CONNECTION_STRING"],
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "compliance_assets.definitions",
         "--select", "group:reference_data,group:ingest", "--partition", day],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert not [m for m in SECRET_MARKERS if m in out.stdout + out.stderr]
    files = [p for p in home.rglob("*") if p.is_file()] + [p for p in (lake / "tables").rglob("_delta_log/*") if p.is_file()]
    compute_logs = [p for p in home.rglob("*") if p.is_file() and p.suffix in (".out", ".err", ".complete")]
    assert any(p.name.endswith(".db") for p in files) and compute_logs, sorted(str(p.relative_to(tmp_path)) for p in files)[:20]
    leaks = {str(p.relative_to(tmp_path)): [m for m in SECRET_MARKERS if m.encode() in p.read_bytes()] for p in files}
    assert not {f: m for f, m in leaks.items() if m}
    # the run did use the planted salt: a masked payment reference in silver is the salted hash of the raw one
    import hashlib

    from deltalake import DeltaTable

    silver = DeltaTable(str(lake / "tables" / "transactions_silver")).to_pandas()
    bronze = DeltaTable(str(lake / "tables" / "transactions_bronze")).to_pandas()
    raw = {}
    for payload in bronze.payload:
        try:
            record = json.loads(payload)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("description"), str):
            raw[record.get("transaction_id")] = record["description"]
    row = silver[silver.transaction_id.isin(raw) & silver.description.notna()].iloc[0]
    assert row.description == "pii_" + hashlib.sha256((PLANTED["PII_HASH_SALT"] + raw[row.transaction_id]).encode()).hexdigest()[:16]


def test_file_drops_on_an_adls_gen2_file_system_go_through_adls2resource(azure_profile, monkeypatch):
    """With FILE_DROPS_FILESYSTEM the drops use the account's DFS endpoint through dagster-azure's ADLS2Resource
    (Azurite has no DFS endpoint: its configuration is checked here, not its traffic)."""
    from dagster import EnvVar
    from dagster_azure.adls2 import ADLS2Resource

    from resources import build_resources
    from resources.file_drops import Adls2FileDrops

    azure_profile("account_key")
    monkeypatch.setenv("FILE_DROPS_FILESYSTEM", "drops")
    drops = build_resources()["file_drops"]
    assert isinstance(drops, Adls2FileDrops) and isinstance(drops.adls2, ADLS2Resource)
    assert drops.uri("system_of_record/2026-04-01.csv") == f"abfss://drops@{HOST}/system_of_record/2026-04-01.csv"
    assert drops.adls2.storage_account == ACCOUNT and drops.adls2.endpoint_suffix == "core.windows.net"
    assert isinstance(drops.adls2.credential.key, EnvVar) and drops.adls2.credential.key.env_var_name == "AZURE_STORAGE_KEY"  # resolved only inside a run
    assert not [m for m in SECRET_MARKERS if m in repr(drops) + drops.uri()]
    monkeypatch.setenv("AZURE_AUTH", "managed_identity")
    assert build_resources()["file_drops"].adls2.credential.credential_type == "default_azure_credential"
