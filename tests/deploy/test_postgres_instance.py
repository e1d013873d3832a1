"""The production instance config (deploy/azure/dagster.yaml) against a real PostgreSQL server.

A throwaway Postgres is started with scripts/postgres.sh (TLS only over TCP, like Azure's server). The shipped
file is loaded as-is by Dagster with the Blob settings set to dummy values (constructing the Blob compute log
manager does not contact Azure), and its every block but `compute_logs` is rendered into a temporary
DAGSTER_HOME in which `dagster job execute` runs a slice of the daily ingest job (two assets and their three
checks) for one small synthetic partition. The run, its events, materialisations and check evaluations are
then read back with psycopg2 from Postgres itself, and through `DagsterInstance.get()` in that DAGSTER_HOME.
"""

import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.events import DagsterEventType
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_azure.blob.compute_log_manager import AzureBlobComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from tests.helpers import SPARK_ENV, free_port

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "azure" / "dagster.yaml"
DAY = "2026-03-02"
JOB = "daily_ingest"


def job_expectations() -> tuple[set[str], set[tuple[str, str]], int]:
    """The daily ingest job's assets, asset checks and steps, from its definition (what one run must record)."""
    from compliance_assets.definitions import defs

    job = defs.resolve_job_def(JOB)
    assets = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    checks = {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys}
    return assets, checks, len(job.graph.nodes)


EXPECTED_ASSETS, EXPECTED_CHECKS, EXPECTED_STEPS = job_expectations()
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
# dummy values for the Blob compute log settings of the shipped file
AZURE_DUMMIES = {
    "DAGSTER_COMPUTE_LOGS_STORAGE_ACCOUNT": "dummyaccount",
    "DAGSTER_COMPUTE_LOGS_CONTAINER": "dummy-container",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_CLIENT_SECRET": "not-a-secret",
}
# the run worker's JVM, as small as tests/conftest.py's session


def parse_exports(stdout: str) -> dict[str, str]:
    """{name: value} of the `export NAME=value` lines a script printed (shell-quoted values)."""
    env = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


@pytest.fixture(scope="module")
def postgres():
    """A running cluster from scripts/postgres.sh on a free port (its data under /tmp: the server runs as the
    `postgres` OS user, which cannot enter pytest's root-only temp folders); the DAGSTER_PG_* it exports."""
    home = Path(tempfile.mkdtemp(prefix="dagster-pg-"))
    script_env = {
        **os.environ,
        "PG_HOME": str(home),
        "PG_PORT": str(free_port()),
        "PG_DB": "dagster_test",
        "PG_USER": "dagster_test",
        "PG_PASSWORD": secrets.token_urlsafe(12),
    }

    def script(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(REPO / "scripts" / "postgres.sh"), command], env=script_env, capture_output=True, text=True, timeout=900)

    try:
        started = script("start")
        assert started.returncode == 0, f"scripts/postgres.sh start failed:\n{started.stdout}\n{started.stderr}"
        env = parse_exports(started.stdout)
        assert env == dict(zip(PG_ENV, ("127.0.0.1", script_env["PG_PORT"], "dagster_test", script_env["PG_PASSWORD"], "dagster_test")))
        # a second start of the running cluster is a quick no-op that prints the same exports
        again = script("start")
        assert again.returncode == 0 and parse_exports(again.stdout) == env, again.stderr
        yield env
    finally:
        stopped = script("stop")
        shutil.rmtree(home, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


def connect(pg: dict[str, str], sslmode: str = "require"):
    return psycopg2.connect(
        host=pg["DAGSTER_PG_HOST"], port=int(pg["DAGSTER_PG_PORT"]), user=pg["DAGSTER_PG_USERNAME"],
        password=pg["DAGSTER_PG_PASSWORD"], dbname=pg["DAGSTER_PG_DB"], sslmode=sslmode, connect_timeout=10,
    )


def query(pg: dict[str, str], sql: str, params=()) -> list[tuple]:
    with connect(pg) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


@pytest.fixture(scope="module")
def shipped_config() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory, shipped_config) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is the shipped file minus `compute_logs` (so local compute logs)."""
    home = tmp_path_factory.mktemp("dagster_home")
    rendered = {key: block for key, block in shipped_config.items() if key != "compute_logs"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered, sort_keys=False))
    return home


@pytest.fixture(scope="module")
def daily_run(postgres, dagster_home, tmp_path_factory) -> str:
    """`dagster job execute` of the whole daily ingest job for one partition, a synthetic 300-event day, in a
    subprocess whose instance is DAGSTER_HOME's (the run starts its own JVM). Returns the run id."""
    from compliance_assets.synthetic.config import SynthConfig
    from compliance_assets.synthetic.writer import generate_day

    base = tmp_path_factory.mktemp("daily_run")
    lake = base / "lake"
    generate_day(SynthConfig(seed=11, events_per_day=300, rows_per_file=300), lake / "landing", dt.date.fromisoformat(DAY))
    env = {
        **os.environ,
        **SPARK_ENV,
        **postgres,
        "DAGSTER_HOME": str(dagster_home),
        "LAKE_ROOT": str(lake),
        "MLFLOW_HOME": str(base / "mlflow"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db",
        "MLFLOW_ARTIFACT_ROOT": str(base / "mlflow" / "artifacts"),
        "PII_HASH_SALT": "deploy-test-salt",
    }
    command = [
        str(REPO / ".venv" / "bin" / "dagster"), "job", "execute", "-m", "compliance_assets.definitions", "-j", JOB,
        "--tags", json.dumps({"dagster/partition": DAY}),
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"dagster job execute failed ({done.returncode}):\n{output[-6000:]}"
    print(f"\n[deploy] {JOB} {DAY} ran in {time.monotonic() - started:.1f}s on Postgres storage")
    runs = query(postgres, "SELECT run_id FROM runs WHERE pipeline_name = %s", (JOB,))
    assert len(runs) == 1, f"expected one {JOB} run in Postgres, found {runs}"
    return runs[0][0]


def test_shipped_config_loads_as_an_instance(postgres, shipped_config, tmp_path, monkeypatch):
    """Dagster's own loading of the shipped file, unchanged: every block validates against its schema, every
    {env: ...} names a variable we document, and the storage, coordinator, limits and log manager are the
    ones intended."""
    from compliance_assets.realtime.job import CONCURRENCY_KEY as SERVICE_KEY
    from compliance_assets.streaming.job import CONCURRENCY_KEY

    for name, value in {**postgres, **AZURE_DUMMIES}.items():
        monkeypatch.setenv(name, value)
    shutil.copyfile(SHIPPED, tmp_path / "dagster.yaml")
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        url = instance.run_storage.postgres_url
        assert url.startswith(f"postgresql+psycopg2://{postgres['DAGSTER_PG_USERNAME']}:") and url.endswith(
            f"@127.0.0.1:{postgres['DAGSTER_PG_PORT']}/{postgres['DAGSTER_PG_DB']}?sslmode=require"
        )

        logs = instance.compute_log_manager
        assert isinstance(logs, AzureBlobComputeLogManager)
        assert (logs._storage_account, logs._container, logs.upload_interval) == ("dummyaccount", "dummy-container", 30)

        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 5
        limits = {(limit["key"], limit["value"]): limit["limit"] for limit in queue.tag_concurrency_limits}
        # the two streaming jobs' own tags are the ones limited to a single run
        assert limits == {("dagster/concurrency_key", CONCURRENCY_KEY): 1, ("dagster/concurrency_key", SERVICE_KEY): 1, ("dagster/concurrency_key", "spark"): 2}
        assert instance.run_monitoring_enabled and not instance.telemetry_enabled
    finally:
        instance.dispose()


def env_references(block) -> set[str]:
    """The variable names of every `{env: NAME}` in a parsed config block."""
    if isinstance(block, dict):
        if set(block) == {"env"}:
            return {block["env"]}
        return set().union(*(env_references(value) for value in block.values()))
    if isinstance(block, list):
        return set().union(*(env_references(value) for value in block))
    return set()


def test_shipped_config_reads_secrets_from_documented_env_vars(shipped_config):
    """The file names exactly the documented variables (the ones the loading test sets), lists each in its
    header for the operator, and holds no literal secret."""
    assert env_references(shipped_config) == set(PG_ENV) | set(AZURE_DUMMIES)
    header = SHIPPED.read_text().split("\nstorage:")[0]
    assert all(name in header for name in env_references(shipped_config))
    pg = shipped_config["storage"]["postgres"]["postgres_db"]
    assert pg["password"] == {"env": "DAGSTER_PG_PASSWORD"} and pg["params"] == {"sslmode": "require"}
    assert shipped_config["compute_logs"]["config"]["secret_credential"]["client_secret"] == {"env": "AZURE_CLIENT_SECRET"}


def test_daily_run_is_stored_in_postgres(postgres, daily_run):
    """The run, its tags, its event log, the partition's materialisations and the check evaluations are rows
    of the Postgres database, read with psycopg2."""
    run_id = daily_run

    [(status, partition)] = query(postgres, "SELECT status, partition FROM runs WHERE run_id = %s", (run_id,))
    assert (status, partition) == (DagsterRunStatus.SUCCESS.value, DAY)
    tags = dict(query(postgres, "SELECT key, value FROM run_tags WHERE run_id = %s", (run_id,)))
    assert tags["dagster/partition"] == DAY

    events = dict(query(postgres, "SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = %s GROUP BY 1", (run_id,)))
    assert events.get(DagsterEventType.RUN_START.value) == 1 and events.get(DagsterEventType.RUN_SUCCESS.value) == 1, events
    assert events.get(DagsterEventType.STEP_SUCCESS.value) == EXPECTED_STEPS, events
    assert DagsterEventType.STEP_FAILURE.value not in events, events

    materialised = query(
        postgres, "SELECT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
        (run_id, DagsterEventType.ASSET_MATERIALIZATION.value),
    )
    assert sorted((asset_name(key), partition) for key, partition in materialised) == sorted((asset, DAY) for asset in EXPECTED_ASSETS)
    # the asset index the UI reads: each asset's last materialisation is this run
    last_runs = dict(query(postgres, "SELECT asset_key, last_run_id FROM asset_keys"))
    assert {asset_name(key) for key, last in last_runs.items() if last == run_id} == EXPECTED_ASSETS

    checks = query(
        postgres, "SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions WHERE run_id = %s", (run_id,)
    )
    assert sorted((asset_name(key), check, partition) for key, check, partition, _ in checks) == sorted((a, c, DAY) for a, c in EXPECTED_CHECKS)
    assert {status for *_, status in checks} <= {"SUCCEEDED", "FAILED"}, checks  # evaluated, none left PLANNED
    assert events.get(DagsterEventType.ASSET_CHECK_EVALUATION.value) == len(EXPECTED_CHECKS), events


def asset_name(db_asset_key: str) -> str:
    """An asset key as stored in Postgres ('["fx_rates"]') as its user string."""
    return AssetKey.from_db_string(db_asset_key).to_user_string()


def test_dagster_home_instance_is_postgres(postgres, dagster_home, daily_run, monkeypatch):
    """`DagsterInstance.get()` in that DAGSTER_HOME, as the webserver and daemon open it, is Postgres-backed and
    sees the same run and events that psycopg2 found."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    for name, value in postgres.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        runs = instance.get_runs(RunsFilter(job_name=JOB))
        assert [(run.run_id, run.status) for run in runs] == [(daily_run, DagsterRunStatus.SUCCESS)]
        [(stored,)] = query(postgres, "SELECT count(*) FROM event_logs WHERE run_id = %s", (daily_run,))
        assert len(instance.all_logs(daily_run)) == stored > 0


def test_server_refuses_connections_without_tls(postgres):
    """Like Azure's server, the test server accepts only TLS over TCP: the instance's connections above
    (sslmode=require from the shipped file) were encrypted, and a client without TLS is refused."""
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        connect(postgres, sslmode="disable")
    with connect(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    conn.close()
