"""Headless Chromium for the browser tests, driven by Playwright for Python.

The browser is Debian's `chromium` (`executable_path`; never `playwright install`), found
by `find_chromium`. `chromium()` launches it; `load_in_chromium` opens a local page and
reports what a reader's browser would meet: console errors, uncaught exceptions, failed
loads, every request, images that did not decode, and a full-page screenshot.

`need_chromium()` skips a test where Playwright (a dev requirement, absent from the Astro
image under `astro dev pytest`) is not installed, and skips (fails under CI=true) where
Chromium is not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.system import need_system_package

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No sandbox as root, and no background connections (the network is closed; Chromium
# would retry them many at a time).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> str | None:
    """$CHROMIUM_PATH, else Chromium on PATH or Debian's /usr/bin/chromium."""
    if os.environ.get("CHROMIUM_PATH"):
        return os.environ["CHROMIUM_PATH"]
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def need_chromium(what: str) -> str:
    """Chromium's path for `what` (a test's purpose); skips where Playwright is not
    installed, skips (fails under CI=true) where Chromium is not."""
    pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright for Python is a dev requirement (requirements-dev.txt), "
        "not installed here (e.g. the Astro image under astro dev pytest)",
    )
    path = find_chromium()
    if path is None:
        need_system_package("chromium", what, install="chromium fonts-liberation")
    return path


@contextlib.contextmanager
def chromium(path: str) -> Iterator[Any]:
    """A headless Playwright `Browser` on the Chromium at `path`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    broken_images: int = -1
    image_count: int = -1
    title: str = ""
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        return [*self.console_errors, *self.exceptions, *self.failed_loads]


def load_in_chromium(
    browser: Any, page_file: Path, screenshot: Path, timeout: float = 60.0
) -> PageReport:
    """Open `page_file` (a local HTML file) in a new page of `browser`, report what
    happened and save a full-page screenshot (at most 16,000 px high)."""
    report = PageReport()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(timeout * 1000)
        page.on(
            "console",
            lambda message: (
                report.console_errors.append(f"{message.text} {message.location.get('url', '')}")
                if message.type in ("error", "assert")
                else None
            ),
        )
        page.on("pageerror", lambda error: report.exceptions.append(str(error)))
        page.on("request", lambda request: report.requests.append(request.url))
        page.on(
            "requestfailed",
            lambda request: report.failed_loads.append(
                f"{request.failure} ({request.resource_type}) {request.url}"
            ),
        )
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        page.wait_for_timeout(500)  # late console messages and failures
        count, broken, title = page.evaluate(
            "[document.images.length, Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).length, document.title]"
        )
        report.image_count, report.broken_images, report.title = count, broken, title
        height = min(page.evaluate("document.documentElement.scrollHeight"), 16_000)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(screenshot),
            full_page=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": height},
        )
        report.screenshot = screenshot
        return report
    finally:
        context.close()
