"""A bridge in this process: real adapters, a real store and the worker, for tests of the ledger path.

Calls are stored as ingest would store them (verified already) and the worker parses and delivers them
to the Partnero test server, so a test reads like the story it tells without starting processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bridge.config import Config, parse_config
from bridge.delivery import Worker
from bridge.store import open_store
from bridge.store.base import EventFilter, EventView, Store, Transaction
from tests.partnero_server import PartneroServer

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = {"max_attempts": 4, "initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "timeout_seconds": 2}


def fixture(provider: str, name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / provider / name).read_text())
    assert isinstance(data, dict)
    return data


class LedgerBridge:
    """`with LedgerBridge(store_url, partnero, endpoints) as bridge: bridge.receive(...); bridge.drain()`."""

    def __init__(self, store_url: str, partnero: PartneroServer, endpoints: dict[str, Any], **top: Any) -> None:
        raw: dict[str, Any] = {
            "partnero": {"api_key": partnero.api_key, "base_url": partnero.url, "max_requests_per_second": 1000},
            "store": store_url,
            "delivery": dict(FAST),
            "endpoints": endpoints,
            **top,
        }
        self.config: Config = parse_config(raw)
        self.loop = asyncio.new_event_loop()
        self.store: Store = open_store(store_url)
        self.run(self.store.open())
        self.worker = Worker(self.config, self.store)
        self._calls = 0

    def __enter__(self) -> LedgerBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def tx(self, work: Callable[[Transaction], T]) -> T:
        result: T = self.run(self.store.run(work))
        return result

    def receive(self, endpoint: str, body: dict[str, Any] | bytes, path: str | None = None) -> int:
        """Store one verified webhook call for `endpoint`, as ingest would."""
        self._calls += 1
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        delivery = f"test-{self._calls}-{time.monotonic_ns()}"
        where = path or f"/webhooks/{endpoint}"
        call_id, _ = self.tx(lambda tx: tx.insert_call(endpoint, delivery, time.time(), "POST", where, "", {}, raw))
        return call_id

    def drain(self) -> None:
        self.run(self.worker.drain(timeout=20))

    def events(self, endpoint: str | None = None) -> list[EventView]:
        return list(reversed(self.tx(lambda tx: tx.list_events(EventFilter(endpoint=endpoint, limit=10_000)))))

    def close(self) -> None:
        self.run(self.worker.aclose())
        self.run(self.store.close())
        self.loop.close()
