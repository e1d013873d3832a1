"""Headless Chromium driven through the Chrome DevTools protocol (the `websockets` package, no Selenium):
open a page, evaluate JavaScript, click, take screenshots. Used by the Dagster UI tests and the dashboard test.

Chromium is Debian's `chromium` package (scripts/chromium.sh installs it; scripts/test.sh runs that).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless `data` is a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])
