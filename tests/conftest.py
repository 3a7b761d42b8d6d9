from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bridge_process import BridgeProcess
from tests.partnero_server import PartneroServer
from tests.postgres_kit import throwaway_schema

FAST_DELIVERY = {
    "max_attempts": 6,
    "initial_backoff_seconds": 0.05,
    "max_backoff_seconds": 0.5,
    "timeout_seconds": 2,
    "poll_interval_seconds": 0.05,
}


@pytest.fixture
def partnero() -> Iterator[PartneroServer]:
    with PartneroServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh store of each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bridge.db"
        return
    with throwaway_schema() as url:
        yield url


@pytest.fixture
def bridge_factory(tmp_path: Path, partnero: PartneroServer) -> Iterator[Callable[..., BridgeProcess]]:
    """Start bridge processes against the Partnero test server; all are killed at the end of the test."""
    started: list[BridgeProcess] = []

    def make(endpoints: dict[str, Any], **overrides: Any) -> BridgeProcess:
        config: dict[str, Any] = {
            "partnero": {"api_key": partnero.api_key, "base_url": partnero.url},
            "delivery": dict(FAST_DELIVERY),
            "endpoints": endpoints,
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key].update(value)
            else:
                config[key] = value
        workdir = tmp_path / f"bridge{len(started)}"
        workdir.mkdir()
        process = BridgeProcess(workdir, config)
        started.append(process)
        return process.start()

    yield make
    for process in started:
        process.kill()


@pytest.fixture
def _browser_required() -> None:
    """Used by the browser tests under CI when Chromium is missing (tests/browser_kit.py)."""
    from tests.browser_kit import skip_reason

    pytest.fail(f"CI must run the browser tests: {skip_reason()}")
