"""The Dagster UI as a user runs it: `dagster-webserver` and `dagster-daemon` as separate processes over a
throwaway instance (DAGSTER_HOME with this repository's dagster.yaml) and a throwaway lake holding two
synthetic landing days, plus a small GraphQL client; the headless Chromium page (`browser`) is driven by tests/browser.py.

The servers are expensive (data, two processes, runs that start their own JVM), so `dagster_ui` is
module-scoped: every test of a module shares it. The processes are stopped in its finaliser, whatever
happens.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.browser import HeadlessChromium, chromium, png_size, tail  # noqa: F401 (chromium: a fixture; png_size: for the tests)
from tests.helpers import SPARK_ENV, free_port

REPO = Path(__file__).resolve().parents[2]
DAYS = (dt.date(2026, 3, 2), dt.date(2026, 3, 3))
REFERENCE_ASSETS = ["kyc_profiles", "account_limits", "watchlists", "fx_rates", "merchant_profiles"]
INGEST_ASSETS = ["transactions_bronze", "transactions_silver", "transactions_dlq", "dq_results"]
STARTUP_TIMEOUT_S = 240


class GraphQLError(AssertionError):
    pass


@dataclass
class DagsterUI:
    """A running webserver + daemon over one instance and one lake."""

    url: str
    home: Path
    lake_root: Path
    logs: dict[str, Path]
    days: dict[str, object]  # partition key -> the generator's DaySummary
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def gql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        """POST a GraphQL document to the webserver; returns `data`, raises on transport or GraphQL errors."""
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"], indent=1))
        return body["data"]

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with code {proc.returncode}\n{self.log_tails()}")

    def log_tails(self, lines: int = 60) -> str:
        return "\n".join(f"----- last {lines} lines of {name} ({path}) -----\n{tail(path, lines)}" for name, path in self.logs.items())


def _wait_until(what: str, ui: DagsterUI, predicate, timeout: float = STARTUP_TIMEOUT_S, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        ui.check_alive()
        try:
            value = predicate()
            if value:
                return value
        except (requests.RequestException, GraphQLError, KeyError, TypeError) as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n{ui.log_tails()}")


def _location_loaded(ui: DagsterUI) -> bool:
    entries = ui.gql(
        """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
             locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
    )["workspaceOrError"]["locationEntries"]
    for entry in entries:
        error = entry.get("locationOrLoadError") or {}
        if error.get("__typename") == "PythonError":
            raise AssertionError(f"code location {entry['name']} failed to load: {error['message']}\n{''.join(error['stack'])}")
    return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)


def _daemons_healthy(ui: DagsterUI) -> bool:
    statuses = ui.gql("{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }")
    by_type = {s["daemonType"]: s for s in statuses["instance"]["daemonHealth"]["allDaemonStatuses"]}
    # the two the backfill needs: the backfill daemon requests runs, the queued-run coordinator launches them
    return all(by_type.get(t, {}).get("healthy") for t in ("BACKFILL", "QUEUED_RUN_COORDINATOR"))


def _stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """Stop a server and everything it spawned (code server, run workers and their JVMs): each server runs
    in its own process group, started by this fixture, so the group id is the server's pid."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:  # leftovers of the group (a code server or run worker that ignored SIGTERM)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory) -> DagsterUI:
    from compliance_assets.synthetic import SynthConfig, generate_day

    base = tmp_path_factory.mktemp("dagster_ui")
    home, lake = base / "dagster_home", base / "lake"
    home.mkdir()
    lake.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    config = SynthConfig(seed=7, events_per_day=1500)
    days = {d.isoformat(): generate_day(config, lake / "landing", d) for d in DAYS}

    env = {
        **os.environ,
        **SPARK_ENV,
        "DAGSTER_HOME": str(home),
        "LAKE_ROOT": str(lake),
        "MLFLOW_HOME": str(base / "mlflow"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db",
        "MLFLOW_ARTIFACT_ROOT": str(base / "mlflow" / "artifacts"),
        "PII_HASH_SALT": "ui-test-salt",
        "PYTHONUNBUFFERED": "1",
    }
    # MLflow's SQLite store is created (alembic migrations) before the webserver's and the daemon's code servers
    # load the definitions: two processes migrating one fresh file at once can leave two alembic heads
    from resources.mlflow import DEFAULT_EXPERIMENT, ensure_experiment

    ensure_experiment(env["MLFLOW_TRACKING_URI"], DEFAULT_EXPERIMENT, env["MLFLOW_ARTIFACT_ROOT"])
    # so are the Dagster instance's SQLite storages: the webserver, the daemon and their code servers open them at
    # once, and under load two of them migrated the fresh run storage together (two alembic heads)
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)):
        pass
    port = free_port()
    ui = DagsterUI(
        url=f"http://127.0.0.1:{port}",
        home=home,
        lake_root=lake,
        logs={"dagster-webserver": base / "webserver.log", "dagster-daemon": base / "daemon.log"},
        days=days,
    )
    commands = {
        "dagster-webserver": [str(REPO / ".venv/bin/dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        "dagster-daemon": [str(REPO / ".venv/bin/dagster-daemon"), "run", "-w", "workspace.yaml"],
    }
    try:
        for name, command in commands.items():
            with open(ui.logs[name], "wb") as log:
                ui.processes[name] = subprocess.Popen(
                    command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        started = time.monotonic()
        _wait_until("/server_info", ui, lambda: requests.get(f"{ui.url}/server_info", timeout=5).ok)
        _wait_until("the code location to load", ui, lambda: _location_loaded(ui))
        _wait_until("the daemon's heartbeats", ui, lambda: _daemons_healthy(ui))
        print(f"\n[ui] webserver {ui.url} and daemon up in {time.monotonic() - started:.1f}s (DAGSTER_HOME={home}, LAKE_ROOT={lake})")
        yield ui
    finally:
        for proc in ui.processes.values():
            _stop(proc)


# --------------------------------------------------------------------------------------------------
# Headless Chromium (the driver is in tests/browser.py)


@pytest.fixture
def browser(chromium, tmp_path):
    """A 1600x1800 headless page: tall enough that the ingest group's lineage graph fits at full size."""
    page = HeadlessChromium(chromium, tmp_path, width=1600, height=1800)
    try:
        yield page
    finally:
        page.close()
