"""The Dagster UI as a user runs it: `dagster-webserver` and `dagster-daemon` as separate processes over a
throwaway instance (DAGSTER_HOME with this repository's dagster.yaml) and a throwaway lake holding two
synthetic landing days, plus a small GraphQL client and a headless Chromium driven through the Chrome
DevTools protocol (the `websockets` package, no Selenium).

The servers are expensive (data, two processes, runs that start their own JVM), so `dagster_ui` is
module-scoped: every test of a module shares it. The processes are stopped in its finaliser, whatever
happens.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.helpers import SPARK_ENV, free_port

REPO = Path(__file__).resolve().parents[2]
DAYS = (dt.date(2026, 3, 2), dt.date(2026, 3, 3))
REFERENCE_ASSETS = ["kyc_profiles", "account_limits", "watchlists", "fx_rates", "merchant_profiles"]
INGEST_ASSETS = ["transactions_bronze", "transactions_silver", "transactions_dlq", "dq_results"]
STARTUP_TIMEOUT_S = 240

def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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
# Headless Chromium through the Chrome DevTools protocol


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.fail("chromium is not on PATH: run `bash scripts/chromium.sh` (scripts/test.sh does it) to install headless Chromium")
    return path


class HeadlessChromium:
    """One headless Chromium page driven over CDP: navigate, evaluate JavaScript, take screenshots."""

    def __init__(self, executable: str, workdir: Path, width: int, height: int):
        from websockets.sync.client import connect

        self.width, self.height = width, height
        self.log = workdir / "chromium.log"
        port = free_port()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--hide-scrollbars", f"--window-size={width},{height}", f"--user-data-dir={workdir / 'profile'}",
                    "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}", "about:blank",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 60
            targets = None
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    if any(t["type"] == "page" for t in targets):
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.3)
            page = next((t for t in targets or [] if t["type"] == "page"), None)
            assert page, f"chromium did not open its DevTools port\n{tail(self.log)}"
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        except BaseException:
            self._kill()
            raise
        self._ids = itertools.count(1)
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # skip events and answers to nothing we wait for
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"CDP {method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for_text(self, needles: list[str], timeout: float = 90) -> str:
        """The page's rendered text once it contains every needle (the React app loads, queries GraphQL, lays
        out the graph in a worker, then renders the nodes)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            except RuntimeError:  # the document is being replaced while navigating
                text = ""
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"the page never showed {missing} within {timeout:.0f}s; its text was:\n{text[:3000]}")

    def click(self, x: float, y: float) -> None:
        """A real left click at page coordinates (x, y)."""
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", buttons=1, clickCount=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", buttons=0, clickCount=1)

    def center_of(self, selector: str) -> tuple[float, float] | None:
        """Page coordinates of the centre of the first element matching a CSS selector."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return tuple(box) if box else None

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def settled_screenshot(self, timeout: float = 20, every: float = 1.0) -> bytes:
        """A screenshot once two in a row are identical (the graph's zoom-to-fit animation and late data have
        finished), or the last one after `timeout`."""
        previous = self.screenshot()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(every)
            current = self.screenshot()
            if current == previous:
                return current
            previous = current
        return previous

    def _kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self._kill()


@pytest.fixture
def browser(chromium, tmp_path):
    """A 1600x1800 headless page: tall enough that the ingest group's lineage graph fits at full size."""
    page = HeadlessChromium(chromium, tmp_path, width=1600, height=1800)
    try:
        yield page
    finally:
        page.close()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless `data` is a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])
