"""Headless Chromium driven by Playwright for Python: open a page, evaluate JavaScript, click, take screenshots.
Used by the Dagster UI tests and the dashboard test.

Chromium is Debian's `chromium` package (scripts/chromium.sh installs it; scripts/test.sh runs that), launched
through Playwright's `executable_path`, so no browser is downloaded (`playwright install` is never needed).
"""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path

import pytest


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
    """One headless Chromium page (Playwright, sync API): navigate, evaluate JavaScript, take screenshots."""

    def __init__(self, executable: str, workdir: Path, width: int, height: int):
        from playwright.sync_api import sync_playwright

        self.width, self.height = width, height
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"],
            )
            self.page = self._browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        except BaseException:
            self._playwright.stop()
            raise

    def resize(self, width: int, height: int) -> None:
        """Change the page's viewport (responsive content re-lays out to it)."""
        self.width, self.height = width, height
        self.page.set_viewport_size({"width": width, "height": height})

    def evaluate(self, expression: str):
        return self.page.evaluate(expression)

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="domcontentloaded", timeout=120_000)

    def wait_for_text(self, needles: list[str], timeout: float = 90) -> str:
        """The page's rendered text once it contains every needle (the React app loads, queries GraphQL, lays
        out the graph in a worker, then renders the nodes)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            except Exception:  # the document is being replaced while navigating
                text = ""
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"the page never showed {missing} within {timeout:.0f}s; its text was:\n{text[:3000]}")

    def click(self, x: float, y: float) -> None:
        """A real left click at page coordinates (x, y)."""
        self.page.mouse.click(x, y)

    def center_of(self, selector: str) -> tuple[float, float] | None:
        """Page coordinates of the centre of the first element matching a CSS selector."""
        box = self.page.locator(selector).first.bounding_box() if self.page.locator(selector).count() else None
        return (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2) if box else None

    def html(self) -> str:
        return self.page.content()

    def screenshot(self) -> bytes:
        return self.page.screenshot(type="png")

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

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless `data` is a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])
