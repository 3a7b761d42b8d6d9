"""Headless Chromium through Selenium for the browser tests: found on PATH (CI installs Debian's chromium
and chromium-driver), never resolving a host name, so nothing leaves the machine."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None  # type: ignore[assignment]


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if webdriver is None:
        return "selenium is not installed: pip install -e '.[dev]'"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return f"chromium and chromedriver are needed for the browser test: {INSTALL}"
    return None


def browser_mark() -> list[pytest.MarkDecorator]:
    """`pytestmark` for a browser test module: skipped, with the reason, where Chromium is missing."""
    reason = skip_reason()
    return [pytest.mark.skip(reason=reason)] if reason else []


@contextlib.contextmanager
def chromium(profile: Path, width: int = 1100, height: int = 900) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        # no DNS at all: any host but loopback fails at once instead of reaching the network
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()
